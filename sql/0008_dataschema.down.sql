-- Events that carried a dataschema lose it.
DROP FUNCTION pulsebus.publish(text, text, text, jsonb, jsonb, text, text, text);
ALTER TABLE pulsebus.outbox DROP COLUMN dataschema;
ALTER TABLE pulsebus.outbox_parked DROP COLUMN dataschema;

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
