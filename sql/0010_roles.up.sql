-- PulseBus schema, version 6: least privilege. Four NOLOGIN group roles get
-- exactly what their part of PulseBus needs, producers write only through
-- functions that validate every event, and an event id is unique while its
-- event waits in the outbox.
--
--   producer  EXECUTE pulsebus.publish and pulsebus.insert_events (the Go
--             producer's path); no table privilege at all
--   relay     the outbox (SELECT, UPDATE, DELETE), parking (INSERT into
--             outbox_parked), the leader lease, the limits
--   consumer  handler_offsets and dead_letters
--   admin     the operator commands: relay status, outbox and parked
--             list/park/requeue/delete, dead letters list/show/redrive,
--             replay and offsets
--
-- Every role also reads pulsebus.schema_migrations (the binaries check the
-- schema version at start). A service's own login role is made a member:
-- GRANT pulsebus_producer TO orders_api. Objects stay owned by the
-- migrating user. Roles are cluster-wide; their names are the setting
-- pulsebus.role_prefix of the migrating session followed by producer,
-- relay, consumer and admin (default prefix 'pulsebus_'), recorded in
-- pulsebus.roles. See README "Security".

-- roles names the group roles this database grants to, one per purpose.
CREATE TABLE pulsebus.roles (
    purpose   text PRIMARY KEY CHECK (purpose IN ('producer', 'relay', 'consumer', 'admin')),
    role_name name NOT NULL UNIQUE
);
INSERT INTO pulsebus.roles (purpose, role_name)
SELECT p, coalesce(nullif(current_setting('pulsebus.role_prefix', true), ''), 'pulsebus_') || p
  FROM unnest(ARRAY['producer', 'relay', 'consumer', 'admin']) AS p;

-- An event id names one event: a second event with the id of one still in
-- the outbox is refused (SQLSTATE 23505 on this index) rather than skipped
-- as a duplicate by every consumer. Once the relay has published and
-- deleted a row its id is no longer checked (README "Producing events",
-- "From Go"). Version 7 UUIDs grow with time, so the index is appended to
-- at its right edge.
CREATE UNIQUE INDEX outbox_event_id_unique ON pulsebus.outbox (event_id);

-- broken_shape_rule returns 0 when an event has the shape the relay can
-- publish, else the number of the first rule it breaks:
--    1  a field is NULL
--    2  content_type is neither '' nor a type/subtype media type, or is the
--       CloudEvents structured mode's (application/cloudevents...)
--    3  event_time is outside the years 0001-9999 (UTC)
--    4  meta is not a JSON object
--    5  a meta member is not named by lower-case letters or digits, is
--       named after a core CloudEvents attribute, or is not a string
--       (a name over 20 characters is refused by the Go producer and
--       pulsebus.publish, not here: the relay parks such a row)
-- The Go producer checks all of it before sending (envelope.Limits.Validate);
-- this is for a caller of pulsebus.insert_events that did not. Like
-- broken_event_rule it is one expression PostgreSQL inlines, cheap for the
-- common event: content type application/json, a meta of a few string
-- members (its text as jsonb prints it is matched by one regular
-- expression, not walked member by member: about 2 us an event, where a
-- bound on the name length would double it).
CREATE FUNCTION pulsebus.broken_shape_rule(
    event_id     uuid,
    key          text,
    type         text,
    source       text,
    subject      text,
    event_time   timestamptz,
    content_type text,
    meta         jsonb
) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN event_id IS NULL OR key IS NULL OR type IS NULL OR source IS NULL OR subject IS NULL
             OR event_time IS NULL OR content_type IS NULL OR meta IS NULL THEN 1
        WHEN content_type NOT IN ('', 'application/json')
             AND (content_type !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+/[!#$%&''*+.^_`|~0-9A-Za-z-]+(\s*;.*)?$'
                  OR lower(content_type) LIKE 'application/cloudevents%') THEN 2
        WHEN event_time < '0001-01-01 00:00:00+00' OR event_time >= '10000-01-01 00:00:00+00' THEN 3
        WHEN jsonb_typeof(meta) <> 'object' THEN 4
        WHEN meta <> '{}'
             AND (meta::text !~ '^\{"[a-z0-9]+": "[^"\\]*(?:\\.[^"\\]*)*"(?:, "[a-z0-9]+": "[^"\\]*(?:\\.[^"\\]*)*")*\}$'
                  OR meta ?| ARRAY['specversion', 'id', 'type', 'source', 'subject', 'time', 'datacontenttype',
                                   'dataschema', 'data']) THEN 5
        ELSE 0
    END
$$;

-- refuse_shape raises the error for an event broken_shape_rule refused:
-- SQLSTATE 22023, "pulsebus: event N: <field> <reason>", the field as the
-- error's column name; for an event of the right shape it raises what
-- pulsebus.refuse_event raises for it. It never returns.
CREATE FUNCTION pulsebus.refuse_shape(
    event_ordinal bigint,
    topic         text,
    event_id      uuid,
    key           text,
    type          text,
    source        text,
    subject       text,
    event_time    timestamptz,
    content_type  text,
    meta          jsonb,
    payload_bytes bigint
) RETURNS boolean
LANGUAGE plpgsql COST 1 AS $$
DECLARE
    field  text;
    reason text;
BEGIN
    CASE pulsebus.broken_shape_rule(event_id, key, type, source, subject, event_time, content_type, meta)
    WHEN 0 THEN
        RETURN pulsebus.refuse_event(event_ordinal, topic, key, type, source, subject, content_type, meta, payload_bytes);
    WHEN 1 THEN
        field := CASE WHEN event_id IS NULL THEN 'ce_id' WHEN key IS NULL THEN 'key' WHEN type IS NULL THEN 'ce_type'
                      WHEN source IS NULL THEN 'ce_source' WHEN subject IS NULL THEN 'ce_subject'
                      WHEN event_time IS NULL THEN 'ce_time' WHEN content_type IS NULL THEN 'content-type'
                      ELSE 'meta' END;
        reason := 'is NULL';
    WHEN 2 THEN
        field := 'content-type';
        reason := format('%L is not a type/subtype media type, or is the CloudEvents structured mode''s', content_type);
    WHEN 3 THEN
        field := 'ce_time';
        reason := format('%s is outside the years 0001-9999', event_time);
    WHEN 4 THEN
        field := 'meta';
        reason := format('must be a JSON object, not %s', jsonb_typeof(meta));
    ELSE
        SELECT 'meta.' || m.k INTO field FROM jsonb_each(meta) AS m(k, v)
         WHERE m.k !~ '^[a-z0-9]+$'
            OR m.k IN ('specversion', 'id', 'type', 'source', 'subject', 'time', 'datacontenttype', 'dataschema', 'data')
            OR jsonb_typeof(m.v) <> 'string'
         ORDER BY m.k LIMIT 1;
        field := coalesce(field, 'meta');
        reason := 'must be named by lower-case letters or digits, not a core attribute, with a string value';
    END CASE;
    RAISE EXCEPTION USING ERRCODE = '22023', COLUMN = field,
        MESSAGE = format('pulsebus: event %s: %s %s', event_ordinal, field, reason);
END
$$;

-- insert_events is the Go producer's insert path (outbox.InsertTx): it
-- writes one event per array element, in array order, for topic, inside the
-- caller's transaction, and notifies the relay unless another transaction
-- is notifying (see pulsebus.publish). Producers have no INSERT on the
-- outbox: this function, running as the schema's owner, is their only way
-- in, so it checks everything a row must be for the relay to publish it:
-- the arrays have the same length, every event passes broken_shape_rule
-- and, with the topic, broken_event_rule (the limits). A refused event
-- raises SQLSTATE 22023 "pulsebus: event N: <field> <reason>" with the
-- field as the error's column name, N counting from 1, and nothing is
-- written. metas are JSON texts (a jsonb parsed here is a fresh value, as
-- broken_event_rule needs). An event_id already in the outbox raises 23505
-- (outbox_event_id_unique).
CREATE FUNCTION pulsebus.insert_events(
    topic         text,
    event_ids     uuid[],
    keys          text[],
    types         text[],
    sources       text[],
    subjects      text[],
    event_times   timestamptz[],
    content_types text[],
    metas         text[],
    payloads      bytea[],
    dataschemas   text[]
) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n integer := coalesce(cardinality(event_ids), 0);
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'pulsebus.insert_events: topic is NULL' USING ERRCODE = '22023', COLUMN = 'topic';
    END IF;
    IF coalesce(cardinality(keys), 0) <> n OR coalesce(cardinality(types), 0) <> n
       OR coalesce(cardinality(sources), 0) <> n OR coalesce(cardinality(subjects), 0) <> n
       OR coalesce(cardinality(event_times), 0) <> n OR coalesce(cardinality(content_types), 0) <> n
       OR coalesce(cardinality(metas), 0) <> n OR coalesce(cardinality(payloads), 0) <> n
       OR coalesce(cardinality(dataschemas), 0) <> n THEN
        RAISE EXCEPTION 'pulsebus.insert_events: the arrays have different lengths (% event ids)', n
            USING ERRCODE = '22023';
    END IF;
    -- dataschema is not checked here (the Go producer checks it is an
    -- absolute URI); a bad one makes the relay park the row.
    INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, dataschema)
    SELECT e.event_id, topic, e.key, e.type, e.source, e.subject, e.event_time, e.content_type, j.meta, e.payload,
           coalesce(e.dataschema, '')
      FROM unnest(event_ids, keys, types, sources, subjects, event_times, content_types, metas, payloads, dataschemas)
           WITH ORDINALITY AS e(event_id, key, type, source, subject, event_time, content_type, meta, payload, dataschema, ord)
     CROSS JOIN LATERAL (SELECT e.meta::jsonb AS meta OFFSET 0) AS j -- OFFSET 0: parsed once, not at every use
      LEFT JOIN (SELECT l FROM pulsebus.limits AS l LIMIT 1) AS limits ON true -- LIMIT: the planner counts one row
     WHERE (pulsebus.broken_shape_rule(e.event_id, e.key, e.type, e.source, e.subject, e.event_time, e.content_type,
                                       j.meta) = 0
            AND pulsebus.broken_event_rule(limits.l, topic, e.key, e.type, e.source, e.subject, e.content_type,
                                           j.meta, octet_length(e.payload)) = 0)
        OR pulsebus.refuse_shape(e.ord, topic, e.event_id, e.key, e.type, e.source, e.subject, e.event_time,
                                 e.content_type, j.meta, octet_length(e.payload))
     ORDER BY e.ord;
    IF n > 0 AND pg_try_advisory_xact_lock(8098156504939062905) THEN
        PERFORM pg_notify('pulsebus_outbox', '');
    END IF;
END
$$;

-- publish runs as the schema's owner too, with the same pinned search_path
-- (every name in it is schema-qualified), so producers need no privilege
-- on the outbox.
ALTER FUNCTION pulsebus.publish(text, text, text, jsonb, jsonb, text, text, text)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

-- Nothing in the schema is anyone's but its owner's unless granted below:
-- functions are executable by PUBLIC by default, so that goes.
REVOKE ALL ON ALL TABLES IN SCHEMA pulsebus FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pulsebus FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pulsebus FROM PUBLIC;
REVOKE ALL ON SCHEMA pulsebus FROM PUBLIC;

-- setup_roles creates the roles of pulsebus.roles that do not exist yet,
-- NOLOGIN, when the user running it may (a superuser, or CREATEROLE), and
-- grants each role that exists what its purpose needs, on this database's
-- PulseBus objects. It returns one row per role: its name and 'created',
-- 'granted' (it existed) or 'missing' (it does not exist and could not be
-- created; a NOTICE says so). It is idempotent: the migration runs it, and
-- a DBA who creates missing roles later runs it again as the schema owner
-- or a superuser: SELECT * FROM pulsebus.setup_roles().
CREATE FUNCTION pulsebus.setup_roles() RETURNS TABLE (role_name name, status text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r          record;
    may_create boolean;
BEGIN
    SELECT rolsuper OR rolcreaterole INTO may_create FROM pg_roles WHERE rolname = current_user;
    FOR r IN SELECT ro.purpose, ro.role_name FROM pulsebus.roles AS ro ORDER BY ro.purpose LOOP
        role_name := r.role_name;
        status := 'granted';
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r.role_name) THEN
            IF NOT may_create THEN
                RAISE NOTICE 'pulsebus: role % does not exist and % may not create roles: a DBA runs CREATE ROLE % NOLOGIN, then SELECT * FROM pulsebus.setup_roles()',
                    r.role_name, current_user, quote_ident(r.role_name);
                status := 'missing';
                RETURN NEXT;
                CONTINUE;
            END IF;
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r.role_name);
                status := 'created';
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- another database's migration created it just now
            END;
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA pulsebus TO %I', r.role_name);
        IF to_regclass('pulsebus.schema_migrations') IS NOT NULL THEN -- made by the migrator, not a migration
            EXECUTE format('GRANT SELECT ON pulsebus.schema_migrations TO %I', r.role_name);
        END IF;
        CASE r.purpose
        WHEN 'producer' THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION pulsebus.publish(text, text, text, jsonb, jsonb, text, text, text), '
                'pulsebus.insert_events(text, uuid[], text[], text[], text[], text[], timestamptz[], text[], text[], bytea[], text[]) TO %I',
                r.role_name);
        WHEN 'relay' THEN
            EXECUTE format('GRANT SELECT, UPDATE, DELETE ON pulsebus.outbox TO %I', r.role_name);
            EXECUTE format('GRANT SELECT, INSERT ON pulsebus.outbox_parked TO %I', r.role_name);
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON pulsebus.relay_leader TO %I', r.role_name);
            EXECUTE format('GRANT SELECT ON pulsebus.limits TO %I', r.role_name);
        WHEN 'consumer' THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON pulsebus.handler_offsets, pulsebus.dead_letters, pulsebus.held_events TO %I',
                r.role_name);
            EXECUTE format('GRANT SELECT ON pulsebus.limits TO %I', r.role_name);
        WHEN 'admin' THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON pulsebus.outbox, pulsebus.outbox_parked, '
                'pulsebus.handler_offsets, pulsebus.dead_letters, pulsebus.held_events TO %I', r.role_name);
            EXECUTE format('GRANT SELECT ON pulsebus.relay_leader, pulsebus.limits, pulsebus.roles TO %I', r.role_name);
            EXECUTE format('GRANT EXECUTE ON FUNCTION pulsebus.event_violation(text, text, text, text, text, text, jsonb, bigint), '
                'pulsebus.broken_event_rule(pulsebus.limits, text, text, text, text, text, text, jsonb, bigint), '
                'pulsebus.oversized_meta_member(jsonb, integer), pulsebus.header_count(text, text, jsonb) TO %I',
                r.role_name);
        END CASE;
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pulsebus.setup_roles() FROM PUBLIC;

SELECT * FROM pulsebus.setup_roles();
