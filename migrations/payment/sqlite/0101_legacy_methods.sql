-- An imported payment keeps the method the old system recorded (a cheque, a bank transfer):
-- money the hospital received stays in its books. Live payments still take CASH, CARD, UPI.
--
-- SQLite cannot change a CHECK in place (see billing's 0101 for why the definition is edited
-- rather than the table rebuilt); loosening it changes nothing stored.
PRAGMA writable_schema = ON;
UPDATE sqlite_master
   SET sql = replace(sql,
                     'method IN (''CASH'', ''CARD'', ''UPI'')',
                     'method IN (''CASH'', ''CARD'', ''UPI'') OR (request_hash = ''legacy'' AND length(trim(method)) > 0)')
 WHERE type = 'table' AND name = 'payments';
PRAGMA writable_schema = OFF;
CREATE TABLE _hms_schema_bump (x INTEGER);
DROP TABLE _hms_schema_bump;
