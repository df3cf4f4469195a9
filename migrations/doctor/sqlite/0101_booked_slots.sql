-- Read model of the appointment service's booked slots, fed by appointment.* events, so that
-- availability leaves them out. An event applies only if newer (seq) than what is stored.
CREATE TABLE booked_slots (
    appointment_id INTEGER PRIMARY KEY,
    doctor_id      INTEGER NOT NULL,
    slot_start     TEXT NOT NULL,
    active         INTEGER NOT NULL CHECK (active IN (0, 1)),
    seq            INTEGER NOT NULL
);
CREATE INDEX booked_slots_by_doctor ON booked_slots (doctor_id, slot_start);
