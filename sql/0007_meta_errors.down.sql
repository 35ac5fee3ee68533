-- Back to version 4's pulsebus.publish, whose meta error lists every rule.

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

DROP FUNCTION IF EXISTS pulsebus.meta_key_problem(text);
