-- PulseBus schema, version 2: dead letters keep every message byte for byte,
-- whatever it holds.
--
-- message_headers (jsonb) cannot hold every Kafka header: jsonb refuses a NUL
-- in a key (22P05) and keys that are not valid UTF-8 were replaced. The raw
-- header keys and values now go into two arrays of equal length, in message
-- order (a NULL value is a header without a value). message_headers stays as
-- a readable copy for SQL and older binaries, with NUL and invalid UTF-8 in
-- keys replaced by U+FFFD; rows written before this version, or by an older
-- binary, have NULL arrays and only that copy.
--
-- message_stored is false for a row that only records where the message was
-- (topic, partition, offset) and why storing it failed: the consumer writes
-- such a row, rather than retrying forever, if storing the whole message
-- fails. Its key, headers and value are empty.
ALTER TABLE pulsebus.dead_letters
    ADD COLUMN message_header_keys   bytea[],
    ADD COLUMN message_header_values bytea[],
    ADD COLUMN message_stored        boolean NOT NULL DEFAULT true,
    ADD CONSTRAINT dead_letters_header_arrays CHECK (
        coalesce(cardinality(message_header_keys), -1) = coalesce(cardinality(message_header_values), -1));
