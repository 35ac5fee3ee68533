package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/term"

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

// RedactURL returns rawURL with any password replaced by "xxxxx", for logs
// and error messages. It handles the forms PostgreSQL connection strings
// take: a URL with a password in the user info or in a password or
// sslpassword query parameter, and a keyword/value DSN
// ("host=db password=secret").
func RedactURL(rawURL string) string {
	if !strings.Contains(rawURL, "://") {
		return dsnPassword.ReplaceAllString(rawURL, "${1}xxxxx")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparseable URL>"
	}
	q := u.Query()
	redacted := false
	for _, name := range []string{"password", "sslpassword"} {
		if q.Has(name) {
			q.Set(name, "xxxxx")
			redacted = true
		}
	}
	if redacted {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// dsnPassword matches the value of password or sslpassword in a keyword/value connection
// string: a single-quoted value with backslash escapes, or a bare word.
var dsnPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)`)

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
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", RedactURL(databaseURL), err)
	}
	if err := pingRetrying(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", RedactURL(databaseURL), err)
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
// reverts to version N.
func RunMigrate(ctx context.Context, prog string, args []string, stdout, stderr io.Writer) error {
	var (
		databaseURL string
		status      bool
		down        int
	)
	cmd := NewCommand(prog+" migrate", prog+" migrate [--status | --down N] [--database-url URL]",
		"Applies PulseBus's schema migrations. Safe to run from several processes at once.")
	cmd.String(&databaseURL, "database-url", "DATABASE_URL", DefaultDatabaseURL, "PostgreSQL URL or DSN", NonEmpty)
	cmd.Secret()
	cmd.Bool(&status, "status", "", false, "print the applied schema version and exit")
	cmd.Int(&down, "down", "", -1, -1, math.MaxInt32, "revert migrations above this version (0 removes the PulseBus schema and its data)")
	cmd.ShowDefault("none")
	if err := cmd.Parse(args, stdout, stderr); err != nil {
		return err
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
		res, err := migrate.Down(ctx, pool, down)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "reverted %d migration(s) %v; schema now at version %d\n", len(res.Versions), res.Versions, down)
		return nil
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
		return nil
	}
}

// NonEmpty is a [Settings.String] check refusing an empty value.
func NonEmpty(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	return nil
}
