-- Each relay claims one subscriber's due deliveries. With the subscriber second in the due
-- index, a claim reads only its own subscriber's entries: with (state, next_attempt_at) it
-- walked every pending delivery of every subscriber to find its own, so a backlog for one
-- (billing's deliveries to payment) slowed every other subscriber's claims. The counts for the
-- metrics (by state, then subscriber) are read from this index alone.
DROP INDEX outbox_delivery_due;
CREATE INDEX outbox_delivery_due ON outbox_delivery (state, subscriber, next_attempt_at);
