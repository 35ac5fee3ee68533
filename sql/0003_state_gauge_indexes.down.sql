DROP INDEX IF EXISTS pulsebus.dead_letters_group_handler_created_at;
DROP INDEX IF EXISTS pulsebus.outbox_parked_parked_at;
