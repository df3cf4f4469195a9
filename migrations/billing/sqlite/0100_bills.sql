-- Billing service. Money in minor units (paise); times RFC 3339 UTC text.
CREATE TABLE bills (
    bill_id        INTEGER PRIMARY KEY,
    patient_id     INTEGER NOT NULL,
    appointment_id INTEGER NOT NULL,
    purpose        TEXT NOT NULL CHECK (purpose IN ('consultation', 'cancellation_fee', 'no_show_fee')),
    status         TEXT NOT NULL CHECK (status IN ('OPEN', 'PAID', 'PARTIALLY_REFUNDED', 'REFUNDED', 'VOID')),
    subtotal       INTEGER NOT NULL CHECK (subtotal >= 0),
    tax            INTEGER NOT NULL CHECK (tax >= 0),
    total          INTEGER NOT NULL CHECK (total >= 0),
    credits        INTEGER NOT NULL DEFAULT 0 CHECK (credits >= 0 AND credits <= total),
    paid           INTEGER NOT NULL DEFAULT 0 CHECK (paid >= 0),
    refunded       INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= paid),
    version        INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    -- One bill per appointment and purpose, however often an event is redelivered.
    UNIQUE (appointment_id, purpose)
);
CREATE INDEX bills_by_patient ON bills (patient_id, bill_id);

CREATE TABLE bill_lines (
    line_id     INTEGER PRIMARY KEY,
    bill_id     INTEGER NOT NULL REFERENCES bills (bill_id),
    kind        TEXT NOT NULL CHECK (kind IN ('consultation', 'medicine', 'fee')),
    description TEXT NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity >= 1),
    unit_price  INTEGER NOT NULL CHECK (unit_price >= 0),
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    source_ref  TEXT NOT NULL,
    UNIQUE (bill_id, source_ref)
);

-- Credit notes: corrections never edit lines.
CREATE TABLE adjustments (
    adjustment_id INTEGER PRIMARY KEY,
    bill_id       INTEGER NOT NULL REFERENCES bills (bill_id),
    amount        INTEGER NOT NULL CHECK (amount > 0),
    reason        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

-- Money movements reported by the payment service, keyed by their own ids: paid and refunded
-- are sums of these, so events may arrive in any order or twice.
CREATE TABLE bill_money (
    movement_id TEXT PRIMARY KEY,
    bill_id     INTEGER NOT NULL REFERENCES bills (bill_id),
    kind        TEXT NOT NULL CHECK (kind IN ('capture', 'refund')),
    amount      INTEGER NOT NULL CHECK (amount > 0)
);

-- Read model of prescriptions, fed by prescription.created.
CREATE TABLE prescribed (
    prescription_id INTEGER PRIMARY KEY,
    appointment_id  INTEGER NOT NULL,
    medication      TEXT NOT NULL,
    quantity        INTEGER NOT NULL,
    unit_price      INTEGER NOT NULL
);
CREATE INDEX prescribed_by_appointment ON prescribed (appointment_id);
