-- Ids of the legacy data are reserved, imported or not: no record made live takes one.
-- AUTOINCREMENT makes SQLite allocate past the table's row in sqlite_sequence, which an
-- import raises. SQLite cannot add AUTOINCREMENT in place, and the rebuild-and-rename
-- procedure needs foreign keys off, which cannot be switched inside the transaction every
-- migration runs in; the keyword changes nothing stored, so the definition is edited (as
-- billing's 0101 does for a CHECK). A throw-away AUTOINCREMENT table creates sqlite_sequence.
CREATE TABLE _hms_autoincrement (x INTEGER PRIMARY KEY AUTOINCREMENT);
DROP TABLE _hms_autoincrement;
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql, 'INTEGER PRIMARY KEY,', 'INTEGER PRIMARY KEY AUTOINCREMENT,')
 WHERE type = 'table' AND name = 'bills';
PRAGMA writable_schema = OFF;
-- Any schema change bumps the schema cookie, so connections re-read the edited definition.
CREATE TABLE _hms_schema_bump (x INTEGER);
DROP TABLE _hms_schema_bump;
