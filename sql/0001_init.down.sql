-- The pulsebus schema itself stays: it holds the migrator's version table.
DROP FUNCTION IF EXISTS pulsebus.publish(text, text, text, jsonb, jsonb, text, text);
DROP FUNCTION IF EXISTS pulsebus.uuid_v7();
DROP TABLE IF EXISTS pulsebus.dead_letters;
DROP TABLE IF EXISTS pulsebus.handler_offsets;
DROP TABLE IF EXISTS pulsebus.relay_leader;
DROP TABLE IF EXISTS pulsebus.outbox_parked;
DROP TABLE IF EXISTS pulsebus.outbox;
