-- The outbox relay claims rows with a lease instead of holding a transaction
-- (and its locks and pooled connection) across the call to SQS: a claimed row
-- has `claimed_until` in the future; the relay sends it outside any
-- transaction and deletes it after. A row SQS refuses `OUTBOX_MAX_ATTEMPTS`
-- times is parked (`parked_at`): skipped by claims, holding back the later
-- events of its group, until an operator re-queues it
-- (`delivery-service outbox requeue`). Keep equal to migrations/orders.
ALTER TABLE outbox ADD COLUMN claimed_until TIMESTAMPTZ, ADD COLUMN parked_at TIMESTAMPTZ;
CREATE INDEX outbox_parked ON outbox (parked_at) WHERE parked_at IS NOT NULL;
