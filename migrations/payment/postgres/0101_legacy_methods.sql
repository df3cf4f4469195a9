-- An imported payment keeps the method the old system recorded (a cheque, a bank transfer):
-- money the hospital received stays in its books. Live payments still take CASH, CARD, UPI.
ALTER TABLE payments DROP CONSTRAINT payments_method_check;
ALTER TABLE payments ADD CONSTRAINT payments_method_check
    CHECK (method IN ('CASH', 'CARD', 'UPI') OR (request_hash = 'legacy' AND length(trim(method)) > 0));
