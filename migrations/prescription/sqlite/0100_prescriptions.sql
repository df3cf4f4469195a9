-- Prescription service. Money in minor units (paise); times RFC 3339 UTC text; flags 0/1.
CREATE TABLE formulary (
    medication_id INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    form          TEXT NOT NULL,
    unit_price    INTEGER NOT NULL CHECK (unit_price >= 0),
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX formulary_name ON formulary (LOWER(name));

CREATE TABLE prescriptions (
    prescription_id INTEGER PRIMARY KEY,
    appointment_id  INTEGER NOT NULL,
    patient_id      INTEGER NOT NULL,
    doctor_id       INTEGER NOT NULL,
    medication_id   INTEGER NOT NULL REFERENCES formulary (medication_id),
    medication      TEXT NOT NULL,
    dosage          TEXT NOT NULL,
    days            INTEGER NOT NULL CHECK (days >= 1),
    quantity        INTEGER NOT NULL CHECK (quantity >= 1),
    unit_price      INTEGER NOT NULL CHECK (unit_price >= 0),
    issued_at       TEXT NOT NULL
);
CREATE INDEX prescriptions_by_appointment ON prescriptions (appointment_id);
CREATE INDEX prescriptions_by_patient ON prescriptions (patient_id);
CREATE INDEX prescriptions_by_doctor ON prescriptions (doctor_id);

-- The medications of the legacy data, and common others, at their unit prices.
INSERT INTO formulary (name, form, unit_price, active, version, created_at, updated_at) VALUES
    ('Paracetamol', 'tablet 500 mg', 200, 1, 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z'),
    ('Amoxicillin', 'capsule 500 mg', 850, 1, 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z'),
    ('Ibuprofen', 'tablet 400 mg', 300, 1, 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z'),
    ('Cetirizine', 'tablet 10 mg', 150, 1, 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z'),
    ('Omeprazole', 'capsule 20 mg', 450, 1, 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z'),
    ('Azithromycin', 'tablet 500 mg', 2200, 1, 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z'),
    ('Metformin', 'tablet 500 mg', 120, 1, 1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z');
