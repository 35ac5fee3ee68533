-- Back to version 9: the roles lose what this database granted them, the
-- functions run as their caller again and are executable by PUBLIC, as
-- before, and event ids need not be unique. The roles themselves stay:
-- they are cluster-wide and other databases may use them (DROP ROLE them
-- by hand once nothing does).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT ro.role_name FROM pulsebus.roles AS ro JOIN pg_roles AS p ON p.rolname = ro.role_name LOOP
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA pulsebus FROM %I', r.role_name);
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pulsebus FROM %I', r.role_name);
        EXECUTE format('REVOKE ALL ON SCHEMA pulsebus FROM %I', r.role_name);
    END LOOP;
END
$$;
DROP FUNCTION IF EXISTS pulsebus.setup_roles();
DROP FUNCTION IF EXISTS pulsebus.insert_events(text, uuid[], text[], text[], text[], text[], timestamptz[], text[], text[], bytea[], text[]);
DROP FUNCTION IF EXISTS pulsebus.refuse_shape(bigint, text, uuid, text, text, text, text, timestamptz, text, jsonb, bigint);
DROP FUNCTION IF EXISTS pulsebus.broken_shape_rule(uuid, text, text, text, text, timestamptz, text, jsonb);
ALTER FUNCTION pulsebus.publish(text, text, text, jsonb, jsonb, text, text, text) SECURITY INVOKER RESET search_path;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pulsebus TO PUBLIC;
DROP INDEX IF EXISTS pulsebus.outbox_event_id_unique;
-- settings, not data: pulsebus.roles
DROP TABLE IF EXISTS pulsebus.roles;
