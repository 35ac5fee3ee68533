-- PulseBus schema, version 1: outbox, parked outbox rows, relay leader lease,
-- consumer handler offsets and dead letters, and the SQL producer function.
CREATE SCHEMA IF NOT EXISTS pulsebus;

-- Events waiting for the relay. The relay claims the oldest rows by id,
-- publishes them and deletes them after the broker acknowledged them, so the
-- table only holds the backlog.
CREATE TABLE pulsebus.outbox (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid        NOT NULL,
    topic         text        NOT NULL CHECK (topic <> ''),
    key           text        NOT NULL DEFAULT '',
    type          text        NOT NULL CHECK (type <> ''),
    source        text        NOT NULL CHECK (source <> ''),
    subject       text        NOT NULL DEFAULT '',
    event_time    timestamptz NOT NULL,
    content_type  text        NOT NULL DEFAULT '',
    meta          jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(meta) = 'object'),
    payload       bytea       NOT NULL,
    -- When the row was written; the relay measures commit-to-ack latency and
    -- backlog age from it.
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Failed publish attempts so far and the last error, for rows the broker
    -- refused transiently.
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text
);

-- Rows the broker refused for good (too large, invalid topic, not
-- authorized). An operator inspects them and re-queues or deletes them.
CREATE TABLE pulsebus.outbox_parked (
    id            bigint      PRIMARY KEY,
    event_id      uuid        NOT NULL,
    topic         text        NOT NULL,
    key           text        NOT NULL,
    type          text        NOT NULL,
    source        text        NOT NULL,
    subject       text        NOT NULL,
    event_time    timestamptz NOT NULL,
    content_type  text        NOT NULL,
    meta          jsonb       NOT NULL,
    payload       bytea       NOT NULL,
    created_at    timestamptz NOT NULL,
    attempts      integer     NOT NULL,
    error         text        NOT NULL,
    parked_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The relay leader lease: one row per relay name. A relay publishes only
-- while it holds an unexpired lease; every acquisition starts a new term, and
-- renewals and deletes are fenced by (leader_id, term).
CREATE TABLE pulsebus.relay_leader (
    name          text        PRIMARY KEY,
    leader_id     text        NOT NULL,
    term          bigint      NOT NULL,
    acquired_at   timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);

-- Per-handler consumer progress: the next Kafka offset each handler of a
-- consumer group has to process on each partition. This table, not the Kafka
-- group offset, is the truth; replay rewrites it.
CREATE TABLE pulsebus.handler_offsets (
    group_id      text        NOT NULL,
    handler       text        NOT NULL,
    topic         text        NOT NULL,
    partition     integer     NOT NULL CHECK (partition >= 0),
    next_offset   bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (group_id, handler, topic, partition)
);

-- Messages a handler gave up on (retries spent, a permanent error, or a
-- message that is not a valid envelope). The raw Kafka message is kept so it
-- can be redriven byte for byte.
CREATE TABLE pulsebus.dead_letters (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id         text        NOT NULL,
    handler          text        NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL,
    kafka_offset     bigint      NOT NULL,
    event_id         uuid,
    event_type       text,
    message_key      bytea,
    message_headers  jsonb       NOT NULL DEFAULT '[]',
    message_value    bytea,
    error            text        NOT NULL,
    attempts         integer     NOT NULL,
    first_failed_at  timestamptz NOT NULL,
    last_failed_at   timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (group_id, handler, topic, partition, kafka_offset)
);

-- uuid_v7 returns a time-ordered UUID (RFC 9562 version 7) from the clock,
-- as the Go producer writes them. PostgreSQL 18 has uuidv7(); this keeps 13+.
CREATE FUNCTION pulsebus.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- publish writes one event into the outbox inside the caller's transaction
-- and wakes the relay when that transaction commits. It notifies channel
-- pulsebus_outbox only if it gets the transaction-scoped advisory lock
-- 8098156504939062905 (0x70626e6f74696679, "pbnotify"; Go:
-- outbox.NotifyLockKey) without waiting: PostgreSQL commits notifying
-- transactions one at a time, so while one transaction is notifying the
-- others skip it and rely on its notification and the relay's follow-up
-- claims (see the Go package outbox). It is the producer
-- contract for any language; the event reaches Kafka exactly as one written by
-- the Go API with the same fields:
--   topic   Kafka topic
--   key     partition key ('' or NULL for none)
--   type    event type, e.g. 'lesson.published'
--   payload event data; sent as its JSON text with content-type application/json
--   meta    extension attributes, a flat object of strings whose keys are
--           1-20 lower-case letters or digits (tenant, correlationid, traceparent)
--   source  producing service; defaults to the setting pulsebus.source, then
--           application_name, then 'postgres'
--   subject optional CloudEvents subject
-- It returns the new event id.
CREATE FUNCTION pulsebus.publish(
    topic   text,
    key     text,
    type    text,
    payload jsonb,
    meta    jsonb DEFAULT '{}',
    source  text DEFAULT NULL,
    subject text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    new_id uuid := pulsebus.uuid_v7();
    bad    text;
BEGIN
    IF topic IS NULL OR topic = '' THEN
        RAISE EXCEPTION 'pulsebus.publish: topic is required' USING ERRCODE = '22023';
    END IF;
    IF type IS NULL OR type = '' THEN
        RAISE EXCEPTION 'pulsebus.publish: type is required' USING ERRCODE = '22023';
    END IF;
    IF payload IS NULL THEN
        RAISE EXCEPTION 'pulsebus.publish: payload is required' USING ERRCODE = '22023';
    END IF;
    meta := coalesce(meta, '{}');
    IF jsonb_typeof(meta) <> 'object' THEN
        RAISE EXCEPTION 'pulsebus.publish: meta must be a JSON object, got %', jsonb_typeof(meta) USING ERRCODE = '22023';
    END IF;
    SELECT k INTO bad FROM jsonb_each(meta) AS m(k, v)
     WHERE k !~ '^[a-z0-9]{1,20}$'
        OR k IN ('specversion', 'id', 'type', 'source', 'subject', 'time', 'datacontenttype', 'dataschema', 'data')
        OR jsonb_typeof(v) <> 'string'
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'pulsebus.publish: meta key % must be 1-20 lower-case letters or digits, not a core attribute, with a string value', bad
            USING ERRCODE = '22023';
    END IF;
    source := coalesce(nullif(source, ''),
                       nullif(current_setting('pulsebus.source', true), ''),
                       nullif(current_setting('application_name', true), ''),
                       'postgres');
    INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload)
    VALUES (new_id, topic, coalesce(key, ''), type, source, coalesce(subject, ''),
            date_trunc('microseconds', clock_timestamp()), 'application/json', meta,
            convert_to(payload::text, 'UTF8'));
    IF pg_try_advisory_xact_lock(8098156504939062905) THEN
        PERFORM pg_notify('pulsebus_outbox', '');
    END IF;
    RETURN new_id;
END
$$;
