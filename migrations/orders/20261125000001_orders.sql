-- The order-service database: OAuth2 clients, orders with their status history,
-- idempotency records, and the transactional outbox.

-- OAuth2 clients (client credentials grant). Secrets are stored only as argon2id
-- PHC strings; the plain secret is shown once, at creation.
CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    customer_id UUID NOT NULL,
    scopes      TEXT[] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id               UUID PRIMARY KEY,           -- UUIDv7: time-ordered
    customer_id      UUID NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('PENDING_SHIPMENT', 'SHIPPED', 'DELIVERED')),
    currency         CHAR(3) NOT NULL,
    items            JSONB NOT NULL,
    total_minor      BIGINT NOT NULL CHECK (total_minor >= 0),
    shipping_address JSONB NOT NULL,
    carrier          TEXT,
    tracking_number  TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
-- "My orders, newest first": ids are time-ordered, so id DESC is creation order.
CREATE INDEX orders_customer_newest ON orders (customer_id, id DESC);

-- One row per status an order has had; seq is the SSE event id (1, 2, 3).
CREATE TABLE order_status_history (
    order_id UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seq      INT NOT NULL CHECK (seq > 0),
    status   TEXT NOT NULL,
    at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- Durable backstop of request idempotency (Redis is the fast path). `key` is
-- 'k:' || Idempotency-Key, or 'f:' || request fingerprint for the short
-- double-submit window. The stored response is replayed on a retry.
CREATE TABLE idempotency_keys (
    customer_id     UUID NOT NULL,
    key             TEXT NOT NULL,
    request_hash    BYTEA NOT NULL,
    order_id        UUID NOT NULL,
    response_status SMALLINT NOT NULL,
    response_body   JSONB NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- Transactional outbox, published by the relay in the `outbox` crate.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID NOT NULL,               -- becomes MessageDeduplicationId
    destination     TEXT NOT NULL,               -- queue name
    group_id        TEXT NOT NULL,               -- becomes MessageGroupId (order id)
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    traceparent     TEXT,
    tracestate      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT
);
-- The relay publishes only the oldest pending row of each group.
CREATE INDEX outbox_group_order ON outbox (group_id, id);
