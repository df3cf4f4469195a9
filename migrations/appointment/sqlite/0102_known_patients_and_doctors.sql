-- What booking needs to know of the patient and doctor services' records, kept from the
-- events they publish (and, for a record no event has brought yet, fetched once and kept):
-- a booking then makes no call to either service.

-- Each patient's status, at the version it was learned.
CREATE TABLE known_patients (
    patient_id BIGINT PRIMARY KEY,
    active     INTEGER NOT NULL CHECK (active IN (0, 1)),
    version    BIGINT NOT NULL
);

-- Each doctor's latest version announced: a kept day of an older version is not used.
CREATE TABLE known_doctors (
    doctor_id BIGINT PRIMARY KEY,
    version   BIGINT NOT NULL
);

-- A doctor's day as the booking rules need it (the doctor service's schedule of that
-- clinic-local date, JSON), at the doctor's version it was fetched at.
CREATE TABLE doctor_days (
    doctor_id BIGINT NOT NULL,
    day       TEXT NOT NULL,
    version   BIGINT NOT NULL,
    schedule  TEXT NOT NULL,
    PRIMARY KEY (doctor_id, day)
);
