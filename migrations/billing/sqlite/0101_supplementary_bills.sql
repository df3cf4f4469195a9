-- A prescription written after its appointment's bill was settled is billed on a
-- supplementary bill of its own, purpose 'supplementary:<prescription id>'.
--
-- SQLite cannot change a CHECK in place, and the rebuild-and-rename procedure needs foreign
-- keys off, which cannot be switched inside the transaction every migration runs in. Loosening
-- a CHECK changes nothing stored, so the table's definition is edited instead: SQLite's
-- documented procedure for removing or changing CHECK constraints (writable_schema, then a
-- schema_version bump so every connection re-reads the schema).
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql,
                     'purpose IN (''consultation'', ''cancellation_fee'', ''no_show_fee'')',
                     'purpose IN (''consultation'', ''cancellation_fee'', ''no_show_fee'') OR purpose LIKE ''supplementary:%''')
 WHERE type = 'table' AND name = 'bills';
PRAGMA writable_schema = OFF;
-- Any schema change bumps the schema cookie, so connections re-read the edited definition.
CREATE TABLE _hms_schema_bump (x INTEGER);
DROP TABLE _hms_schema_bump;
