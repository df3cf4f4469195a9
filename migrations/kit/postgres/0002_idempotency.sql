-- Idempotency keys: the key row commits in the same transaction as the work it guards, with
-- the response to replay. Rows older than 30 days are swept; keys on business rows stay forever.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    operation     TEXT NOT NULL,
    subject       TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status_code   BIGINT,
    response_body TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
