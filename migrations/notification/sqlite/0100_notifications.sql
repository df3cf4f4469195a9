-- Notification service. Times RFC 3339 UTC text. Recipients are personal data: they are
-- stored here (staff read them as alerts) and never logged unmasked.
CREATE TABLE notifications (
    notification_id INTEGER PRIMARY KEY,
    source_id       TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('EMAIL', 'SMS')),
    patient_id      INTEGER,
    recipient       TEXT NOT NULL,
    message         TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    -- One message per event (or reminder) and channel, however often the event is delivered.
    UNIQUE (source_id, channel)
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
CREATE INDEX notifications_by_patient ON notifications (patient_id, notification_id);
CREATE INDEX notifications_by_recipient ON notifications (recipient, notification_id);

-- What the service knows of each appointment: applied only from newer events (seq).
CREATE TABLE appointment_state (
    appointment_id INTEGER PRIMARY KEY,
    patient_id     INTEGER NOT NULL,
    doctor_id      INTEGER NOT NULL,
    slot_start     TEXT NOT NULL,
    status         TEXT NOT NULL,
    seq            INTEGER NOT NULL
);

CREATE TABLE reminders (
    reminder_id     INTEGER PRIMARY KEY,
    appointment_id  INTEGER NOT NULL,
    patient_id      INTEGER NOT NULL,
    doctor_id       INTEGER NOT NULL,
    slot_start      TEXT NOT NULL,
    offset_minutes  INTEGER NOT NULL,
    due_at          TEXT NOT NULL,
    appointment_seq INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('scheduled', 'sent', 'cancelled')),
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    UNIQUE (appointment_id, slot_start, offset_minutes)
);
CREATE INDEX reminders_due ON reminders (status, due_at);
CREATE INDEX reminders_by_appointment ON reminders (appointment_id);
