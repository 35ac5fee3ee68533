-- CloudEvents dataschema end to end, and trace context from SQL producers.
--
-- The outbox and the parked rows keep an event's dataschema (an absolute
-- URI, '' for none); the relay writes it as ce_dataschema.
-- pulsebus.publish takes it as a new last argument, and takes the caller's
-- trace context from the settings pulsebus.traceparent and
-- pulsebus.tracestate when meta carries no traceparent:
--
--   SET LOCAL pulsebus.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
--   SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}', dataschema => 'https://schemas.example/lesson.json');
ALTER TABLE pulsebus.outbox ADD COLUMN dataschema text NOT NULL DEFAULT '';
ALTER TABLE pulsebus.outbox_parked ADD COLUMN dataschema text NOT NULL DEFAULT '';

DROP FUNCTION pulsebus.publish(text, text, text, jsonb, jsonb, text, text);
CREATE FUNCTION pulsebus.publish(
    topic   text,
    key     text,
    type    text,
    payload jsonb,
    meta    jsonb DEFAULT '{}',
    source  text DEFAULT NULL,
    subject text DEFAULT NULL,
    dataschema text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    new_id     uuid := pulsebus.uuid_v7();
    body       bytea;
    bad        text;  -- the name of the first bad meta entry
    problem    text;  -- the rule its name breaks, if it does
    value_type text;
    bad_value  jsonb;
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
    -- The caller's trace context (the CloudEvents distributed tracing
    -- extension), from the transaction's settings when meta has none:
    -- SET LOCAL pulsebus.traceparent = '00-...'.
    IF NOT meta ? 'traceparent' AND coalesce(current_setting('pulsebus.traceparent', true), '') <> '' THEN
        meta := meta || jsonb_build_object('traceparent', current_setting('pulsebus.traceparent', true));
        IF NOT meta ? 'tracestate' AND coalesce(current_setting('pulsebus.tracestate', true), '') <> '' THEN
            meta := meta || jsonb_build_object('tracestate', current_setting('pulsebus.tracestate', true));
        END IF;
    END IF;
    -- A new value, never a compressed one straight from a table column:
    -- broken_event_rule bounds meta by its size in memory.
    meta := meta || '{}';
    -- The first entry (by name) that breaks a rule, and the one rule it
    -- breaks: the name's first, then the value's.
    SELECT m.k, pulsebus.meta_key_problem(m.k), jsonb_typeof(m.v), m.v
      INTO bad, problem, value_type, bad_value
      FROM jsonb_each(meta) AS m(k, v)
     WHERE pulsebus.meta_key_problem(m.k) IS NOT NULL OR jsonb_typeof(m.v) <> 'string'
     ORDER BY m.k
     LIMIT 1;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'pulsebus.publish: meta key %: %', to_json(bad)::text, problem
            USING ERRCODE = '22023', COLUMN = 'meta.' || bad;
    ELSIF bad IS NOT NULL AND value_type IN ('number', 'boolean') THEN
        RAISE EXCEPTION 'pulsebus.publish: meta value of %: must be a JSON string, got % %', to_json(bad)::text, value_type, bad_value::text
            USING ERRCODE = '22023', COLUMN = 'meta.' || bad,
                  HINT = format('quote it: {%s: %s}', to_json(bad)::text, to_json(bad_value::text)::text);
    ELSIF bad IS NOT NULL THEN
        RAISE EXCEPTION 'pulsebus.publish: meta value of %: must be a JSON string, got %', to_json(bad)::text,
            CASE value_type WHEN 'null' THEN 'null' ELSE 'an ' || value_type END
            USING ERRCODE = '22023', COLUMN = 'meta.' || bad;
    END IF;
    key := coalesce(key, '');
    subject := coalesce(subject, '');
    dataschema := coalesce(dataschema, '');
    IF dataschema <> '' AND dataschema !~ '^[A-Za-z][A-Za-z0-9+.-]*:[^[:space:]]+$' THEN
        RAISE EXCEPTION 'pulsebus.publish: dataschema % is not an absolute URI', to_json(left(dataschema, 64))::text
            USING ERRCODE = '22023', COLUMN = 'ce_dataschema';
    END IF;
    IF octet_length(dataschema) > (SELECT max_header_value_bytes FROM pulsebus.limits) THEN
        RAISE EXCEPTION 'pulsebus.publish: dataschema is % bytes, more than the limit % (pulsebus.limits.max_header_value_bytes)',
            octet_length(dataschema), (SELECT max_header_value_bytes FROM pulsebus.limits)
            USING ERRCODE = '22023', COLUMN = 'ce_dataschema';
    END IF;
    source := coalesce(nullif(source, ''),
                       nullif(current_setting('pulsebus.source', true), ''),
                       nullif(current_setting('application_name', true), ''),
                       'postgres');
    body := convert_to(payload::text, 'UTF8');
    IF pulsebus.broken_event_rule((SELECT l FROM pulsebus.limits AS l), topic, key, type, source, subject,
                                  'application/json', meta, octet_length(body)) <> 0 THEN
        PERFORM pulsebus.refuse_event(NULL, topic, key, type, source, subject, 'application/json', meta, octet_length(body));
    END IF;
    INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, dataschema)
    VALUES (new_id, topic, key, type, source, subject,
            date_trunc('microseconds', clock_timestamp()), 'application/json', meta, body, dataschema);
    IF pg_try_advisory_xact_lock(8098156504939062905) THEN
        PERFORM pg_notify('pulsebus_outbox', '');
    END IF;
    RETURN new_id;
END
$$;
