-- Per-key order through a refused event (relay --on-refused hold-key): the
-- relay's claim skips a row with a key while outbox_parked holds an
-- earlier row (a lower id) of the same topic and key. This index answers
-- that per claimed row; rows without a key promise no order and are never
-- held, so they are not in it.
CREATE INDEX outbox_parked_held_keys ON pulsebus.outbox_parked (topic, key, id) WHERE key <> '';
