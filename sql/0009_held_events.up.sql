-- Per-key order through a dead letter (handlers with on-failure=hold-key,
-- Go: dispatch.WithKeyOrder). When such a handler dead-letters an event
-- with a non-empty Kafka key, that row is the key's head (holds_key): the
-- handler's later events of the same key, on the same partition, are not
-- run but stored in pulsebus.held_events, in Kafka order, until the head
-- is redriven successfully or deleted. The consumer then runs them, oldest
-- first; one that fails for good becomes the key's new head.

ALTER TABLE pulsebus.dead_letters ADD COLUMN holds_key boolean NOT NULL DEFAULT false;

-- A worker reads its partition's heads when it starts.
CREATE INDEX dead_letters_heads ON pulsebus.dead_letters (group_id, handler, topic, partition) WHERE holds_key;

-- Events held behind a head: the raw Kafka message (key, headers, value
-- byte for byte, as in dead_letters), so the consumer runs them without
-- reading Kafka again. The head they wait for is the holds_key dead letter
-- of the same (group_id, handler, topic, partition, message_key); while
-- there is none (it was just redriven or deleted), the consumer is about
-- to run them.
CREATE TABLE pulsebus.held_events (
    id                    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id              text        NOT NULL,
    handler               text        NOT NULL,
    topic                 text        NOT NULL,
    partition             integer     NOT NULL CHECK (partition >= 0),
    kafka_offset          bigint      NOT NULL CHECK (kafka_offset >= 0),
    message_key           bytea       NOT NULL CHECK (length(message_key) > 0),
    event_id              text,
    event_type            text,
    message_header_keys   bytea[]     NOT NULL,
    message_header_values bytea[]     NOT NULL,
    message_value         bytea,
    message_time          timestamptz,
    held_at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (cardinality(message_header_keys) = cardinality(message_header_values)),
    UNIQUE (group_id, handler, topic, partition, kafka_offset)
);

-- A key's held events in Kafka order, and the keys a worker holds.
CREATE INDEX held_events_key ON pulsebus.held_events (group_id, handler, topic, partition, message_key, kafka_offset);
