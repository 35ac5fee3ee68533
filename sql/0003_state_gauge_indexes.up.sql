-- Indexes that keep the state gauges cheap on big tables (the relay's
-- pulsebus_relay_parked_* and the consumer's pulsebus_consumer_dead_letter*
-- gauges, read at scrape time; see docs/state-gauges.md). With them the
-- oldest parked row and each handler's oldest dead letter are one index
-- probe, and a handler's stored dead letters are counted, up to a cap, by
-- an index-only scan of its own entries.
-- CREATE INDEX (not CONCURRENTLY: migrations run in one transaction) blocks
-- writes to the table while it builds; both tables are small in a healthy
-- system.
CREATE INDEX outbox_parked_parked_at ON pulsebus.outbox_parked (parked_at);
CREATE INDEX dead_letters_group_handler_created_at ON pulsebus.dead_letters (group_id, handler, created_at);
