-- The old system sometimes billed one appointment more than once. Its first bill of an
-- appointment is that appointment's consultation bill; each further one is kept as a bill of
-- its own, purpose 'legacy:<bill id>', so nothing the hospital billed is dropped.
--
-- SQLite cannot change a CHECK in place (see 0101 for why the definition is edited).
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql,
                     'OR purpose LIKE ''supplementary:%''',
                     'OR purpose LIKE ''supplementary:%'' OR purpose LIKE ''legacy:%''')
 WHERE type = 'table' AND name = 'bills';
PRAGMA writable_schema = OFF;
CREATE TABLE _hms_schema_bump (x INTEGER);
DROP TABLE _hms_schema_bump;
