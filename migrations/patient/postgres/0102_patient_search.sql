-- Substring search of name, e-mail and phone by trigram: the searches' `LIKE '%term%'` on
-- these expressions are answered from the indexes instead of reading every patient.
-- pg_trgm ships with PostgreSQL and is a trusted extension: a database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX patients_name_trgm ON patients USING gin (LOWER(name) gin_trgm_ops);
CREATE INDEX patients_email_trgm ON patients USING gin (LOWER(email) gin_trgm_ops);
CREATE INDEX patients_phone_trgm ON patients USING gin (phone gin_trgm_ops);
