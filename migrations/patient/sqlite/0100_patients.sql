-- Patient service. Timestamps are RFC 3339 UTC text; dates YYYY-MM-DD; flags 0/1.
CREATE TABLE patients (
    patient_id INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT,
    phone      TEXT NOT NULL,
    dob        TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    version    INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX patients_phone ON patients (phone);
CREATE INDEX patients_email ON patients (LOWER(email));

-- Who disclosed or changed which patient record, when, and in which request. Append-only.
CREATE TABLE patient_audit (
    audit_id       INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,
    patient_id     INTEGER NOT NULL,
    subject        TEXT NOT NULL,
    role           TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('create', 'read', 'search_hit', 'update', 'deactivate', 'audit_read')),
    route          TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    detail         TEXT
);
CREATE INDEX patient_audit_by_patient ON patient_audit (patient_id, audit_id);

CREATE TRIGGER patient_audit_no_update BEFORE UPDATE ON patient_audit
BEGIN
    SELECT RAISE(ABORT, 'patient_audit is append-only');
END;

CREATE TRIGGER patient_audit_no_delete BEFORE DELETE ON patient_audit
BEGIN
    SELECT RAISE(ABORT, 'patient_audit is append-only');
END;
