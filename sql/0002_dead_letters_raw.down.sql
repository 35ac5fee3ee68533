-- Back to version 1: the raw header arrays go; message_headers keeps the
-- readable copy of every row's headers (keys with NUL or invalid UTF-8 as
-- U+FFFD). Rows that recorded only a message's position keep their error.
ALTER TABLE pulsebus.dead_letters
    DROP CONSTRAINT dead_letters_header_arrays,
    DROP COLUMN message_header_keys,
    DROP COLUMN message_header_values,
    DROP COLUMN message_stored;
