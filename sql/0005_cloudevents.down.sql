-- Ids that are not UUIDs cannot go back into a uuid column: they are
-- dropped (set to NULL); the message's headers still hold them.
ALTER TABLE pulsebus.dead_letters ALTER COLUMN event_id TYPE uuid
    USING CASE WHEN event_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN event_id::uuid END;
