-- An imported bill keeps its legacy figures: its amount is its total (never taxed again) and
-- its legacy status stands until live money moves on it. NULL for every bill HMS made.
ALTER TABLE bills ADD COLUMN legacy_status TEXT
    CHECK (legacy_status IN ('OPEN', 'PAID', 'PARTIALLY_REFUNDED', 'REFUNDED', 'VOID'));
