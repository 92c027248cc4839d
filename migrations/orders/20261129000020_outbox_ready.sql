-- The relay's claim walks the rows ready to send in id order and stops after
-- one batch: a partial index holds exactly those (not parked, not leased), so
-- a claim costs the same with ten rows waiting or a hundred thousand (before,
-- it scanned and sorted the whole backlog, and with it the dead rows the
-- relay's deletes leave behind). Leases of a relay that died are found through
-- the second index. Keep equal to migrations/delivery.
CREATE INDEX outbox_ready ON outbox (id) WHERE parked_at IS NULL AND claimed_until IS NULL;
CREATE INDEX outbox_leased ON outbox (claimed_until) WHERE claimed_until IS NOT NULL;
