-- Payment service. Money in minor units (paise); times RFC 3339 UTC text.

-- The bills payment may charge, fed by bill.* events (or read once from billing). The CHECK is
-- the ledger rule: what was captured minus refunded never exceeds what the bill is owed, and
-- refunds never exceed captures, whatever the keys, requests or replicas.
CREATE TABLE bill_balance (
    bill_id    INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL,
    total      INTEGER NOT NULL,
    captured   INTEGER NOT NULL DEFAULT 0,
    refunded   INTEGER NOT NULL DEFAULT 0,
    status     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    CONSTRAINT money_conserved CHECK (
        captured >= 0 AND refunded >= 0 AND refunded <= captured AND captured - refunded <= total)
);

CREATE TABLE payments (
    payment_id      INTEGER PRIMARY KEY,
    bill_id         INTEGER NOT NULL REFERENCES bill_balance (bill_id),
    patient_id      INTEGER NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    method          TEXT NOT NULL CHECK (method IN ('CASH', 'CARD', 'UPI')),
    reference       TEXT NOT NULL UNIQUE,
    refunded        INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    -- Kept forever: a retry after the response cache is swept is still not a second charge.
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash    TEXT NOT NULL,
    paid_at         TEXT NOT NULL
);
CREATE INDEX payments_by_bill ON payments (bill_id, payment_id);

CREATE TABLE refunds (
    refund_id       INTEGER PRIMARY KEY,
    payment_id      INTEGER NOT NULL REFERENCES payments (payment_id),
    bill_id         INTEGER NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    reason          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash    TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
