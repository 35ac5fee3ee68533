package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/redact"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/pkg/migrate"
)

func TestMain(m *testing.M) { testmain.Run(m, testdb.DropTemplate) }

// runMigrate runs the migrate subcommand of "relay" and returns its output.
func runMigrate(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = cli.RunMigrate(context.Background(), "relay", args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestRunMigrate_StatusUpIdempotentDown(t *testing.T) {
	t.Parallel()
	db := testdb.NewEmpty(t)
	latest := migrate.Latest()
	url := "--database-url=" + db.URL

	out, _, err := runMigrate(t, url, "--status")
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("schema version 0 (this build knows %d)\n%d migration(s) pending: run relay migrate\n", latest, latest), out)

	out, _, err = runMigrate(t, url)
	require.NoError(t, err)
	var applied []string
	for v := 1; v <= latest; v++ {
		applied = append(applied, fmt.Sprint(v))
	}
	require.Equal(t, fmt.Sprintf("applied %d migration(s) [%s]; schema now at version %d\n", latest, strings.Join(applied, " "), latest), out)

	out, _, err = runMigrate(t, url)
	require.NoError(t, err, "a second run is harmless")
	require.Equal(t, fmt.Sprintf("schema is current at version %d\n", latest), out)

	out, _, err = runMigrate(t, url, "--status")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Equal(t, fmt.Sprintf("schema version %d (this build knows %d)", latest, latest), lines[0])
	require.Len(t, lines, 1+latest, "one line per applied version, nothing pending:\n%s", out)
	require.Regexp(t, regexp.MustCompile(`^  0001_init applied \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$`), lines[1])

	out, _, err = runMigrate(t, url, "--down", "0")
	require.NoError(t, err)
	require.Contains(t, out, fmt.Sprintf("reverted %d migration(s)", latest))
	require.True(t, strings.HasSuffix(out, "schema now at version 0\n"), out)
	out, _, err = runMigrate(t, url, "--status")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "schema version 0 "), out)
}

// DATABASE_URL is the fallback for --database-url. (t.Setenv rules out
// t.Parallel.)
func TestRunMigrate_DatabaseURLFromEnvironment(t *testing.T) {
	db := testdb.NewEmpty(t)
	t.Setenv("DATABASE_URL", db.URL)
	out, _, err := runMigrate(t)
	require.NoError(t, err)
	require.Contains(t, out, fmt.Sprintf("schema now at version %d", migrate.Latest()))

	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?connect_timeout=5")
	out, _, err = runMigrate(t, "--database-url", db.URL, "--status")
	require.NoError(t, err, "the flag wins over the environment")
	require.Contains(t, out, fmt.Sprintf("schema version %d", migrate.Latest()))
}

func TestRunMigrate_BadCommandLines(t *testing.T) {
	t.Parallel()
	t.Run("help", func(t *testing.T) {
		t.Parallel()
		out, _, err := runMigrate(t, "--help")
		require.ErrorIs(t, err, flag.ErrHelp)
		require.Contains(t, out, "Usage: relay migrate")
		require.Contains(t, out, "--database-url string  (env DATABASE_URL")
		require.Contains(t, out, "--status")
		require.Contains(t, out, "--down int")
	})
	t.Run("unknown flag", func(t *testing.T) {
		t.Parallel()
		_, stderr, err := runMigrate(t, "--nope")
		require.ErrorIs(t, err, cli.ErrUsage)
		require.Contains(t, stderr, "flag provided but not defined: -nope")
		require.Contains(t, stderr, "Run 'relay migrate --help' for the flags.")
	})
	t.Run("extra argument", func(t *testing.T) {
		t.Parallel()
		_, _, err := runMigrate(t, "--status", "now")
		var ce *cli.ConfigError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "arguments", ce.Setting)
	})
	t.Run("not a database URL", func(t *testing.T) {
		t.Parallel()
		_, _, err := runMigrate(t, "--database-url", "postgres://u:s3cret@host:notaport/db")
		var ce *cli.ConfigError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "--database-url (DATABASE_URL)", ce.Setting)
		require.NotContains(t, err.Error(), "s3cret")
	})
	for _, dsn := range []string{
		"postgres://u:s3cret@127.0.0.1:1/db?connect_timeout=5",
		"postgres://u@127.0.0.1:1/db?password=s3cret&connect_timeout=5",
		"host=127.0.0.1 port=1 user=u password=s3cret connect_timeout=5",
		"host=127.0.0.1 port=1 user=u password='s3 cret' connect_timeout=5",
	} {
		t.Run("unreachable "+redact.DSN(dsn), func(t *testing.T) {
			t.Parallel()
			_, _, err := runMigrate(t, "--database-url", dsn)
			require.Error(t, err)
			require.Contains(t, err.Error(), "connect to PostgreSQL at")
			require.NotContains(t, err.Error(), "s3", "the password never appears in errors")
		})
	}
}

// NewLogger builds the binaries' logger from --log-format and --log-level.
func TestNewLogger(t *testing.T) {
	t.Parallel()
	t.Run("format and level", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			format, level string
			wantJSON      bool
			wantInfo      bool
		}{
			{"json", "info", true, true},
			{"JSON", "debug", true, true},
			{"text", "info", false, true},
			{"auto", "info", true, true}, // not a terminal: JSON
			{"", "info", true, true},
			{"json", "warn", true, false},
			{"text", "ERROR", false, false},
		}
		for _, tt := range tests {
			t.Run(tt.format+"/"+tt.level, func(t *testing.T) {
				t.Parallel()
				var buf bytes.Buffer
				log, err := cli.NewLogger(&buf, tt.format, tt.level)
				require.NoError(t, err)
				log.Info("hello", "k", "v")
				log.Error("boom")
				lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
				if tt.wantInfo {
					require.Len(t, lines, 2, buf.String())
				} else {
					require.Len(t, lines, 1, buf.String())
				}
				var rec map[string]any
				isJSON := json.Unmarshal([]byte(lines[0]), &rec) == nil
				require.Equal(t, tt.wantJSON, isJSON, lines[0])
				if !tt.wantJSON {
					require.Contains(t, lines[len(lines)-1], "level=ERROR msg=boom")
				}
			})
		}
	})

	// JSON logs write durations as the flags take them ("1s"), not as
	// nanoseconds (1000000000); so does the text format.
	t.Run("durations as text", func(t *testing.T) {
		t.Parallel()
		for format, want := range map[string][]string{
			"json": {`"poll_interval":"1s"`, `"lease_ttl":"1m30s"`},
			"text": {"poll_interval=1s", "lease_ttl=1m30s"},
		} {
			t.Run(format, func(t *testing.T) {
				t.Parallel()
				var buf bytes.Buffer
				log, err := cli.NewLogger(&buf, format, "info")
				require.NoError(t, err)
				log.Info("relay starting", "poll_interval", time.Second, "lease_ttl", 90*time.Second)
				for _, w := range want {
					require.Contains(t, buf.String(), w)
				}
			})
		}
	})

	t.Run("a bad format or level is a ConfigError naming the setting", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			format, level, wantSetting, wantValue string
		}{
			{"xml", "info", "--log-format (LOG_FORMAT)", `"xml"`},
			{"json", "loud", "--log-level (LOG_LEVEL)", `"loud"`},
			{"json", "", "--log-level (LOG_LEVEL)", `""`},
		}
		for _, tt := range tests {
			t.Run(tt.format+"/"+tt.level, func(t *testing.T) {
				t.Parallel()
				log, err := cli.NewLogger(&bytes.Buffer{}, tt.format, tt.level)
				require.Nil(t, log)
				var ce *cli.ConfigError
				require.True(t, errors.As(err, &ce), "got %T %v", err, err)
				require.Equal(t, tt.wantSetting, ce.Setting)
				require.Equal(t, "config: "+tt.wantSetting+": "+ce.Reason, err.Error())
				require.Contains(t, ce.Reason, tt.wantValue)
			})
		}
	})
}

func TestRunMigrate_HelpHidesThePasswordOfDatabaseURL(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://app:hunter2@db.internal:5432/app")
	out, stderr, err := runMigrate(t, "--help")
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, out, "--database-url")
	require.NotContains(t, out+stderr, "hunter2")
	require.NotContains(t, out+stderr, "db.internal", "help shows the default, never the environment's value")
}

// Sessions of the binaries are told apart in pg_stat_activity by their
// application name; a URL that sets its own keeps it.
func TestConnect_SetsApplicationName(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	appName := func(url string) string {
		t.Helper()
		pool, err := cli.Connect(ctx, url, cli.AppName("relay", "cli"))
		require.NoError(t, err)
		defer pool.Close()
		var got string
		require.NoError(t, pool.QueryRow(ctx, `SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&got))
		return got
	}
	require.Equal(t, "pulsebus-relay-cli", appName(db.URL))
	require.Equal(t, "mine", appName(db.URL+"&application_name=mine"))
	require.Equal(t, "pulsebus-consumer", cli.AppName("consumer", ""))
}

// migrateDBWithRows returns a migrated database holding two unpublished events
// and a dead letter.
func migrateDBWithRows(t *testing.T) *testdb.DB {
	t.Helper()
	db := testdb.New(t)
	for _, q := range []string{
		`SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}')`,
		`SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}')`,
		`INSERT INTO pulsebus.dead_letters (group_id, handler, topic, partition, kafka_offset, error, attempts, first_failed_at, last_failed_at)
		 VALUES ('g', 'h', 't', 0, 1, 'boom', 1, now(), now())`,
	} {
		_, err := db.Pool.Exec(context.Background(), q)
		require.NoError(t, err)
	}
	return db
}

func schemaVersion(t *testing.T, db *testdb.DB) int {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), db.URL)
	require.NoError(t, err)
	defer pool.Close()
	st, err := migrate.GetStatus(context.Background(), pool)
	require.NoError(t, err)
	return st.Current
}

// --down refuses to drop tables that hold rows: it names them with their
// row counts and changes nothing; with --force it drops them and says what
// it dropped.
func TestRunMigrate_DownRefusesToDropRowsWithoutForce(t *testing.T) {
	t.Parallel()
	db := migrateDBWithRows(t)
	latest := migrate.Latest()
	url := "--database-url=" + db.URL

	_, _, err := runMigrate(t, url, "--down", "0")
	require.Error(t, err)
	require.Equal(t, 1, cli.ExitCode(err))
	require.ErrorContains(t, err, "tables that hold rows")
	require.ErrorContains(t, err, "pulsebus.outbox (2 rows)")
	require.ErrorContains(t, err, "pulsebus.dead_letters (1 row)")
	require.NotContains(t, err.Error(), "pulsebus.relay_leader", "empty tables are not listed")
	require.NotContains(t, err.Error(), "pulsebus.limits", "the limits row is a setting, not data")
	require.ErrorContains(t, err, "--force")
	require.Equal(t, latest, schemaVersion(t, db), "nothing reverted")

	// Reverting only versions whose down drops no table holding rows needs
	// no --force.
	if latest > 1 {
		out, _, err := runMigrate(t, url, "--down", "1")
		require.NoError(t, err)
		require.True(t, strings.HasSuffix(out, "schema now at version 1\n"), out)
		require.Equal(t, 1, schemaVersion(t, db))
	}

	out, _, err := runMigrate(t, url, "--down", "0", "--force")
	require.NoError(t, err)
	t.Logf("migrate --down 0 --force:\n%s", out)
	require.Contains(t, out, "dropped pulsebus.outbox with 2 rows\n")
	require.Contains(t, out, "dropped pulsebus.dead_letters with 1 row\n")
	require.True(t, strings.HasSuffix(out, "schema now at version 0\n"), out)
	require.Zero(t, schemaVersion(t, db))
}

// Bad --down targets and flag combinations are refused with exit status 2
// before anything changes.
func TestRunMigrate_DownBadTargets(t *testing.T) {
	t.Parallel()
	empty := testdb.NewEmpty(t)
	migrated := testdb.New(t)
	latest := migrate.Latest()
	cases := []struct {
		name string
		db   *testdb.DB
		args []string
		want string
	}{
		{"above the current version of an empty database", empty, []string{"--down", "5"}, "--down: version 5 is above the schema's current version 0 (--down only reverts; migrate without --down applies)"},
		{"above the current version", migrated, []string{"--down", fmt.Sprint(latest + 1)},
			fmt.Sprintf("--down: version %d is above the schema's current version %d", latest+1, latest)},
		{"negative", migrated, []string{"--down", "-1"}, `--down: "-1" (from --down) is not a schema version (0 or more)`},
		{"status and down", migrated, []string{"--status", "--down", "0"}, "--status/--down: give one of them, not both"},
		{"force without down", migrated, []string{"--force"}, "--force: only with --down"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := schemaVersion(t, tc.db)
			out, _, err := runMigrate(t, append([]string{"--database-url", tc.db.URL}, tc.args...)...)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, 2, cli.ExitCode(err), "%v", err)
			require.Empty(t, out)
			require.Equal(t, before, schemaVersion(t, tc.db), "nothing changed")
		})
	}
	out, _, err := runMigrate(t, "--database-url", migrated.URL, "--down", fmt.Sprint(latest))
	require.NoError(t, err, "down to the current version is a no-op")
	require.Equal(t, fmt.Sprintf("schema is at version %d already; nothing reverted\n", latest), out)
}
