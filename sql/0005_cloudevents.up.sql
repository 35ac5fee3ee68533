-- CloudEvents ids are opaque strings: events from other producers may carry
-- any non-empty id ("order-1005/created#1"), kept byte for byte. A dead
-- letter records the id as it came (event ids in the outbox stay UUIDs:
-- PulseBus writes UUIDv7).
ALTER TABLE pulsebus.dead_letters ALTER COLUMN event_id TYPE text USING event_id::text;
