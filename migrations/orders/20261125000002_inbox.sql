-- Inbox of the status consumer: event ids from delivery-status-queue.fifo
-- already applied (exactly-once handling of redeliveries).
CREATE TABLE processed_messages (
    event_id     UUID PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
