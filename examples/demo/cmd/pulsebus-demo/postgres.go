package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/redact"
)

// errNoPostgres is returned when no server answers and none can be started;
// its message says how to get one.
type errNoPostgres struct {
	url   string
	cause error
	why   string // why no temporary cluster was started
}

func (e *errNoPostgres) Error() string {
	return fmt.Sprintf(`cannot reach PostgreSQL at %s: %v

The demo needs a PostgreSQL server (13 or newer). Start one, then run the demo again:

  docker run -d --name pulsebus-pg -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16
  make demo

or point it at a server you have (the demo works in its own database, pulsebus_demo):

  DATABASE_URL='postgres://user:password@host:5432/postgres' make demo

(%s)`, redact.DSN(e.url), e.cause, e.why)
}

// reachServer checks that the server of rawURL answers. When it does not,
// and initdb and pg_ctl are on PATH, it starts a temporary cluster and
// returns its URL and a function that stops and deletes it.
func reachServer(ctx context.Context, rawURL string, log *slog.Logger) (string, func(), error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, rawURL)
	if err == nil {
		_ = conn.Close(ctx)
		return rawURL, func() {}, nil
	}
	if _, perr := pgx.ParseConfig(rawURL); perr != nil {
		return "", nil, &cli.ConfigError{Setting: "--database-url (DATABASE_URL)", Reason: "not a valid PostgreSQL URL or DSN"}
	}
	initdb, e1 := exec.LookPath("initdb")
	pgctl, e2 := exec.LookPath("pg_ctl")
	switch {
	case e1 != nil || e2 != nil:
		return "", nil, &errNoPostgres{url: rawURL, cause: err, why: "with initdb and pg_ctl on PATH the demo would start a temporary cluster itself"}
	case os.Geteuid() == 0:
		return "", nil, &errNoPostgres{url: rawURL, cause: err, why: "initdb is on PATH, but PostgreSQL refuses to run as root, so the demo cannot start a temporary cluster"}
	}
	fmt.Fprintf(os.Stderr, "PostgreSQL at %s does not answer (%v); starting a temporary cluster with %s\n", redact.DSN(rawURL), err, initdb)
	return startTempCluster(ctx, initdb, pgctl, log)
}

func startTempCluster(ctx context.Context, initdb, pgctl string, log *slog.Logger) (string, func(), error) {
	dir, err := os.MkdirTemp("", "pulsebus-demo-pg-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	data := filepath.Join(dir, "data")
	if out, err := exec.CommandContext(ctx, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		cleanup()
		return "", nil, err
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100", port, dir)
	if out, err := exec.CommandContext(ctx, pgctl, "-D", data, "-l", filepath.Join(dir, "server.log"), "-o", opts, "-w", "start").CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	stop := func() {
		if out, err := exec.Command(pgctl, "-D", data, "-m", "fast", "-w", "stop").CombinedOutput(); err != nil {
			log.Warn("stop temporary PostgreSQL", "err", err, "output", string(out))
		}
		cleanup()
	}
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable", stop, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// recreateDatabase drops and creates the demo's own database on the server
// of serverURL and returns a pool on it. The demo never touches another
// database: its relay would publish any outbox rows it found.
func recreateDatabase(ctx context.Context, serverURL, name string, maxConns int32) (*pgxpool.Pool, error) {
	if !validIdent(name) {
		return nil, &cli.ConfigError{Setting: "--database", Reason: fmt.Sprintf("%q must be lower-case letters, digits and _", name)}
	}
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", redact.DSN(serverURL), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if admin.Config().Database == name {
		return nil, &cli.ConfigError{Setting: "--database", Reason: fmt.Sprintf("%q is the database of --database-url; the demo needs a database of its own, which it recreates", name)}
	}
	// Another demo (another user on the same server, or a second terminal)
	// works in it: dropping it would wipe that run.
	var sessions int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, name).Scan(&sessions); err != nil {
		return nil, fmt.Errorf("check whether database %s is in use: %w", name, err)
	}
	if sessions > 0 {
		return nil, &cli.ConfigError{Setting: "--database", Reason: fmt.Sprintf(
			"database %s is in use (%d sessions: another demo?); the demo drops and recreates its database, so pick another name with --database", name, sessions)}
	}
	for _, q := range []string{`DROP DATABASE IF EXISTS ` + name, `CREATE DATABASE ` + name} {
		if _, err := admin.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	cfg, err := pgxpool.ParseConfig(serverURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Database = name
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func validIdent(s string) bool {
	if s == "" || len(s) > 63 || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

var errIncomplete = errors.New("not every event reached every handler in time")
