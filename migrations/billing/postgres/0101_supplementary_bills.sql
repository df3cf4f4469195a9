-- A prescription written after its appointment's bill was settled is billed on a
-- supplementary bill of its own, purpose 'supplementary:<prescription id>'.
ALTER TABLE bills DROP CONSTRAINT bills_purpose_check;
ALTER TABLE bills ADD CONSTRAINT bills_purpose_check
    CHECK (purpose IN ('consultation', 'cancellation_fee', 'no_show_fee') OR purpose LIKE 'supplementary:%');
