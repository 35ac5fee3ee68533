-- PulseBus schema, version 4: the limits every producer path enforces when an
-- event enters the outbox, defined once, here.
--
-- pulsebus.publish and the Go producer (outbox.InsertTx) both test every
-- event with pulsebus.broken_event_rule in the inserting statement and
-- refuse it with pulsebus.refuse_event, so an event that could never be
-- published (a topic Kafka refuses, a key, attribute or payload over the
-- limits) never waits in the outbox: the producer gets SQLSTATE 22023
-- naming the field. Raise a limit with one UPDATE of
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

-- limits keeps its row: without it no event could be checked.
CREATE FUNCTION pulsebus.keep_limits_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pulsebus.limits keeps its one row: UPDATE it instead' USING ERRCODE = '55000';
END
$$;
CREATE TRIGGER keep_row BEFORE DELETE OR TRUNCATE ON pulsebus.limits
    FOR EACH STATEMENT EXECUTE FUNCTION pulsebus.keep_limits_row();

-- oversized_meta_member returns the first member of meta (by name) whose
-- string value is longer than max_value_bytes, NULL when none is.
CREATE FUNCTION pulsebus.oversized_meta_member(meta jsonb, max_value_bytes integer) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE COST 1 AS $$
    SELECT m.name FROM jsonb_each_text(meta) AS m(name, val)
     WHERE octet_length(m.val) > max_value_bytes
     ORDER BY m.name LIMIT 1
$$;

-- header_count is the number of Kafka headers an event maps to: 5
-- CloudEvents attributes (specversion, id, type, source, time), subject and
-- content-type when set, one per meta member.
CREATE FUNCTION pulsebus.header_count(subject text, content_type text, meta jsonb) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE COST 1 AS $$
    SELECT 5 + (subject <> '')::int + (content_type <> '')::int + (SELECT count(*) FROM jsonb_object_keys(meta))
$$;

-- broken_event_rule returns 0 when an event may enter the outbox under the
-- limits l, else the number of the first rule it breaks, in the order the
-- Go package envelope tests them:
--    1  topic empty                   8  source over max_header_value_bytes
--    2  topic '.' or '..'             9  subject over max_header_value_bytes
--    3  topic over 249 bytes         10  content type over max_header_value_bytes
--    4  topic has a character        11  key over max_key_bytes
--       other than ASCII letters,    12  a meta value over max_header_value_bytes
--       digits, '.', '_', '-'        13  headers over max_headers (5 CloudEvents
--    5  type empty                       attributes, content-type and subject
--    6  type over max_header_value_bytes  when set, one per meta entry)
--    7  source empty                 14  payload over max_payload_bytes
--                                    15  no limits (l is NULL)
-- These are Kafka's topic rules and PulseBus's limits: the only definition
-- of what an event may be that both producers use. Arguments other than l
-- must not be NULL.
--
-- It runs for every row producers insert, so it is a single expression that
-- PostgreSQL inlines into the inserting statement: cheap tests, and the meta
-- object walked only when its size allows a violation (a jsonb object holds
-- its strings whole plus at least 8 bytes of entry headers per member).
-- meta must not be a compressed value, or pg_column_size understates it:
-- InsertTx casts it from text, pulsebus.publish rebuilds it
-- (TestPublishSQL_RefusesWhatCanNeverBePublished passes it a compressed
-- column).
CREATE FUNCTION pulsebus.broken_event_rule(
    l             pulsebus.limits,
    topic         text,
    key           text,
    type          text,
    source        text,
    subject       text,
    content_type  text,
    meta          jsonb,
    payload_bytes bigint
) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN l IS NULL THEN 15
        WHEN topic = '' THEN 1
        WHEN topic IN ('.', '..') THEN 2
        WHEN octet_length(topic) > 249 THEN 3
        WHEN topic ~ '[^A-Za-z0-9._-]' THEN 4
        WHEN type = '' THEN 5
        WHEN octet_length(type) > (l).max_header_value_bytes THEN 6
        WHEN source = '' THEN 7
        WHEN octet_length(source) > (l).max_header_value_bytes THEN 8
        WHEN octet_length(subject) > (l).max_header_value_bytes THEN 9
        WHEN octet_length(content_type) > (l).max_header_value_bytes THEN 10
        WHEN octet_length(key) > (l).max_key_bytes THEN 11
        WHEN pg_column_size(meta) > (l).max_header_value_bytes
             AND pulsebus.oversized_meta_member(meta, (l).max_header_value_bytes) IS NOT NULL THEN 12
        WHEN 5 + (subject <> '')::int + (content_type <> '')::int + pg_column_size(meta) / 8 > (l).max_headers
             AND pulsebus.header_count(subject, content_type, meta) > (l).max_headers THEN 13
        WHEN payload_bytes > (l).max_payload_bytes THEN 14
        ELSE 0
    END
$$;

-- event_violation explains broken_event_rule under the current limits: no
-- row when the event may enter the outbox, else the field ('topic', 'key',
-- 'ce_type', 'ce_source', 'ce_subject', 'content-type', 'meta.<name>',
-- 'headers', 'payload', as the Go package envelope names them), why, and
-- for a limit the size and the maximum. Operators can ask it why an event
-- would be refused.
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
    SELECT d.field,
           coalesce(d.problem, format('is %s bytes, more than the limit %s (pulsebus.limits.%s)', d.size, d.maximum, d.limit_name)),
           d.size, d.maximum
      FROM (SELECT lim AS l FROM pulsebus.limits AS lim) AS limits
     RIGHT JOIN (VALUES (true)) AS always(x) ON true -- a row even when the limits row is missing
     CROSS JOIN LATERAL (SELECT pulsebus.broken_event_rule(limits.l, topic, key, type, source, subject, content_type,
                                                           meta, payload_bytes) AS rule
                         OFFSET 0) AS r
     CROSS JOIN LATERAL (SELECT
            CASE WHEN r.rule <= 4 THEN 'topic'
                 WHEN r.rule <= 6 THEN 'ce_type'
                 WHEN r.rule <= 8 THEN 'ce_source'
                 WHEN r.rule = 9 THEN 'ce_subject'
                 WHEN r.rule = 10 THEN 'content-type'
                 WHEN r.rule = 11 THEN 'key'
                 WHEN r.rule = 12 THEN 'meta.' || pulsebus.oversized_meta_member(meta, (limits.l).max_header_value_bytes)
                 WHEN r.rule = 13 THEN 'headers'
                 WHEN r.rule = 14 THEN 'payload'
                 ELSE 'limits' END AS field,
            CASE r.rule
                 WHEN 1 THEN 'is empty'
                 WHEN 2 THEN format('%L is not a valid Kafka topic name', topic)
                 WHEN 3 THEN format('is %s bytes, more than Kafka''s limit of 249', octet_length(topic))
                 WHEN 4 THEN format('%L has the character %L; use letters, digits, ''.'', ''_'' and ''-''',
                                    topic, substring(topic FROM '[^A-Za-z0-9._-]'))
                 WHEN 5 THEN 'is empty'
                 WHEN 7 THEN 'is empty'
                 WHEN 13 THEN format('would be %s (5 CloudEvents attributes, content-type and subject when set, one per meta entry), more than the limit %s (pulsebus.limits.max_headers)',
                                     pulsebus.header_count(subject, content_type, meta), (limits.l).max_headers)
                 WHEN 15 THEN 'row is missing from pulsebus.limits'
            END AS problem,
            CASE r.rule
                 WHEN 3 THEN octet_length(topic)
                 WHEN 6 THEN octet_length(type)
                 WHEN 8 THEN octet_length(source)
                 WHEN 9 THEN octet_length(subject)
                 WHEN 10 THEN octet_length(content_type)
                 WHEN 11 THEN octet_length(key)
                 WHEN 12 THEN (SELECT max(octet_length(m.val)) FROM jsonb_each_text(meta) AS m(name, val)
                                WHERE m.name = pulsebus.oversized_meta_member(meta, (limits.l).max_header_value_bytes))
                 WHEN 13 THEN pulsebus.header_count(subject, content_type, meta)
                 WHEN 14 THEN payload_bytes
            END::bigint AS size,
            CASE r.rule
                 WHEN 3 THEN 249
                 WHEN 11 THEN (limits.l).max_key_bytes
                 WHEN 13 THEN (limits.l).max_headers
                 WHEN 14 THEN (limits.l).max_payload_bytes
                 ELSE (limits.l).max_header_value_bytes
            END::bigint AS maximum,
            CASE r.rule WHEN 11 THEN 'max_key_bytes' WHEN 14 THEN 'max_payload_bytes'
                 ELSE 'max_header_value_bytes' END AS limit_name
     ) AS d
     WHERE r.rule <> 0
$$;

-- refuse_event raises the error for an event broken_event_rule refused:
-- SQLSTATE 22023 (invalid_parameter_value), the message naming the field
-- (see event_violation), the field as the error's column name and, for a
-- limit, "size N, limit M" as its detail. event_ordinal is the event's
-- 1-based position in a multi-event insert, NULL for pulsebus.publish. It
-- never returns.
--
-- The helpers above and this function declare COST 1: they run only for an
-- event whose size or rule calls for them, and a planner charging them for
-- every row would keep re-planning a prepared single-event insert (a custom
-- plan looks cheaper than the generic one) at a cost of about 0.3 ms.
CREATE FUNCTION pulsebus.refuse_event(
    event_ordinal bigint,
    topic         text,
    key           text,
    type          text,
    source        text,
    subject       text,
    content_type  text,
    meta          jsonb,
    payload_bytes bigint
) RETURNS boolean
LANGUAGE plpgsql COST 1 AS $$
DECLARE
    v   record;
    msg text;
BEGIN
    SELECT * INTO v FROM pulsebus.event_violation(topic, key, type, source, subject, content_type, meta, payload_bytes);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pulsebus.refuse_event: the event breaks no rule' USING ERRCODE = '39000';
    END IF;
    msg := CASE WHEN event_ordinal IS NULL THEN 'pulsebus.publish: '
                ELSE format('pulsebus: event %s: ', event_ordinal) END || v.field || ' ' || v.reason;
    IF v.size IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = msg, COLUMN = v.field;
    END IF;
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = msg, COLUMN = v.field,
        DETAIL = format('size %s, limit %s', v.size, v.maximum);
END
$$;

-- publish: as in version 1, and every event is tested by broken_event_rule
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
    -- A new value, never a compressed one straight from a table column:
    -- broken_event_rule bounds meta by its size in memory.
    meta := meta || '{}';
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
    IF pulsebus.broken_event_rule((SELECT l FROM pulsebus.limits AS l), topic, key, type, source, subject,
                                  'application/json', meta, octet_length(body)) <> 0 THEN
        PERFORM pulsebus.refuse_event(NULL, topic, key, type, source, subject, 'application/json', meta, octet_length(body));
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
