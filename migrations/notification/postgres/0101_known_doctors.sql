-- What the messages say of a doctor ("with Dr. X (Department)"), fetched from the doctor
-- service once and kept, so a confirmation or reminder needs no call to it. `version` is the
-- doctor's version the kept name and department were read at (NULL until read); `announced`
-- the latest version the doctor service's events have told of. A kept copy older than the
-- announced version is read again.
CREATE TABLE known_doctors (
    doctor_id  BIGINT PRIMARY KEY,
    name       TEXT,
    department TEXT,
    version    BIGINT,
    announced  BIGINT NOT NULL
);
