-- The relay delivers a subscriber's events of one aggregate in order: a delivery waits while an
-- earlier event of its aggregate is pending for the same subscriber. This index answers "is
-- there an earlier event of this aggregate" by lookup, so a backlog of thousands drains at the
-- rate deliveries are made rather than slowing as it grows.
CREATE INDEX outbox_aggregate_order ON outbox (aggregate_type, aggregate_id, aggregate_seq);
