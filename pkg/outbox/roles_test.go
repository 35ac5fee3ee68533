package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// insufficientPrivilege is SQLSTATE 42501.
const insufficientPrivilege = "42501"

// connectAs opens a pool on db as a new login role, a member of groups.
func connectAs(t *testing.T, db *testdb.DB, groups ...string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), db.LoginAs(t, groups...))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// sqlState is the SQLSTATE of err, "" when it has none.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// A member of pulsebus_producer publishes through pulsebus.publish and
// outbox.InsertTx, and can do nothing else with the outbox: no SELECT,
// INSERT, UPDATE or DELETE, no write to the other tables or the limits, and
// no way around the validation by calling the insert function itself.
func TestProducerRole_PublishesButCannotTouchTheTables(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	producer := connectAs(t, db, "pulsebus_producer")
	ctx := context.Background()

	var id uuid.UUID
	require.NoError(t, producer.QueryRow(ctx,
		`SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{"a": 1}', '{"tenant": "acme"}', 'lesson-service')`).Scan(&id))
	env := newEnv(t, 1, envelope.WithMeta("tenant", "acme"))
	require.NoError(t, pgx.BeginFunc(ctx, producer, func(tx pgx.Tx) error { return outbox.InsertTx(ctx, tx, "lessons", env) }))
	rows := readRows(t, db.Pool)
	require.Len(t, rows, 2)
	require.Equal(t, id.String(), rows[0].Envelope.ID)
	require.Equal(t, env, rows[1].Envelope)

	for _, stmt := range []string{
		`SELECT count(*) FROM pulsebus.outbox`,
		`SELECT payload FROM pulsebus.outbox LIMIT 1`,
		`UPDATE pulsebus.outbox SET topic = 'elsewhere'`,
		`DELETE FROM pulsebus.outbox`,
		`INSERT INTO pulsebus.outbox (event_id, topic, type, source, event_time, payload)
		 VALUES (gen_random_uuid(), 'lessons', 'forged', 'forged', now(), '\x00')`,
		`INSERT INTO pulsebus.outbox_parked SELECT * FROM pulsebus.outbox_parked`,
		`SELECT count(*) FROM pulsebus.dead_letters`,
		`SELECT count(*) FROM pulsebus.handler_offsets`,
		`DELETE FROM pulsebus.relay_leader`,
		`UPDATE pulsebus.limits SET max_payload_bytes = 2000000000`,
		`SELECT pulsebus.refuse_event(1, 't', '', 't', 's', '', '', '{}', 0)`,
		`SELECT * FROM pulsebus.setup_roles()`,
		`CREATE TABLE pulsebus.mine (x int)`,
		`CREATE FUNCTION pulsebus.uuid_v7(x int) RETURNS uuid LANGUAGE sql AS 'SELECT gen_random_uuid()'`,
	} {
		_, err := producer.Exec(ctx, stmt)
		require.Equal(t, insufficientPrivilege, sqlState(err), "%s: %v", stmt, err)
	}
	require.Len(t, readRows(t, db.Pool), 2, "nothing changed")
}

// The producer role cannot get around the validation InsertTx does in Go
// by calling pulsebus.insert_events with rows of its own making: the
// function refuses every event the relay could not publish as written, and
// writes nothing.
func TestProducerRole_InsertFunctionValidatesEverything(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	producer := connectAs(t, db, "pulsebus_producer")
	ctx := context.Background()

	type event struct {
		id                                     any
		key, typ, source, subject, ctype, meta any
		time                                   any
		payload                                any
	}
	valid := func() event {
		return event{id: uuid.Must(uuid.NewV7()).String(), key: "k", typ: "lesson.published", source: "svc", subject: "",
			ctype: "application/json", meta: "{}", time: time.Now(), payload: []byte(`{}`)}
	}
	insert := func(topic string, events ...event) error {
		var ids, keys, types, sources, subjects, ctypes, metas, times, payloads, dataschemas []any
		for _, e := range events {
			ids, keys, types, sources = append(ids, e.id), append(keys, e.key), append(types, e.typ), append(sources, e.source)
			subjects, ctypes, metas = append(subjects, e.subject), append(ctypes, e.ctype), append(metas, e.meta)
			times, payloads, dataschemas = append(times, e.time), append(payloads, e.payload), append(dataschemas, "")
		}
		_, err := producer.Exec(ctx, `SELECT pulsebus.insert_events($1, $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::timestamptz[], $8::text[], $9::text[], $10::bytea[], $11::text[])`, topic, ids, keys, types, sources, subjects, times, ctypes, metas, payloads, dataschemas)
		return err
	}
	require.NoError(t, insert("lessons", valid(), valid()), "valid events go in")
	tricky := valid()
	tricky.meta, tricky.ctype = `{"tenant": "a \"quoted\", \\ value", "region": "zürich"}`, "text/plain; charset=utf-8"
	require.NoError(t, insert("lessons", tricky), "a meta value may hold quotes, backslashes and any character")

	cases := []struct {
		name, topic, field string
		edit               func(*event)
	}{
		{"topic Kafka refuses", "bad topic", "topic", func(*event) {}},
		{"empty type", "lessons", "ce_type", func(e *event) { e.typ = "" }},
		{"empty source", "lessons", "ce_source", func(e *event) { e.source = "" }},
		{"NULL id", "lessons", "ce_id", func(e *event) { e.id = nil }},
		{"NULL key", "lessons", "key", func(e *event) { e.key = nil }},
		{"key over the limit", "lessons", "key", func(e *event) { e.key = strings.Repeat("k", 1025) }},
		{"payload over the limit", "lessons", "payload", func(e *event) { e.payload = make([]byte, 921601) }},
		{"type over the limit", "lessons", "ce_type", func(e *event) { e.typ = strings.Repeat("t", 4097) }},
		{"meta not an object", "lessons", "meta", func(e *event) { e.meta = `["x"]` }},
		{"meta key upper case", "lessons", "meta.Tenant", func(e *event) { e.meta = `{"Tenant": "acme"}` }},
		{"meta key a core attribute", "lessons", "meta.source", func(e *event) { e.meta = `{"source": "forged"}` }},
		{"meta value not a string", "lessons", "meta.tenant", func(e *event) { e.meta = `{"tenant": 1}` }},
		{"meta value over the limit", "lessons", "meta.tenant", func(e *event) { e.meta = `{"tenant": "` + strings.Repeat("a", 4097) + `"}` }},
		{"content type not a media type", "lessons", "content-type", func(e *event) { e.ctype = "json" }},
		{"structured mode content type", "lessons", "content-type", func(e *event) { e.ctype = "application/cloudevents+json" }},
		{"time past year 9999", "lessons", "ce_time", func(e *event) { e.time = "infinity" }},
	}
	for _, c := range cases {
		bad := valid()
		c.edit(&bad)
		err := insert(c.topic, valid(), bad)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, c.name)
		require.Equal(t, "22023", pgErr.Code, "%s: %v", c.name, err)
		require.Equal(t, c.field, pgErr.ColumnName, "%s: %v", c.name, err)
		ordinal := "2"
		if c.field == "topic" { // every event has the call's topic
			ordinal = "1"
		}
		require.Contains(t, pgErr.Message, "pulsebus: event "+ordinal+": "+c.field, c.name)
	}

	// Arrays of different lengths are refused, not padded with NULLs.
	_, err := producer.Exec(ctx, `SELECT pulsebus.insert_events('lessons', ARRAY[gen_random_uuid()], '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')`)
	require.Equal(t, "22023", sqlState(err), "%v", err)
	require.ErrorContains(t, err, "different lengths")

	require.Len(t, readRows(t, db.Pool), 3, "only the valid events were written")
}

// An event id names one event: InsertTx refuses an event whose id is
// already waiting in the outbox, or given twice in one call, with
// ErrDuplicateEventID naming it, and writes nothing of that call. Once the
// relay has published and deleted the row, the id is not checked any more.
func TestInsertTx_RefusesADuplicateEventID(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	first := newEnv(t, 1)
	require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", first))

	again := newEnv(t, 2)
	again.ID = first.ID
	err := outbox.InsertTx(ctx, db.Pool, "lessons", newEnv(t, 3), again)
	require.ErrorIs(t, err, outbox.ErrDuplicateEventID)
	require.ErrorContains(t, err, "event 1 of 2 (id "+first.ID+")")

	twice := newEnv(t, 4)
	err = outbox.InsertTx(ctx, db.Pool, "lessons", twice, twice)
	require.ErrorIs(t, err, outbox.ErrDuplicateEventID)
	require.ErrorContains(t, err, twice.ID)
	require.Len(t, readRows(t, db.Pool), 1, "nothing of the refused calls was written")

	_, err = db.Pool.Exec(ctx, `DELETE FROM pulsebus.outbox`) // as the relay does once Kafka has the event
	require.NoError(t, err)
	require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", again))
}
