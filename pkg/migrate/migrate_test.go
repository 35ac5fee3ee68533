package migrate_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/pkg/migrate"
)

// TestMain gives the examples what a service has: DATABASE_URL, here a
// fresh empty database of its own.
func TestMain(m *testing.M) {
	ctx := context.Background()
	example, err := testdb.CreateEmpty(ctx, "pulsebus_example_")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("DATABASE_URL", example.URL)
	testmain.Run(m, testdb.DropTemplate, func() { _ = example.Drop(ctx) })
}

// setup returns a pool on a fresh database without the PulseBus schema.
func setup(t *testing.T) (*pgxpool.Pool, *testdb.DB) {
	t.Helper()
	db := testdb.NewEmpty(t)
	pool, err := pgxpool.New(context.Background(), db.URL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, db
}

// versions returns 1..n.
func versions(n int) []int {
	vs := make([]int, n)
	for i := range vs {
		vs[i] = i + 1
	}
	return vs
}

// version1Objects are the relations and functions 0001_init creates.
var version1Objects = []string{
	"pulsebus.outbox", "pulsebus.outbox_parked", "pulsebus.relay_leader",
	"pulsebus.handler_offsets", "pulsebus.dead_letters",
}

func exists(t *testing.T, db *pgxpool.Pool, relation string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, db.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, relation).Scan(&ok))
	return ok
}

// leftovers lists what the pulsebus schema holds besides the migrator's own
// version table: relations, functions and types.
func leftovers(t *testing.T, db *pgxpool.Pool) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		SELECT 'relation ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = 'pulsebus' AND c.relname NOT IN ('schema_migrations', 'schema_migrations_pkey')
		UNION ALL
		SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		 WHERE n.nspname = 'pulsebus'
		UNION ALL
		SELECT 'type ' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		 WHERE n.nspname = 'pulsebus' AND t.typrelid = 0 AND t.typelem = 0
		ORDER BY 1`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// schemaFingerprint describes the pulsebus schema (columns, constraints,
// indexes, functions) so two states can be compared.
func schemaFingerprint(t *testing.T, db *pgxpool.Pool) string {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		SELECT format('column %s.%s %s null=%s default=%s', table_name, column_name, data_type, is_nullable, coalesce(column_default, ''))
		  FROM information_schema.columns WHERE table_schema = 'pulsebus'
		UNION ALL
		SELECT format('constraint %s %s', conrelid::regclass, pg_get_constraintdef(oid))
		  FROM pg_constraint WHERE connamespace = 'pulsebus'::regnamespace
		UNION ALL
		SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'pulsebus'
		UNION ALL
		SELECT format('function %s(%s) %s', proname, pg_get_function_arguments(oid), md5(prosrc))
		  FROM pg_proc WHERE pronamespace = 'pulsebus'::regnamespace
		ORDER BY 1`)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

func TestAll_EmbeddedMigrationsAreContiguous(t *testing.T) {
	t.Parallel()
	migs, err := migrate.All()
	require.NoError(t, err)
	require.NotEmpty(t, migs)
	for i, m := range migs {
		require.Equal(t, i+1, m.Version)
		require.NotEmpty(t, m.Name)
		require.NotEmpty(t, strings.TrimSpace(m.Up), "%04d up", m.Version)
		require.NotEmpty(t, strings.TrimSpace(m.Down), "%04d down", m.Version)
	}
	require.Equal(t, migs[len(migs)-1].Version, migrate.Latest())
}

func TestUp_Down_Up(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := setup(t)
	latest := migrate.Latest()

	res, err := migrate.Up(ctx, db)
	require.NoError(t, err)
	require.Equal(t, versions(latest), res.Versions)
	for _, rel := range version1Objects {
		require.True(t, exists(t, db, rel), rel)
	}
	migrated := schemaFingerprint(t, db)

	res, err = migrate.Down(ctx, db, 0, migrate.DownOptions{})
	require.NoError(t, err)
	want := versions(latest)
	slices.Reverse(want)
	require.Equal(t, want, res.Versions, "newest first")
	for _, rel := range version1Objects {
		require.False(t, exists(t, db, rel), rel)
	}
	require.Empty(t, leftovers(t, db), "down to 0 removes every PulseBus object but the version table")
	st, err := migrate.GetStatus(ctx, db)
	require.NoError(t, err)
	require.Zero(t, st.Current)
	require.Empty(t, st.Applied)

	res, err = migrate.Up(ctx, db)
	require.NoError(t, err)
	require.Equal(t, versions(latest), res.Versions)
	require.Equal(t, migrated, schemaFingerprint(t, db), "up after down rebuilds the same schema")

	// The schema works: the SQL producer function writes an outbox row.
	var id string
	require.NoError(t, db.QueryRow(ctx, `SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{"a":1}')::text`).Scan(&id))
	var n int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM pulsebus.outbox WHERE event_id = $1`, id).Scan(&n))
	require.Equal(t, 1, n)
}

// Each down migration reverts exactly its up migration: going down one
// version and up again leaves the same schema, at every version.
func TestDown_EachStepReverts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := setup(t)
	latest := migrate.Latest()
	_, err := migrate.Up(ctx, db)
	require.NoError(t, err)
	full := schemaFingerprint(t, db)
	for v := latest; v >= 1; v-- {
		res, err := migrate.Down(ctx, db, v-1, migrate.DownOptions{})
		require.NoError(t, err)
		require.Equal(t, []int{v}, res.Versions)
		st, err := migrate.GetStatus(ctx, db)
		require.NoError(t, err)
		require.Equal(t, v-1, st.Current)
	}
	require.Empty(t, leftovers(t, db))
	_, err = migrate.Up(ctx, db)
	require.NoError(t, err)
	require.Equal(t, full, schemaFingerprint(t, db))

	res, err := migrate.Down(ctx, db, latest, migrate.DownOptions{})
	require.NoError(t, err)
	require.Empty(t, res.Versions, "down to the current version is a no-op")
	_, err = migrate.Down(ctx, db, -1, migrate.DownOptions{})
	require.Error(t, err)
}

func TestUp_NoOpWhenCurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := setup(t)
	_, err := migrate.Up(ctx, db)
	require.NoError(t, err)
	before, err := migrate.GetStatus(ctx, db)
	require.NoError(t, err)
	schema := schemaFingerprint(t, db)

	res, err := migrate.Up(ctx, db)
	require.NoError(t, err)
	require.Empty(t, res.Versions)
	after, err := migrate.GetStatus(ctx, db)
	require.NoError(t, err)
	require.Equal(t, before, after, "applied_at untouched")
	require.Equal(t, schema, schemaFingerprint(t, db))
}

func TestGetStatus_BeforeAndAfter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := setup(t)
	latest := migrate.Latest()
	require.Positive(t, latest)

	st, err := migrate.GetStatus(ctx, db)
	require.NoError(t, err)
	require.Equal(t, migrate.Status{Current: 0, Latest: latest}, st, "a database never migrated")
	require.ErrorIs(t, migrate.Check(ctx, db), migrate.ErrOutdated)
	require.False(t, exists(t, db, "pulsebus.schema_migrations"), "status does not create anything")

	start := time.Now()
	_, err = migrate.Up(ctx, db)
	require.NoError(t, err)
	st, err = migrate.GetStatus(ctx, db)
	require.NoError(t, err)
	require.Equal(t, latest, st.Current)
	require.Equal(t, latest, st.Latest)
	migs, err := migrate.All()
	require.NoError(t, err)
	require.Len(t, st.Applied, len(migs))
	for i, a := range st.Applied {
		require.Equal(t, migs[i].Version, a.Version)
		require.Equal(t, migs[i].Name, a.Name)
		require.WithinDuration(t, start, a.AppliedAt, time.Minute)
	}
	require.NoError(t, migrate.Check(ctx, db))

	_, err = migrate.Down(ctx, db, 0, migrate.DownOptions{})
	require.NoError(t, err)
	err = migrate.Check(ctx, db)
	require.ErrorIs(t, err, migrate.ErrOutdated)
	// What is wrong, not which command fixes it: the CLI adds that.
	require.EqualError(t, err, fmt.Sprintf("database schema is outdated (database at version 0, this build needs %d)", latest))
}

// Several migrators starting together on a fresh database (a relay and a
// consumer and their replicas): all succeed, and each version is applied
// exactly once.
func TestUp_ConcurrentMigrators(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, tdb := setup(t)
	const n = 4
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		c, err := pgx.Connect(ctx, tdb.URL)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		conns[i] = c
	}
	var (
		start   = make(chan struct{})
		wg      sync.WaitGroup
		results = make([]migrate.Result, n)
		errs    = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = migrate.Up(ctx, conns[i])
		})
	}
	close(start)
	wg.Wait()

	var applied []int
	for i := range n {
		require.NoError(t, errs[i], "migrator %d", i)
		applied = append(applied, results[i].Versions...)
	}
	slices.Sort(applied)
	require.Equal(t, versions(migrate.Latest()), applied, "every version applied by exactly one migrator")

	var rows, distinct int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*), count(DISTINCT version) FROM pulsebus.schema_migrations`).Scan(&rows, &distinct))
	require.Equal(t, migrate.Latest(), rows)
	require.Equal(t, rows, distinct)
	require.NoError(t, migrate.Check(ctx, db))
}

// The migrator waits for the advisory lock another migrator holds.
func TestUp_WaitsForTheLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := setup(t)
	const lockKey int64 = 0x70756c7365627573 // "pulsebus", as pkg/migrate takes it

	holder, err := db.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(ctx) }()
	_, err = holder.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey)
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := migrate.Up(ctx, db)
		done <- err
	}()
	// Wait until the migrator is blocked on the lock.
	require.Eventually(t, func() bool {
		var waiting bool
		err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&waiting)
		return err == nil && waiting
	}, 20*time.Second, 10*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("migrator finished while the lock was held: %v", err)
	default:
	}
	require.False(t, exists(t, db, "pulsebus.outbox"))

	require.NoError(t, holder.Commit(ctx))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("migrator did not finish after the lock was released")
	}
	require.True(t, exists(t, db, "pulsebus.outbox"))
}

func TestUp_DatabaseNewerThanBuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := setup(t)
	latest := migrate.Latest()
	_, err := migrate.Up(ctx, db)
	require.NoError(t, err)
	_, err = db.Exec(ctx, `INSERT INTO pulsebus.schema_migrations (version, name) VALUES ($1, 'from_a_newer_build')`, latest+1)
	require.NoError(t, err)
	schema := schemaFingerprint(t, db)

	_, err = migrate.Up(ctx, db)
	require.Error(t, err)
	require.Contains(t, err.Error(), fmt.Sprintf("database schema is at version %d, newer than this build's %d", latest+1, latest))
	require.Contains(t, err.Error(), "upgrade the binary")

	_, err = migrate.Down(ctx, db, 0, migrate.DownOptions{})
	require.Error(t, err)
	require.Contains(t, err.Error(), "newer than this build")
	require.Contains(t, err.Error(), fmt.Sprintf("only a build that knows version %d can revert it", latest+1))
	require.Equal(t, schema, schemaFingerprint(t, db), "a refused run changes nothing")

	st, err := migrate.GetStatus(ctx, db)
	require.NoError(t, err)
	require.Equal(t, latest+1, st.Current)
	require.Equal(t, latest, st.Latest)
	require.NoError(t, migrate.Check(ctx, db), "a newer schema is not outdated")
}

// Every table a down migration drops counts as data unless its down file
// says it holds settings; version 1's down drops every table of the schema.
func TestMigration_DropsData(t *testing.T) {
	t.Parallel()
	migs, err := migrate.All()
	require.NoError(t, err)
	require.ElementsMatch(t, version1Objects, migs[0].DropsData())
	for _, m := range migs {
		require.NotContains(t, m.DropsData(), "pulsebus.limits", "%04d: pulsebus.limits holds settings", m.Version)
	}
}

// Down refuses to drop tables that hold rows, names them with their counts
// and changes nothing; with Force it drops them and reports them. A target
// above the current version or below 0 is refused.
func TestDown_RefusesToDropRowsUnlessForced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := setup(t)
	latest := migrate.Latest()
	_, err := migrate.Down(ctx, db, 1, migrate.DownOptions{})
	require.ErrorIs(t, err, migrate.ErrTarget, "a database never migrated is at version 0")
	require.ErrorContains(t, err, "version 1 is above the schema's current version 0")
	_, err = migrate.Up(ctx, db)
	require.NoError(t, err)
	schema := schemaFingerprint(t, db)
	_, err = db.Exec(ctx, `SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}') FROM generate_series(1, 3)`)
	require.NoError(t, err)

	_, err = migrate.Down(ctx, db, 0, migrate.DownOptions{})
	var loss *migrate.DataLossError
	require.ErrorAs(t, err, &loss)
	require.Equal(t, []migrate.TableRows{{Table: "pulsebus.outbox", Rows: 3}}, loss.Tables)
	require.EqualError(t, err, "migrate down to version 0 would drop tables that hold rows: pulsebus.outbox (3 rows); nothing was changed")
	require.Equal(t, schema, schemaFingerprint(t, db))

	_, err = migrate.Down(ctx, db, latest+1, migrate.DownOptions{Force: true})
	require.ErrorIs(t, err, migrate.ErrTarget)
	require.ErrorContains(t, err, fmt.Sprintf("version %d is above the schema's current version %d", latest+1, latest))
	_, err = migrate.Down(ctx, db, -1, migrate.DownOptions{Force: true})
	require.ErrorIs(t, err, migrate.ErrTarget)
	require.Equal(t, schema, schemaFingerprint(t, db))

	res, err := migrate.Down(ctx, db, 0, migrate.DownOptions{Force: true})
	require.NoError(t, err)
	require.Equal(t, []migrate.TableRows{{Table: "pulsebus.outbox", Rows: 3}}, res.Dropped)
	require.Empty(t, leftovers(t, db))
}
