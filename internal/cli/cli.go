package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/term"

	"github.com/edupulse/pulsebus/internal/redact"
	"github.com/edupulse/pulsebus/pkg/migrate"
)

// DefaultDatabaseURL is used when neither --database-url nor DATABASE_URL is
// set.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ConfigError names a setting with a bad value.
type ConfigError struct {
	Setting string // the flag, with its environment variable
	Reason  string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("config: %s: %s", e.Setting, e.Reason) }

// NewLogger returns a slog logger writing to w: JSON when format is "json",
// text when "text", and for "auto" text on a terminal and JSON otherwise.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, &ConfigError{Setting: "--log-level (LOG_LEVEL)", Reason: fmt.Sprintf("%q is not debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	jsonOpts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationAsText}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, jsonOpts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "auto", "":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, jsonOpts)), nil
	default:
		return nil, &ConfigError{Setting: "--log-format (LOG_FORMAT)", Reason: fmt.Sprintf("%q is not auto, json or text", format)}
	}
}

// durationAsText writes durations in JSON logs as Go writes them ("1s",
// "1m30s"), as the text format and the flags do, instead of nanoseconds.
func durationAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// LoggedError is an error the command has already logged: the program's
// main must not print it a second time.
type LoggedError struct{ Err error }

func (e *LoggedError) Error() string { return e.Err.Error() }
func (e *LoggedError) Unwrap() error { return e.Err }

// ReportError prints a command's error for program prog to w, once: not
// for a help request, nor for an error already logged or printed
// ([LoggedError]; [Command.Parse] returns one for an unknown flag).
func ReportError(w io.Writer, prog string, err error) {
	var logged *LoggedError
	if err == nil || errors.Is(err, flag.ErrHelp) || errors.As(err, &logged) {
		return
	}
	fmt.Fprintf(w, "%s: %v\n", prog, err)
}

// Connect opens a pool on databaseURL and checks it answers, retrying with
// back-off while the database is unreachable or starting up, until ctx's
// deadline or, without one, DefaultConnectTimeout; a wrong password or a
// missing database fails at once. Errors never contain the password. Its
// sessions carry application name appName ("pulsebus-relay",
// "pulsebus-consumer-cli") in pg_stat_activity unless the URL sets
// application_name itself.
func Connect(ctx context.Context, databaseURL, appName string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, &ConfigError{Setting: "--database-url (DATABASE_URL)", Reason: "not a valid PostgreSQL URL or DSN"}
	}
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set {
		cfg.ConnConfig.RuntimeParams["application_name"] = appName
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", redact.DSN(databaseURL), err)
	}
	if err := pingRetrying(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", redact.DSN(databaseURL), err)
	}
	return pool, nil
}

// AppName is the PostgreSQL application_name of program prog's sessions:
// "pulsebus-relay" for a long-running service (role ""), and
// "pulsebus-relay-cli" for its operator commands (role "cli"), so that
// pg_stat_activity tells them apart.
func AppName(prog, role string) string {
	if role == "" {
		return "pulsebus-" + prog
	}
	return "pulsebus-" + prog + "-" + role
}

// RunMigrate is the migrate subcommand of both binaries: it applies pending
// migrations, or with --status prints the applied version, or with --down N
// reverts to version N. --down refuses (exit status 2) a negative version,
// one above the current version and --status with it; it refuses (exit
// status 1) to drop tables that hold rows, naming them with their row
// counts, unless --force, which prints what it dropped.
func RunMigrate(ctx context.Context, prog string, args []string, stdout, stderr io.Writer) error {
	var (
		databaseURL string
		status      bool
		down        int
		force       bool
	)
	cmd := NewCommand(prog+" migrate", prog+" migrate [--status | --down N [--force]] [--database-url URL]",
		`Applies PulseBus's schema migrations. Safe to run from several processes at once.

--down N reverts the migrations above version N, newest first, in one
transaction; it refuses to drop tables that still hold rows (unpublished
events in pulsebus.outbox, parked rows, offsets, dead letters) and names
them with their row counts, unless --force.`)
	cmd.String(&databaseURL, "database-url", "DATABASE_URL", DefaultDatabaseURL, "PostgreSQL URL or DSN", NonEmpty)
	cmd.Secret()
	cmd.Bool(&status, "status", "", false, "print the applied schema version and exit")
	cmd.One("down", "", "", "int", "revert migrations above this version, at most the current one (0 removes the PulseBus schema)", func(v string) error {
		down = -1
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errors.New("is not a schema version (0 or more)")
		}
		down = n
		return nil
	})
	cmd.ShowDefault("none")
	cmd.Bool(&force, "force", "", false, "with --down: drop tables even when they hold rows (their rows are lost)")
	if err := cmd.Parse(args, stdout, stderr); err != nil {
		return err
	}
	switch {
	case status && down >= 0:
		return &ConfigError{Setting: "--status/--down", Reason: "give one of them, not both"}
	case force && down < 0:
		return cmd.Invalid("force", "only with --down")
	}
	for _, w := range cmd.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	pool, err := Connect(ctx, databaseURL, AppName(prog, "cli"))
	if err != nil {
		return err
	}
	defer pool.Close()
	switch {
	case status:
		st, err := migrate.GetStatus(ctx, pool)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schema version %d (this build knows %d)\n", st.Current, st.Latest)
		for _, a := range st.Applied {
			fmt.Fprintf(stdout, "  %04d_%s applied %s\n", a.Version, a.Name, a.AppliedAt.UTC().Format("2006-01-02 15:04:05Z"))
		}
		if st.Current < st.Latest {
			fmt.Fprintf(stdout, "%d migration(s) pending: run %s migrate\n", st.Latest-st.Current, prog)
		}
		return nil
	case down >= 0:
		return runMigrateDown(ctx, pool, down, force, stdout)
	default:
		res, err := migrate.Up(ctx, pool)
		if err != nil {
			return err
		}
		if len(res.Versions) == 0 {
			fmt.Fprintf(stdout, "schema is current at version %d\n", migrate.Latest())
		} else {
			fmt.Fprintf(stdout, "applied %d migration(s) %v; schema now at version %d\n", len(res.Versions), res.Versions, migrate.Latest())
		}
		missing, err := migrate.MissingRoles(ctx, pool)
		switch {
		case err != nil: // the schema is migrated; say so, and why the roles are unknown
			fmt.Fprintf(stderr, "warning: %v\n", err)
		case len(missing) > 0:
			fmt.Fprintf(stderr, "warning: the roles %s do not exist and this user may not create them (no CREATEROLE): "+
				"until a DBA creates them (CREATE ROLE name NOLOGIN) and runs SELECT * FROM pulsebus.setup_roles() "+
				"as the schema owner, only the owner can use the schema (README \"Security\")\n", strings.Join(missing, ", "))
		}
		return nil
	}
}

// runMigrateDown is "migrate --down target [--force]".
func runMigrateDown(ctx context.Context, pool *pgxpool.Pool, target int, force bool, stdout io.Writer) error {
	res, err := migrate.Down(ctx, pool, target, migrate.DownOptions{Force: force})
	var loss *migrate.DataLossError
	switch {
	case errors.Is(err, migrate.ErrTarget):
		return &ConfigError{Setting: "--down", Reason: strings.TrimPrefix(err.Error(), migrate.ErrTarget.Error()+": ") +
			" (--down only reverts; migrate without --down applies)"}
	case errors.As(err, &loss):
		return fmt.Errorf("%w; rerun with --force to drop them and their rows", err)
	case err != nil:
		return err
	case len(res.Versions) == 0:
		fmt.Fprintf(stdout, "schema is at version %d already; nothing reverted\n", target)
		return nil
	}
	for _, t := range res.Dropped {
		noun := "rows"
		if t.Rows == 1 {
			noun = "row"
		}
		fmt.Fprintf(stdout, "dropped %s with %d %s\n", t.Table, t.Rows, noun)
	}
	fmt.Fprintf(stdout, "reverted %d migration(s) %v; schema now at version %d\n", len(res.Versions), res.Versions, target)
	return nil
}

// NonEmpty is a [Settings.String] check refusing an empty value.
func NonEmpty(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	return nil
}
