package consumercmd_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/consumercmd"
)

// Bad settings fail before anything connects, with an error naming the
// flag and its environment variable, and exit code 2.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	good := []string{"--group", "g", "--topics", "t", "--handler", "name=a,types=*,log=info", "--database-url", "postgres://127.0.0.1:1/x"}
	with := func(extra ...string) []string { return append(append([]string{"run"}, good...), extra...) }
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no group", []string{"run", "--topics", "t", "--handler", "name=a,types=*,log=info"}, "--group (CONSUMER_GROUP): required"},
		{"no topics", []string{"run", "--group", "g", "--handler", "name=a,types=*,log=info"}, "--topics (CONSUMER_TOPICS): required"},
		{"bad topic", with("--topics", "ok,not ok"), `--topics (CONSUMER_TOPICS): invalid topic name: "not ok" has the character ' '`},
		{"no handler", []string{"run", "--group", "g", "--topics", "t"}, "--handler (CONSUMER_HANDLERS): required"},
		{"spec without types", with("--handler", "name=b,log=info"), "--handler (or env CONSUMER_HANDLERS) entry 2: handler b: types= is required"},
		{"spec without name", with("--handler", "types=*,log=info"), "entry 2: name= is required"},
		{"spec unknown key", with("--handler", "name=b,types=*,log=info,retries=3"), `entry 2: unknown key "retries"`},
		{"spec not key=value", with("--handler", "name=b,types=*,log"), `"log" is not key=value`},
		{"spec both kinds", with("--handler", "name=b,types=*,log=info,webhook=http://h"), "webhook=URL or log=LEVEL, not both"},
		{"spec neither kind", with("--handler", "name=b,types=*"), "give webhook=URL or log=LEVEL"},
		{"spec bad level", with("--handler", "name=b,types=*,log=loud"), "log=loud: not debug, info, warn or error"},
		{"spec bad url", with("--handler", "name=b,types=*,webhook=ftp://h/x"), "handler b: webhook: Config.URL ftp://h/...: scheme must be http or https"},
		{"spec bad type", with("--handler", "name=b,types=lesson.*|qu*z,log=info"), `types=lesson.*|qu*z: event type pattern "qu*z": want an exact type, prefix.* or *`},
		{"spec empty type", with("--handler", "name=b,types=a||c,log=info"), `event type pattern "": want an exact type`},
		{"spec max-attempts", with("--handler", "name=b,types=*,log=info,max-attempts=0"), "max-attempts=0: not a whole number >= 1"},
		{"spec on-failure", with("--handler", "name=b,types=*,log=info,on-failure=hold"),
			"on-failure=hold: want hold-key (a dead-lettered event holds its key's later events) or dead-letter"},
		{"spec timeout", with("--handler", "name=b,types=*,webhook=http://h,timeout=soon"), "timeout=soon: not a positive duration"},
		{"spec timeout on log", with("--handler", "name=b,types=*,log=info,timeout=1s"), "timeout= and header= apply to webhook handlers only"},
		{"spec twice", with("--handler", "name=b,types=*,log=info,log=warn"), "log= given twice"},
		{"spec reserved header", with("--handler", "name=b,types=*,webhook=http://h,header=ce-id:x"), "Ce-Id is set by the handler"},
		{"spec missing env", with("--handler", "name=b,types=*,webhook=http://h,header=Authorization:Bearer ${PULSEBUS_TEST_UNSET_TOKEN}"),
			"header=Authorization: environment variable PULSEBUS_TEST_UNSET_TOKEN is not set"},
		{"duplicate name", with("--handler", "name=a,types=x,log=warn"), "entry 2: handler name a used twice"},
		{"start offset", with("--start-offset", "middle"), `--start-offset (CONSUMER_START_OFFSET): "middle" is not earliest or latest`},
		{"max attempts", with("--max-attempts", "0"), "--max-attempts (CONSUMER_MAX_ATTEMPTS): 0: want at least 1"},
		{"max elapsed", with("--max-elapsed", "0s"), "--max-elapsed (CONSUMER_MAX_ELAPSED): 0s is not a positive duration"},
		{"retry intervals", with("--retry-initial-interval", "2s", "--retry-max-interval", "1s"), "--retry-max-interval (CONSUMER_RETRY_MAX_INTERVAL): 1s is shorter"},
		{"drain timeout", with("--drain-timeout", "-1s"), "--drain-timeout (CONSUMER_DRAIN_TIMEOUT): -1s is not a positive duration"},
		{"connect timeout", with("--connect-timeout", "0s"), "--connect-timeout (CONSUMER_CONNECT_TIMEOUT): 0s is not a positive duration"},
		{"brokers", with("--kafka-brokers", "nohostport"), `--kafka-brokers (KAFKA_BROKERS): "nohostport" is not host:port`},
		{"log level", with("--log-level", "chatty"), `--log-level (LOG_LEVEL): "chatty" is not debug`},
		{"log format", with("--log-format", "xml"), `--log-format (LOG_FORMAT): "xml" is not auto, json or text`},
		{"metrics addr", with("--metrics-addr", "9091"), `--metrics-addr (METRICS_ADDR): "9091" is not host:port`},
		{"metrics port", with("--metrics-addr", ":99999"), `--metrics-addr (METRICS_ADDR): ":99999" is not host:port`},
		{"database url", with("--database-url", "postgres://h:notaport/x"), "--database-url (DATABASE_URL): not a valid PostgreSQL URL"},
		{"offsets group", []string{"offsets"}, "--group (CONSUMER_GROUP): required"},
		{"replay to", []string{"replay", "--group", "g", "--handler-name", "a"}, "--to: required"},
		{"replay bad to", []string{"replay", "--group", "g", "--handler-name", "a", "--to", "yesterday"}, `--to: replay target "yesterday"`},
		{"replay handler", []string{"replay", "--group", "g", "--to", "earliest"}, "--handler-name: required"},
		{"replay partition", []string{"replay", "--group", "g", "--handler-name", "a", "--to", "0", "--partition", "-2"}, "--partition: -2"},
		{"list limit", []string{"dead-letters", "list", "--group", "g", "--limit", "0"}, "--limit: 0: want at least 1"},
		{"redrive neither", []string{"dead-letters", "redrive", "--group", "g"}, "--id/--handler-name: give one"},
		{"redrive both", []string{"dead-letters", "redrive", "--group", "g", "--id", "3", "--handler-name", "a"}, "give one, not both"},
		{"redrive unconfigured", []string{"dead-letters", "redrive", "--group", "g", "--handler-name", "a", "--handler", "name=b,types=*,log=info"},
			"--handler (CONSUMER_HANDLERS): handler a is not configured"},
		{"dead-letters alone", []string{"dead-letters"}, "want list, show, redrive or delete"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"run", "--frobnicate"}, "flag provided but not defined: -frobnicate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, stderr, err := command(t, tc.args...)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.Equal(t, 2, consumercmd.ExitCode(err), "exit code for %v", err)
			require.NotContains(t, stderr, "panic")
		})
	}
}

// An environment variable that does not parse names itself, unless the
// flag overrides it; a good one is used. Not parallel: t.Setenv.
func TestConfigFromEnvironment(t *testing.T) {
	t.Setenv("CONSUMER_GROUP", "g")
	t.Setenv("CONSUMER_TOPICS", "t")
	t.Setenv("DATABASE_URL", "postgres://127.0.0.1:1/x?connect_timeout=1")
	t.Setenv("CONSUMER_MAX_ELAPSED", "forever")
	t.Setenv("CONSUMER_HANDLERS", "name=a,types=*,log=info;\n name=b,types=x|y,log=bogus")

	_, _, err := command(t, "run")
	require.ErrorContains(t, err, `--max-elapsed (CONSUMER_MAX_ELAPSED): "forever" (from CONSUMER_MAX_ELAPSED) is not a duration`)
	require.Equal(t, 2, consumercmd.ExitCode(err))

	// The flag wins over the bad variable; the next problem is the handlers.
	_, _, err = command(t, "run", "--max-elapsed", "1s")
	require.ErrorContains(t, err, "CONSUMER_HANDLERS (or --handler) entry 2: log=bogus")

	// Flags replace the environment's handlers entirely. Then the settings
	// are good and the database is unreachable: a run time failure, exit 1,
	// with no password in the message.
	t.Setenv("DATABASE_URL", "postgres://u:s3cret@127.0.0.1:1/x?connect_timeout=1")
	_, _, err = command(t, "run", "--max-elapsed", "1s", "--handler", "name=c,types=*,log=info")
	require.Error(t, err)
	var ce *cli.ConfigError
	require.False(t, errors.As(err, &ce), "%v", err)
	require.Equal(t, 1, consumercmd.ExitCode(err))
	require.NotContains(t, err.Error(), "s3cret")

	t.Setenv("CONSUMER_DRAIN_TIMEOUT", "1m")
	t.Setenv("LOG_LEVEL", "nope")
	_, _, err = command(t, "run", "--max-elapsed", "1s", "--handler", "name=c,types=*,log=info")
	require.ErrorContains(t, err, "--log-level (LOG_LEVEL)")
}

func TestParseHandlerSpec(t *testing.T) {
	t.Setenv("PULSEBUS_TEST_TOKEN", "tok-123")
	s, err := consumercmd.ParseHandlerSpec("--handler", " name=search , types=lesson.*|quiz.submitted ,"+
		"webhook=https://user:pw@search.internal/events?key=abc,timeout=5s,header=Authorization:Bearer ${PULSEBUS_TEST_TOKEN},"+
		"header=X-Team:search,max-attempts=10,max-elapsed=2m,retry-for=30m")
	require.NoError(t, err)
	require.Equal(t, "search", s.Name)
	require.Equal(t, []string{"lesson.*", "quiz.submitted"}, s.Types)
	require.Equal(t, "webhook", s.Kind())
	require.Equal(t, 5*time.Second, s.Timeout)
	require.Equal(t, "Bearer tok-123", s.Headers.Get("Authorization"))
	require.Equal(t, "search", s.Headers.Get("X-Team"))
	require.Equal(t, 10, s.Retry.MaxAttempts)
	require.Equal(t, 2*time.Minute, s.Retry.MaxElapsed)
	require.Equal(t, 30*time.Minute, s.Retry.RetryFor)
	desc := s.Describe()
	for _, secret := range []string{"tok-123", "pw", "key=abc", "user", "events"} {
		require.NotContains(t, desc, secret)
	}
	require.Equal(t, "name=search,types=lesson.*|quiz.submitted,webhook=https://search.internal/...,timeout=5s,"+
		"header=Authorization:<redacted>,header=X-Team:<redacted>,max-attempts=10,max-elapsed=2m0s,retry-for=30m0s", desc)

	require.False(t, s.HoldKey, "on-failure defaults to dead-letter")

	s, err = consumercmd.ParseHandlerSpec("x", "name=audit-log,types=*,log=warn")
	require.NoError(t, err)
	require.Equal(t, "log", s.Kind())
	require.Equal(t, slog.LevelWarn, *s.Log)
	require.Equal(t, "name=audit-log,types=*,log=warn", s.Describe())

	s, err = consumercmd.ParseHandlerSpec("x", "name=ordered,types=*,log=warn,on-failure=hold-key")
	require.NoError(t, err)
	require.True(t, s.HoldKey)
	require.Equal(t, "name=ordered,types=*,log=warn,on-failure=hold-key", s.Describe())
	s, err = consumercmd.ParseHandlerSpec("x", "name=plain,types=*,log=warn,on-failure=dead-letter")
	require.NoError(t, err)
	require.False(t, s.HoldKey)

	_, err = consumercmd.ParseHandlerSpec("--handler #3", "")
	var ce *cli.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "--handler #3", ce.Setting)
}

// A parse error never quotes a header value: a comma inside one (a token
// such as "Bearer abc,def-s3cret") splits it into a field that is not
// key=value, and that field is a piece of the secret.
func TestParseHandlerSpec_ErrorsNeverEchoHeaderValues(t *testing.T) {
	for _, spec := range []string{
		"name=crm,types=*,webhook=https://crm/hook,header=Authorization:Bearer abc,def-s3cret",
		"name=crm,types=*,webhook=https://crm/hook,header=Authorization:Bearer abc,def-s3cret,timeout=5s",
		"name=crm,types=*,webhook=https://crm/hook,header=X-Token: s3cret\x00",
	} {
		_, err := consumercmd.ParseHandlerSpec("--handler", spec)
		require.Error(t, err, spec)
		require.NotContains(t, err.Error(), "s3cret", spec)
	}
	_, err := consumercmd.ParseHandlerSpec("--handler", "name=crm,types=*,webhook=https://crm/hook,header=Authorization:Bearer abc,def-s3cret")
	require.ErrorContains(t, err, "a header value cannot contain a comma")
}

// The metrics address in use: a run time failure (exit 1) naming the
// address. Uses the real database so it gets past the schema check.
func TestRun_MetricsAddrInUse(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	args := b.runArgs("name=a,types=*,log=info")
	for i, a := range args {
		if a == "--metrics-addr" {
			args[i+1] = ln.Addr().String()
		}
	}
	_, _, err = command(t, args...)
	require.ErrorContains(t, err, fmt.Sprintf("--metrics-addr (METRICS_ADDR): listen on %s", ln.Addr()))
	require.Equal(t, 1, consumercmd.ExitCode(err))
	require.False(t, strings.Contains(err.Error(), "config:"))
}

// --help of every command shows defaults, never a value from the
// environment, where secrets live. Not parallel: t.Setenv.
func TestHelp_ShowsNoSecretFromTheEnvironment(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://app:db-s3cr3t@db.internal:5432/app")
	t.Setenv("KAFKA_SASL_PASSWORD", "kafka-s3cr3t")
	t.Setenv("CONSUMER_HANDLERS", "name=crm,types=*,webhook=https://crm/hook?token=hook-s3cr3t")
	for _, cmd := range []string{"", "run", "migrate", "offsets", "replay", "dead-letters list", "dead-letters redrive"} {
		stdout, stderr, err := command(t, append(strings.Fields(cmd), "--help")...)
		require.Equal(t, 0, consumercmd.ExitCode(err), "%s: %v", cmd, err)
		require.Contains(t, stdout, "Usage: consumer", cmd)
		require.NotContains(t, stdout+stderr, "s3cr3t", cmd)
		require.NotContains(t, stdout+stderr, "db.internal", cmd)
	}
}
