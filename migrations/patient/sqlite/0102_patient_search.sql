-- Substring search of name, e-mail and phone by trigram: a search for a term of three or more
-- characters reads the few patients whose text holds the term's trigrams, not every patient.
-- The index holds no copy of the text (content='patients'); triggers keep it in step.
CREATE VIRTUAL TABLE patients_search USING fts5(
    name, email, phone, content = 'patients', content_rowid = 'patient_id', tokenize = 'trigram'
);
INSERT INTO patients_search (patients_search) VALUES ('rebuild');
CREATE TRIGGER patients_search_insert AFTER INSERT ON patients BEGIN
    INSERT INTO patients_search (rowid, name, email, phone)
    VALUES (new.patient_id, new.name, new.email, new.phone);
END;
CREATE TRIGGER patients_search_delete AFTER DELETE ON patients BEGIN
    INSERT INTO patients_search (patients_search, rowid, name, email, phone)
    VALUES ('delete', old.patient_id, old.name, old.email, old.phone);
END;
CREATE TRIGGER patients_search_update AFTER UPDATE OF name, email, phone ON patients BEGIN
    INSERT INTO patients_search (patients_search, rowid, name, email, phone)
    VALUES ('delete', old.patient_id, old.name, old.email, old.phone);
    INSERT INTO patients_search (rowid, name, email, phone)
    VALUES (new.patient_id, new.name, new.email, new.phone);
END;
