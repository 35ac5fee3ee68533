-- Back to version 1: pulsebus.publish without the limits, as 0001_init
-- created it.
-- settings, not data: pulsebus.limits
DROP FUNCTION IF EXISTS pulsebus.refuse_event(bigint, text, text, text, text, text, text, jsonb, bigint);
DROP FUNCTION IF EXISTS pulsebus.event_violation(text, text, text, text, text, text, jsonb, bigint);
DROP FUNCTION IF EXISTS pulsebus.broken_event_rule(pulsebus.limits, text, text, text, text, text, text, jsonb, bigint);
DROP FUNCTION IF EXISTS pulsebus.header_count(text, text, jsonb);
DROP FUNCTION IF EXISTS pulsebus.oversized_meta_member(jsonb, integer);
DROP TABLE IF EXISTS pulsebus.limits;
DROP FUNCTION IF EXISTS pulsebus.keep_limits_row();

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
