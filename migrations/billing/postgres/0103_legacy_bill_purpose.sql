-- The old system sometimes billed one appointment more than once. Its first bill of an
-- appointment is that appointment's consultation bill; each further one is kept as a bill of
-- its own, purpose 'legacy:<bill id>', so nothing the hospital billed is dropped.
ALTER TABLE bills DROP CONSTRAINT bills_purpose_check;
ALTER TABLE bills ADD CONSTRAINT bills_purpose_check
    CHECK (purpose IN ('consultation', 'cancellation_fee', 'no_show_fee')
           OR purpose LIKE 'supplementary:%' OR purpose LIKE 'legacy:%');
