-- The delivery-service database: shipments driven by durable timers, their
-- status history, the inbox of processed events, and the transactional outbox.

CREATE TABLE shipments (
    id               UUID PRIMARY KEY,
    order_id         UUID NOT NULL UNIQUE,       -- one shipment per order
    customer_id      UUID NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('PROCESSING', 'SHIPPED', 'DELIVERED')),
    carrier          TEXT,
    tracking_number  TEXT,
    shipping_address JSONB NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    shipped_at       TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL,
    -- The durable timer: when the scheduler moves the shipment on; NULL once delivered.
    next_step_at     TIMESTAMPTZ
);
CREATE INDEX shipments_due ON shipments (next_step_at) WHERE next_step_at IS NOT NULL;

CREATE TABLE shipment_status_history (
    shipment_id UUID NOT NULL REFERENCES shipments (id) ON DELETE CASCADE,
    seq         INT NOT NULL CHECK (seq > 0),
    status      TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (shipment_id, seq)
);

-- Inbox: event ids already applied (exactly-once handling of redeliveries).
CREATE TABLE processed_messages (
    event_id     UUID PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Transactional outbox, published by the relay in the `outbox` crate.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID NOT NULL,
    destination     TEXT NOT NULL,
    group_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    traceparent     TEXT,
    tracestate      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT
);
CREATE INDEX outbox_group_order ON outbox (group_id, id);
