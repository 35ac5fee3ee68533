-- PulseBus schema, version 2: the limits every producer path enforces when an
-- event enters the outbox, defined once, here.
--
-- pulsebus.publish and the Go producer (outbox.InsertTx) both refuse an event
-- through pulsebus.event_violation in the inserting statement, so an event
-- that could never be published (a topic Kafka refuses, a key, attribute or
-- payload over the limits) never waits in the outbox: the producer gets
-- SQLSTATE 22023 naming the field. Raise a limit with one UPDATE of
-- pulsebus.limits; the relay must then accept it too (its --max-payload-bytes
-- and --max-message-bytes).

-- limits holds exactly one row: the sizes and counts an event may have. Its
-- values at creation are the Go defaults of package envelope
-- (envelope.DefaultLimits), which the relay and the consumers decode with.
CREATE TABLE pulsebus.limits (
    singleton              boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- payload bytes (for pulsebus.publish: its JSON text in UTF-8)
    max_payload_bytes      integer NOT NULL CHECK (max_payload_bytes > 0),
    -- partition key bytes
    max_key_bytes          integer NOT NULL CHECK (max_key_bytes > 0),
    -- Kafka headers per event: 5 CloudEvents attributes (specversion, id,
    -- type, source, time), content-type and subject when set, one per meta
    -- entry
    max_headers            integer NOT NULL CHECK (max_headers >= 7),
    -- bytes of each of type, source, subject, content type and meta value
    max_header_value_bytes integer NOT NULL CHECK (max_header_value_bytes > 0)
);
INSERT INTO pulsebus.limits (max_payload_bytes, max_key_bytes, max_headers, max_header_value_bytes)
VALUES (921600, 1024, 32, 4096);

-- event_violation returns the first thing that keeps an event from entering
-- the outbox, or no row when it may: the field ('topic', 'key', 'ce_type',
-- 'ce_source', 'ce_subject', 'content-type', 'meta.<name>', 'headers',
-- 'payload', as the Go package envelope names them), why, and for a limit
-- the size and the maximum. Topics follow Kafka's rules: 1 to 249 ASCII
-- letters, digits, '.', '_' or '-', and neither '.' nor '..'. Arguments must
-- not be NULL.
CREATE FUNCTION pulsebus.event_violation(
    topic         text,
    key           text,
    type          text,
    source        text,
    subject       text,
    content_type  text,
    meta          jsonb,
    payload_bytes bigint
) RETURNS TABLE (field text, reason text, size bigint, maximum bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT v.field, v.reason, v.size, v.maximum
      FROM pulsebus.limits l
      LEFT JOIN LATERAL (
            SELECT m.name, octet_length(m.val) AS bytes
              FROM jsonb_each_text(meta) AS m(name, val)
             WHERE octet_length(m.val) > l.max_header_value_bytes
             ORDER BY m.name LIMIT 1) AS big_meta ON true
     CROSS JOIN LATERAL (VALUES
        (1, 'topic', 'is empty', NULL::bigint, NULL::bigint,
            topic = ''),
        (2, 'topic', format('%L is not a valid Kafka topic name', topic), NULL, NULL,
            topic IN ('.', '..')),
        (3, 'topic', format('is %s bytes, more than Kafka''s limit of 249', octet_length(topic)), octet_length(topic), 249,
            octet_length(topic) > 249),
        (4, 'topic', format('%L has the character %L; use letters, digits, ''.'', ''_'' and ''-''',
                            topic, substring(topic FROM '[^A-Za-z0-9._-]')), NULL, NULL,
            topic ~ '[^A-Za-z0-9._-]'),
        (5, 'ce_type', 'is empty', NULL, NULL,
            type = ''),
        (6, 'ce_type', format('is %s bytes, more than the limit %s (pulsebus.limits.max_header_value_bytes)',
                              octet_length(type), l.max_header_value_bytes), octet_length(type), l.max_header_value_bytes,
            octet_length(type) > l.max_header_value_bytes),
        (7, 'ce_source', 'is empty', NULL, NULL,
            source = ''),
        (8, 'ce_source', format('is %s bytes, more than the limit %s (pulsebus.limits.max_header_value_bytes)',
                                octet_length(source), l.max_header_value_bytes), octet_length(source), l.max_header_value_bytes,
            octet_length(source) > l.max_header_value_bytes),
        (9, 'ce_subject', format('is %s bytes, more than the limit %s (pulsebus.limits.max_header_value_bytes)',
                                 octet_length(subject), l.max_header_value_bytes), octet_length(subject), l.max_header_value_bytes,
            octet_length(subject) > l.max_header_value_bytes),
        (10, 'content-type', format('is %s bytes, more than the limit %s (pulsebus.limits.max_header_value_bytes)',
                                    octet_length(content_type), l.max_header_value_bytes), octet_length(content_type), l.max_header_value_bytes,
            octet_length(content_type) > l.max_header_value_bytes),
        (11, 'key', format('is %s bytes, more than the limit %s (pulsebus.limits.max_key_bytes)',
                           octet_length(key), l.max_key_bytes), octet_length(key), l.max_key_bytes,
            octet_length(key) > l.max_key_bytes),
        (12, 'meta.' || big_meta.name, format('is %s bytes, more than the limit %s (pulsebus.limits.max_header_value_bytes)',
                                              big_meta.bytes, l.max_header_value_bytes), big_meta.bytes, l.max_header_value_bytes,
            big_meta.name IS NOT NULL),
        (13, 'headers', format('would be %s (5 CloudEvents attributes, content-type and subject when set, one per meta entry), more than the limit %s (pulsebus.limits.max_headers)',
                               5 + (SELECT count(*) FROM jsonb_object_keys(meta)) + (subject <> '')::int + (content_type <> '')::int,
                               l.max_headers),
             5 + (SELECT count(*) FROM jsonb_object_keys(meta)) + (subject <> '')::int + (content_type <> '')::int, l.max_headers,
             5 + (SELECT count(*) FROM jsonb_object_keys(meta)) + (subject <> '')::int + (content_type <> '')::int > l.max_headers),
        (14, 'payload', format('is %s bytes, more than the limit %s (pulsebus.limits.max_payload_bytes)',
                               payload_bytes, l.max_payload_bytes), payload_bytes, l.max_payload_bytes,
            payload_bytes > l.max_payload_bytes)
     ) AS v(rule, field, reason, size, maximum, broken)
     WHERE v.broken
     ORDER BY v.rule
     LIMIT 1
$$;

-- refuse_event raises the error for a violation event_violation found:
-- SQLSTATE 22023 (invalid_parameter_value), the message naming the field,
-- the field in the error's column name and, for a limit, "size N, limit M"
-- as its detail. event_ordinal is the event's 1-based position in a
-- multi-event insert, NULL for pulsebus.publish. It never returns.
CREATE FUNCTION pulsebus.refuse_event(event_ordinal bigint, field text, reason text, size bigint, maximum bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    msg text := CASE WHEN event_ordinal IS NULL THEN 'pulsebus.publish: '
                     ELSE format('pulsebus: event %s: ', event_ordinal) END || field || ' ' || reason;
BEGIN
    IF size IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = msg, COLUMN = field;
    END IF;
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = msg, COLUMN = field,
        DETAIL = format('size %s, limit %s', size, maximum);
END
$$;

-- publish: as in version 1, and every event is checked by event_violation
-- before it is written.
CREATE OR REPLACE FUNCTION pulsebus.publish(
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
    new_id  uuid := pulsebus.uuid_v7();
    body    bytea;
    bad     text;
    refusal record;
BEGIN
    IF topic IS NULL OR topic = '' THEN
        RAISE EXCEPTION 'pulsebus.publish: topic is required' USING ERRCODE = '22023', COLUMN = 'topic';
    END IF;
    IF type IS NULL OR type = '' THEN
        RAISE EXCEPTION 'pulsebus.publish: type is required' USING ERRCODE = '22023', COLUMN = 'ce_type';
    END IF;
    IF payload IS NULL THEN
        RAISE EXCEPTION 'pulsebus.publish: payload is required' USING ERRCODE = '22023', COLUMN = 'payload';
    END IF;
    meta := coalesce(meta, '{}');
    IF jsonb_typeof(meta) <> 'object' THEN
        RAISE EXCEPTION 'pulsebus.publish: meta must be a JSON object, got %', jsonb_typeof(meta) USING ERRCODE = '22023', COLUMN = 'meta';
    END IF;
    SELECT k INTO bad FROM jsonb_each(meta) AS m(k, v)
     WHERE k !~ '^[a-z0-9]{1,20}$'
        OR k IN ('specversion', 'id', 'type', 'source', 'subject', 'time', 'datacontenttype', 'dataschema', 'data')
        OR jsonb_typeof(v) <> 'string'
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'pulsebus.publish: meta key % must be 1-20 lower-case letters or digits, not a core attribute, with a string value', bad
            USING ERRCODE = '22023', COLUMN = 'meta.' || bad;
    END IF;
    key := coalesce(key, '');
    subject := coalesce(subject, '');
    source := coalesce(nullif(source, ''),
                       nullif(current_setting('pulsebus.source', true), ''),
                       nullif(current_setting('application_name', true), ''),
                       'postgres');
    body := convert_to(payload::text, 'UTF8');
    SELECT * INTO refusal FROM pulsebus.event_violation(topic, key, type, source, subject, 'application/json', meta, octet_length(body));
    IF FOUND THEN
        PERFORM pulsebus.refuse_event(NULL, refusal.field, refusal.reason, refusal.size, refusal.maximum);
    END IF;
    INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload)
    VALUES (new_id, topic, key, type, source, subject,
            date_trunc('microseconds', clock_timestamp()), 'application/json', meta, body);
    IF pg_try_advisory_xact_lock(8098156504939062905) THEN
        PERFORM pg_notify('pulsebus_outbox', '');
    END IF;
    RETURN new_id;
END
$$;
