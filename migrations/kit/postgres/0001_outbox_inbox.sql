-- Shared by every service (kit versions are below 100; a service's own start at 100).
-- Transactional outbox: the event row and one delivery row per subscriber are written in the
-- same transaction as the state change they announce. Timestamps are RFC 3339 UTC text, the
-- same canonical form as on SQLite, so business SQL is identical on both backends.
CREATE TABLE outbox (
    event_id       TEXT PRIMARY KEY,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    aggregate_seq  BIGINT NOT NULL,
    event_type     TEXT NOT NULL,
    payload        TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    occurred_at    TEXT NOT NULL
);

CREATE TABLE outbox_delivery (
    event_id        TEXT NOT NULL REFERENCES outbox (event_id),
    subscriber      TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'parked')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    delivered_at    TEXT,
    PRIMARY KEY (event_id, subscriber)
);
CREATE INDEX outbox_delivery_due ON outbox_delivery (state, next_attempt_at);

CREATE TABLE inbox (
    source       TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (source, event_id)
);
