package migrate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edupulse/pulsebus/sql"
)

// lockKey is the advisory lock every migrator holds while it works
// (the first eight bytes of "pulsebus" as a number).
const lockKey int64 = 0x70756c7365627573

// Beginner starts transactions; *pgxpool.Pool and *pgx.Conn satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Migration is one numbered schema version.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

// Status tells which versions a database has.
type Status struct {
	// Current is the highest applied version, 0 for none.
	Current int
	// Latest is the highest version this build knows.
	Latest int
	// Applied lists applied versions with their time, oldest first.
	Applied []Applied
}

// Applied is one row of pulsebus.schema_migrations.
type Applied struct {
	Version   int
	Name      string
	AppliedAt time.Time
}

// Result lists what a run changed.
type Result struct {
	// Versions applied (Up) or reverted (Down), in the order run.
	Versions []int
	// Dropped lists the tables Down dropped that held rows (only with
	// DownOptions.Force).
	Dropped []TableRows
}

var fileName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$`)

// All returns the embedded migrations in version order.
func All() ([]Migration, error) {
	entries, err := fs.ReadDir(schema.Files, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("embedded migration %q: name is not NNNN_name.up.sql or NNNN_name.down.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		body, err := fs.ReadFile(schema.Files, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read embedded migration %q: %w", e.Name(), err)
		}
		mig := byVersion[v]
		if mig == nil {
			mig = &Migration{Version: v, Name: m[2]}
			byVersion[v] = mig
		}
		if m[3] == "up" {
			mig.Up = string(body)
		} else {
			mig.Down = string(body)
		}
	}
	migs := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("embedded migration %04d_%s: needs both an up and a down file", m.Version, m.Name)
		}
		migs = append(migs, *m)
	}
	slices.SortFunc(migs, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range migs {
		if m.Version != i+1 {
			return nil, fmt.Errorf("embedded migrations: version %d missing before %04d_%s", i+1, m.Version, m.Name)
		}
	}
	return migs, nil
}

// Latest returns the highest version this build knows.
func Latest() int {
	migs, err := All()
	if err != nil || len(migs) == 0 {
		return 0
	}
	return migs[len(migs)-1].Version
}

// Up applies every pending migration. It is safe to call concurrently from
// several processes and a no-op when the schema is current.
func Up(ctx context.Context, db Beginner) (Result, error) {
	migs, err := All()
	if err != nil {
		return Result{}, err
	}
	var res Result
	err = locked(ctx, db, func(tx pgx.Tx, current int) error {
		if current > len(migs) {
			return fmt.Errorf("database schema is at version %d, newer than this build's %d: upgrade the binary", current, len(migs))
		}
		for _, m := range migs[current:] {
			if _, err := tx.Exec(ctx, m.Up); err != nil {
				return fmt.Errorf("apply migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO pulsebus.schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return fmt.Errorf("record migration %04d: %w", m.Version, err)
			}
			res.Versions = append(res.Versions, m.Version)
		}
		return nil
	})
	return res, err
}

// DownOptions tunes [Down].
type DownOptions struct {
	// Force reverts even when a migration would drop tables that hold rows
	// (unpublished events, parked rows, offsets, dead letters): their rows
	// are lost.
	Force bool
}

// TableRows is a table a down migration drops and how many rows it held.
type TableRows struct {
	Table string // schema-qualified, "pulsebus.outbox"
	Rows  int64
}

// ErrTarget is wrapped by the error of [Down] for a target version it
// cannot revert to: negative, or above the database's current version
// (Down never applies migrations).
var ErrTarget = errors.New("migrate down: bad target version")

// DataLossError is the error of [Down] without [DownOptions.Force] when the
// migrations to revert would drop tables holding rows. Nothing was changed.
type DataLossError struct {
	Target int
	// Tables lists the tables holding rows, in the order they would be
	// dropped.
	Tables []TableRows
}

func (e *DataLossError) Error() string {
	parts := make([]string, len(e.Tables))
	for i, t := range e.Tables {
		parts[i] = fmt.Sprintf("%s (%s)", t.Table, rowCount(t.Rows))
	}
	return fmt.Sprintf("migrate down to version %d would drop tables that hold rows: %s; nothing was changed",
		e.Target, strings.Join(parts, ", "))
}

func rowCount(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// Down reverts applied migrations above target, newest first, in one
// transaction. Down(ctx, db, 0, ...) removes every PulseBus table and
// function. It refuses (an error wrapping [ErrTarget]) a negative target and
// one above the current version, and, unless opts.Force, returns a
// [*DataLossError] and changes nothing when a table it would drop holds
// rows. Result.Dropped lists the tables dropped with rows in them.
func Down(ctx context.Context, db Beginner, target int, opts DownOptions) (Result, error) {
	if target < 0 {
		return Result{}, fmt.Errorf("%w: %d is negative", ErrTarget, target)
	}
	migs, err := All()
	if err != nil {
		return Result{}, err
	}
	var res Result
	err = locked(ctx, db, func(tx pgx.Tx, current int) error {
		if current > len(migs) {
			return fmt.Errorf("database schema is at version %d, newer than this build's %d: only a build that knows version %d can revert it", current, len(migs), current)
		}
		if target > current {
			return fmt.Errorf("%w: version %d is above the schema's current version %d", ErrTarget, target, current)
		}
		for v := current; v > target; v-- {
			rows, err := countRows(ctx, tx, migs[v-1].DropsData())
			if err != nil {
				return fmt.Errorf("revert migration %04d_%s: %w", migs[v-1].Version, migs[v-1].Name, err)
			}
			res.Dropped = append(res.Dropped, rows...)
		}
		if len(res.Dropped) > 0 && !opts.Force {
			return &DataLossError{Target: target, Tables: res.Dropped}
		}
		for v := current; v > target; v-- {
			m := migs[v-1]
			if _, err := tx.Exec(ctx, m.Down); err != nil {
				return fmt.Errorf("revert migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM pulsebus.schema_migrations WHERE version = $1`, m.Version); err != nil {
				return fmt.Errorf("unrecord migration %04d: %w", m.Version, err)
			}
			res.Versions = append(res.Versions, m.Version)
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// countRows returns the tables of tables that exist and hold rows, with
// their row counts.
func countRows(ctx context.Context, tx pgx.Tx, tables []string) ([]TableRows, error) {
	var out []TableRows
	for _, t := range tables {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t).Scan(&exists); err != nil {
			return nil, fmt.Errorf("look up table %s: %w", t, err)
		}
		if !exists {
			continue
		}
		var n int64
		// t comes from the embedded migrations' DROP TABLE statements.
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier(strings.Split(t, ".")).Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("count rows of %s: %w", t, err)
		}
		if n > 0 {
			out = append(out, TableRows{Table: t, Rows: n})
		}
	}
	return out, nil
}

// dropTable finds the tables a down migration drops.
var dropTable = regexp.MustCompile(`(?im)^\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)`)

// settingsTable finds the comment lines of a down migration that name a
// table holding settings its up migration recreates, not data:
//
//	-- settings, not data: pulsebus.limits
var settingsTable = regexp.MustCompile(`(?im)^--\s*settings, not data:\s*([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)\s*$`)

// DropsData returns the tables m's down migration drops whose rows are data
// (every dropped table but those a "-- settings, not data: schema.table"
// comment line of the down file names), in the order it drops them.
func (m Migration) DropsData() []string {
	settings := map[string]bool{}
	for _, sm := range settingsTable.FindAllStringSubmatch(m.Down, -1) {
		settings[strings.ToLower(sm[1])] = true
	}
	var tables []string
	for _, dm := range dropTable.FindAllStringSubmatch(m.Down, -1) {
		if t := strings.ToLower(dm[1]); !settings[t] {
			tables = append(tables, t)
		}
	}
	return tables
}

// GetStatus reports the applied versions. A database never migrated has
// Current 0.
func GetStatus(ctx context.Context, db Beginner) (Status, error) {
	st := Status{Latest: Latest()}
	tx, err := db.Begin(ctx)
	if err != nil {
		return st, fmt.Errorf("migration status: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('pulsebus.schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return st, fmt.Errorf("migration status: %w", err)
	}
	if !exists {
		return st, nil
	}
	rows, err := tx.Query(ctx, `SELECT version, name, applied_at FROM pulsebus.schema_migrations ORDER BY version`)
	if err != nil {
		return st, fmt.Errorf("migration status: %w", err)
	}
	st.Applied, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Applied, error) {
		var a Applied
		err := r.Scan(&a.Version, &a.Name, &a.AppliedAt)
		return a, err
	})
	if err != nil {
		return st, fmt.Errorf("migration status: %w", err)
	}
	if n := len(st.Applied); n > 0 {
		st.Current = st.Applied[n-1].Version
	}
	return st, nil
}

// ErrOutdated is returned by [Check] when the database lacks migrations this
// build needs. The error says which version the database is at and which
// this build needs; how to migrate is the caller's to say (a command, [Up]).
var ErrOutdated = errors.New("database schema is outdated")

// Check returns an error wrapping [ErrOutdated] unless the database has every
// migration this build knows.
func Check(ctx context.Context, db Beginner) error {
	st, err := GetStatus(ctx, db)
	if err != nil {
		return err
	}
	if st.Current < st.Latest {
		return fmt.Errorf("%w (database at version %d, this build needs %d)", ErrOutdated, st.Current, st.Latest)
	}
	return nil
}

// locked runs fn in one transaction holding the migration lock, with the
// version table in place and the current version read.
func locked(ctx context.Context, db Beginner, fn func(tx pgx.Tx, current int) error) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			CREATE SCHEMA IF NOT EXISTS pulsebus;
			CREATE TABLE IF NOT EXISTS pulsebus.schema_migrations (
				version    integer     PRIMARY KEY,
				name       text        NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now()
			)`); err != nil {
			return fmt.Errorf("create migration table: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM pulsebus.schema_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("read migration version: %w", err)
		}
		return fn(tx, current)
	})
}

// MissingRoles returns the group roles the schema grants to
// (pulsebus.roles, from version 10) that do not exist: the migrating user
// could not create them, lacking CREATEROLE. Until a DBA creates them and
// runs SELECT * FROM pulsebus.setup_roles() as the schema owner, only the
// owner can use the schema. It returns nil for a schema without
// pulsebus.roles.
func MissingRoles(ctx context.Context, db Beginner) ([]string, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("look up the PulseBus roles: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, `
		SELECT r.role_name::text FROM pulsebus.roles AS r
		 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r.role_name)
		 ORDER BY r.purpose`)
	var names []string
	if err == nil {
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table: a schema before version 10
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("look up the PulseBus roles: %w", err)
	}
	return names, nil
}
