-- Doctor and scheduling service. Money in minor units (paise); times RFC 3339 UTC text;
-- working hours in clinic-local minutes after midnight; dates YYYY-MM-DD; flags 0/1.
CREATE TABLE doctors (
    doctor_id        INTEGER PRIMARY KEY,
    name             TEXT NOT NULL,
    email            TEXT,
    phone            TEXT,
    department       TEXT NOT NULL,
    specialization   TEXT NOT NULL,
    consultation_fee INTEGER NOT NULL CHECK (consultation_fee >= 0),
    active           INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    version          INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX doctors_department ON doctors (LOWER(department));

CREATE TABLE working_hours (
    doctor_id    INTEGER NOT NULL REFERENCES doctors (doctor_id),
    weekday      INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    start_minute INTEGER NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
    end_minute   INTEGER NOT NULL CHECK (end_minute > start_minute AND end_minute <= 1440),
    PRIMARY KEY (doctor_id, weekday, start_minute)
);

CREATE TABLE leaves (
    leave_id   INTEGER PRIMARY KEY,
    doctor_id  INTEGER NOT NULL REFERENCES doctors (doctor_id),
    start_date TEXT NOT NULL,
    end_date   TEXT NOT NULL,
    reason     TEXT,
    created_at TEXT NOT NULL,
    CHECK (end_date >= start_date)
);
CREATE INDEX leaves_by_doctor ON leaves (doctor_id, start_date);
