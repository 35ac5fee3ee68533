// Package testdb gives each test its own PostgreSQL database with the
// PulseBus schema applied, on the server named by TEST_DATABASE_URL
// (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable).
//
// The first call in a test binary migrates a template database; every test
// then gets a copy of it (CREATE DATABASE ... TEMPLATE, a file copy, far
// faster than migrating) that is dropped in t.Cleanup. Tests are isolated and
// may run in parallel.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/internal/redact"
	"github.com/edupulse/pulsebus/pkg/migrate"
)

// DefaultURL is used when TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// ServerURL returns the URL of the test server's maintenance database.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// RedactedServerURL is ServerURL with its password, if any, masked, for
// logs.
func RedactedServerURL() string { return redact.DSN(ServerURL()) }

// DB is one test's database.
type DB struct {
	// Name is the database name.
	Name string
	// URL connects to it.
	URL string
	// Pool is a pool on it, closed in cleanup.
	Pool *pgxpool.Pool
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// New creates a migrated database for t, and drops it when t ends.
func New(t testing.TB) *DB {
	t.Helper()
	db := newDatabase(t, true)
	pool, err := pgxpool.New(context.Background(), db.URL)
	if err != nil {
		t.Fatalf("testdb: connect %s: %v", db.Name, err)
	}
	db.Pool = pool
	t.Cleanup(pool.Close) // runs before the drop registered earlier
	return db
}

// NewEmpty creates a database without the PulseBus schema, for migration
// tests. Its Pool is nil.
func NewEmpty(t testing.TB) *DB {
	t.Helper()
	return newDatabase(t, false)
}

func newDatabase(t testing.TB, migrated bool) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("testdb: cannot reach PostgreSQL at %s (set TEST_DATABASE_URL): %v", RedactedServerURL(), err)
	}
	defer admin.Close(context.Background())

	template := "template0"
	if migrated {
		templateOnce.Do(func() { templateName, templateErr = makeTemplate(ctx, admin) })
		if templateErr != nil {
			t.Fatalf("testdb: %v", templateErr)
		}
		template = templateName
	}
	name := "pulsebus_test_" + randomHex(6)
	if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, template)); err != nil {
		t.Fatalf("testdb: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, name); err != nil {
			t.Errorf("testdb: %v", err)
		}
	})
	return &DB{Name: name, URL: withDatabase(ServerURL(), name)}
}

// LoginAs creates a LOGIN role with a random name, a member of the group
// roles groups (pulsebus_producer, ...), and returns a URL that connects
// to db as it. The role is dropped when t ends (see [NewRole]).
func (db *DB) LoginAs(t testing.TB, groups ...string) string {
	t.Helper()
	return URLAs(db.URL, NewRole(t, "LOGIN", groups...))
}

// URLAs returns rawURL with user as its user and no password.
func URLAs(rawURL, user string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.User = url.User(user)
	return u.String()
}

// NewRole creates a role with a random name and the attributes options
// ("LOGIN", "LOGIN CREATEROLE"), a member of groups, on the test server,
// and returns its name. Roles are cluster-wide: it is dropped when t ends,
// after ending its sessions. Create it before a database it will own, so
// that the database is dropped first.
func NewRole(t testing.TB, options string, groups ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("testdb: connect to create a role: %v", err)
	}
	defer admin.Close(context.Background())
	name := "pulsebus_test_role_" + randomHex(6)
	if _, err := admin.Exec(ctx, `CREATE ROLE `+pgx.Identifier{name}.Sanitize()+` `+options); err != nil {
		t.Fatalf("testdb: create role %s %s: %v", name, options, err)
	}
	t.Cleanup(func() { DropRole(t, name) })
	for _, g := range groups {
		if _, err := admin.Exec(ctx, `GRANT `+pgx.Identifier{g}.Sanitize()+` TO `+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Fatalf("testdb: grant %s to %s: %v", g, name, err)
		}
	}
	return name
}

// DropRole drops role name, if it exists, after ending its sessions, and
// reports a failure as an error of t.
func DropRole(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Errorf("testdb: drop role %s: %v", name, err)
		return
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, name); err != nil {
		t.Errorf("testdb: end the sessions of role %s: %v", name, err)
	}
	if _, err := admin.Exec(ctx, `DROP ROLE IF EXISTS `+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Errorf("testdb: drop role %s: %v", name, err)
	}
}

// makeTemplate creates a database migrated to the latest version, named
// after a random suffix so concurrent test binaries do not share it. It is
// marked as a template and dropped by the next run's sweep of stale ones.
func makeTemplate(ctx context.Context, admin *pgx.Conn) (string, error) {
	sweepStale(ctx, admin)
	name := fmt.Sprintf("pulsebus_tmpl_%d_%s", time.Now().Unix(), randomHex(4))
	if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s`, name)); err != nil {
		return "", fmt.Errorf("create template database: %w", err)
	}
	conn, err := pgx.Connect(ctx, withDatabase(ServerURL(), name))
	if err != nil {
		return "", fmt.Errorf("connect template database: %w", err)
	}
	_, err = migrate.Up(ctx, conn)
	conn.Close(context.Background())
	if err != nil {
		return "", fmt.Errorf("migrate template database: %w", err)
	}
	return name, nil
}

// sweepStale drops test databases left behind by killed test binaries more
// than an hour ago. Errors are ignored: another binary may be using one.
func sweepStale(ctx context.Context, admin *pgx.Conn) {
	rows, err := admin.Query(ctx, `
		SELECT datname FROM pg_database
		 WHERE datname LIKE 'pulsebus\_tmpl\_%'
		   AND split_part(datname, '_', 3)::bigint < extract(epoch FROM now())::bigint - 3600`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		_, _ = admin.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, n))
	}
}

func withDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToLower(hex.EncodeToString(b))
}

// DropTemplate drops this test binary's template database, if one was made.
// Call it from TestMain after m.Run; a template left by a killed binary is
// swept by a later run.
func DropTemplate() {
	if templateName == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = dropDatabase(ctx, templateName)
}

// Create creates a database named prefix plus a random suffix on the
// server of ServerURL and migrates it to the latest PulseBus schema, for
// programs that need one outside a test (the benchmark program). Its Pool
// has at most maxConns connections. Call Drop when done; nothing drops it
// otherwise.
func Create(ctx context.Context, prefix string, maxConns int) (*DB, error) {
	db, err := CreateEmpty(ctx, prefix)
	if err != nil {
		return nil, err
	}
	fail := func(format string, err error) (*DB, error) {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return nil, errors.Join(fmt.Errorf(format, db.Name, err), db.Drop(dctx))
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		return fail("parse URL of %s: %w", err)
	}
	cfg.MaxConns = int32(maxConns)
	if db.Pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fail("connect %s: %w", err)
	}
	if _, err := migrate.Up(ctx, db.Pool); err != nil {
		return fail("migrate %s: %w", err)
	}
	return db, nil
}

// CreateEmpty creates a database named prefix plus a random suffix on the
// server of ServerURL, without the PulseBus schema and without a Pool: for
// a TestMain whose examples connect and migrate as a user would. Call Drop
// when done; nothing drops it otherwise.
func CreateEmpty(ctx context.Context, prefix string) (*DB, error) {
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s (set TEST_DATABASE_URL): %w", RedactedServerURL(), err)
	}
	defer admin.Close(context.Background())
	name := prefix + randomHex(5)
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	return &DB{Name: name, URL: withDatabase(ServerURL(), name)}, nil
}

// Drop closes db's Pool, if any, and drops the database. It is for
// databases from Create; those of New and NewEmpty are dropped when their
// test ends.
func (db *DB) Drop(ctx context.Context) error {
	if db.Pool != nil {
		db.Pool.Close()
	}
	return dropDatabase(ctx, db.Name)
}

// dropDatabase drops database name, closing its connections.
func dropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return fmt.Errorf("drop %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name)); err != nil {
		return fmt.Errorf("drop %s: %w", name, err)
	}
	return nil
}
