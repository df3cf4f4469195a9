-- A bill is recomputed from its credit notes and money movements on creation and on every
-- payment and refund; without these, each recomputation read every movement of every bill.
CREATE INDEX bill_money_by_bill ON bill_money (bill_id, kind);
CREATE INDEX adjustments_by_bill ON adjustments (bill_id);
