-- OAuth2 clients: how each secret is stored, and whether the client may act.
-- `argon2id`: a PHC string (secrets people chose, `clients create --client-secret`).
-- `hmac-sha256`: hex HMAC-SHA-256 of a generated 256-bit secret under the
-- server's CLIENT_SECRET_KEY, checked in constant time without argon2's cost.
-- `disabled_at`: set by `order-service clients disable`; such a client gets no
-- token, and its tokens stop working once the API's revocation set refreshes.
ALTER TABLE clients
    ADD COLUMN secret_kind TEXT NOT NULL DEFAULT 'argon2id'
        CONSTRAINT clients_secret_kind CHECK (secret_kind IN ('argon2id', 'hmac-sha256')),
    ADD COLUMN disabled_at TIMESTAMPTZ;

-- The revocation set is read every few seconds by every API process.
CREATE INDEX clients_disabled ON clients (client_id) WHERE disabled_at IS NOT NULL;
