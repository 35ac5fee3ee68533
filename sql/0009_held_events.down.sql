-- Back to the previous version: held events are dropped (this build's consumer would
-- run them; the older one does not know them) and heads become ordinary
-- dead letters. Migrating down refuses while held_events has rows unless
-- forced.
DROP TABLE IF EXISTS pulsebus.held_events;
DROP INDEX IF EXISTS pulsebus.dead_letters_heads;
ALTER TABLE pulsebus.dead_letters DROP COLUMN holds_key;
