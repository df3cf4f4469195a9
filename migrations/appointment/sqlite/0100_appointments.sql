-- Appointment service. Times are RFC 3339 UTC text; clinic_day is the clinic-local date.
CREATE TABLE appointments (
    appointment_id   INTEGER PRIMARY KEY,
    patient_id       INTEGER NOT NULL,
    doctor_id        INTEGER NOT NULL,
    department       TEXT NOT NULL,
    slot_start       TEXT NOT NULL,
    slot_end         TEXT NOT NULL,
    clinic_day       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('SCHEDULED', 'CANCELLED', 'NO_SHOW', 'COMPLETED')),
    reschedule_count INTEGER NOT NULL DEFAULT 0 CHECK (reschedule_count BETWEEN 0 AND 2),
    version          INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    consultation_fee INTEGER NOT NULL DEFAULT 0 CHECK (consultation_fee >= 0),
    fee_decision     TEXT CHECK (fee_decision IN ('none', 'half', 'full')),
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX appointments_by_patient ON appointments (patient_id, slot_start);
CREATE INDEX appointments_by_doctor ON appointments (doctor_id, slot_start);
CREATE INDEX appointments_by_status ON appointments (status, slot_start);

-- No double booking: an active appointment claims its slot for the doctor and for the patient.
-- The primary keys refuse a second claim; cancelling or moving deletes the claim.
CREATE TABLE doctor_slot_claims (
    doctor_id      INTEGER NOT NULL,
    slot_start     TEXT NOT NULL,
    clinic_day     TEXT NOT NULL,
    appointment_id INTEGER NOT NULL REFERENCES appointments (appointment_id),
    PRIMARY KEY (doctor_id, slot_start)
);
CREATE INDEX doctor_slot_claims_by_appointment ON doctor_slot_claims (appointment_id);

CREATE TABLE patient_slot_claims (
    patient_id     INTEGER NOT NULL,
    slot_start     TEXT NOT NULL,
    appointment_id INTEGER NOT NULL REFERENCES appointments (appointment_id),
    PRIMARY KEY (patient_id, slot_start)
);
CREATE INDEX patient_slot_claims_by_appointment ON patient_slot_claims (appointment_id);

-- Daily cap: one counter per doctor and clinic-local day, bounded by its CHECK.
CREATE TABLE doctor_day_load (
    doctor_id INTEGER NOT NULL,
    day       TEXT NOT NULL,
    booked    INTEGER NOT NULL,
    cap       INTEGER NOT NULL,
    PRIMARY KEY (doctor_id, day),
    CONSTRAINT daily_cap CHECK (booked >= 0 AND booked <= cap)
);
