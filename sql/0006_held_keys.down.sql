DROP INDEX pulsebus.outbox_parked_held_keys;
