package relaycmd

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// These tests set environment variables, so they do not run in parallel.

func TestParseRun_Defaults(t *testing.T) {
	for _, env := range []string{"DATABASE_URL", "KAFKA_BROKERS", "RELAY_BATCH_SIZE", "RELAY_LEASE_TTL", "METRICS_ADDR", "LOG_FORMAT", "RELAY_CREATE_TOPICS", "RELAY_WRITE_TIMEOUT"} {
		t.Setenv(env, "")
	}
	c, err := parseRun(context.Background(), nil, io.Discard, io.Discard)
	require.NoError(t, err)
	require.Equal(t, cli.DefaultDatabaseURL, c.databaseURL)
	require.Equal(t, []string{"127.0.0.1:9092"}, c.kafka.Brokers)
	require.Equal(t, "default", c.name)
	require.Equal(t, 1000, c.batchSize)
	require.Equal(t, time.Second, c.pollInterval)
	require.Equal(t, 15*time.Second, c.leaseTTL)
	require.Zero(t, c.writeTimeout, "left to the relay, which defaults it to min(10s, TTL/2)")
	require.Equal(t, ":9090", c.metricsAddr)
	require.Equal(t, "auto", c.logFormat)
	require.Equal(t, "none", c.compression)
	require.Equal(t, 5*time.Second, c.shutdownTimeout)
	require.Less(t, c.shutdownTimeout+2*time.Second, 10*time.Second, "SIGTERM to exit within 10s, lease release included")
	require.False(t, c.createTopics)
	require.Equal(t, envelope.DefaultMaxPayloadBytes, c.maxPayloadBytes)

	// The default payload limit above a small --max-message-bytes is no
	// error (such payloads are parked as too large); one given is.
	c, err = parseRun(context.Background(), []string{"--max-message-bytes", "2048"}, io.Discard, io.Discard)
	require.NoError(t, err)
	require.Equal(t, envelope.DefaultMaxPayloadBytes, c.maxPayloadBytes)
	c, err = parseRun(context.Background(), []string{"--max-message-bytes", "3000000", "--max-payload-bytes", "3000000"}, io.Discard, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 3000000, c.maxPayloadBytes)
}

func TestParseRun_FlagWinsOverEnvWinsOverDefault(t *testing.T) {
	t.Setenv("RELAY_BATCH_SIZE", "50")
	t.Setenv("RELAY_POLL_INTERVAL", "250ms")
	t.Setenv("RELAY_CREATE_TOPICS", "true")
	t.Setenv("RELAY_POLL_ONLY", "true")
	t.Setenv("KAFKA_BROKERS", "a:1,b:2")
	t.Setenv("RELAY_COMPRESSION", "ZSTD")
	t.Setenv("LOG_FORMAT", "json")

	c, err := parseRun(context.Background(), nil, io.Discard, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 50, c.batchSize)
	require.Equal(t, 250*time.Millisecond, c.pollInterval)
	require.True(t, c.createTopics)
	require.True(t, c.pollOnly)
	require.Equal(t, []string{"a:1", "b:2"}, c.kafka.Brokers)
	require.Equal(t, "zstd", c.compression)
	require.Equal(t, kafka.Zstd, compressions[c.compression])

	c, err = parseRun(context.Background(), []string{"--batch-size", "70", "--poll-interval=2s", "--create-topics=false", "--poll-only=false",
		"--kafka-brokers", "c:3", "--compression", "lz4", "--log-format", "text"}, io.Discard, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 70, c.batchSize)
	require.Equal(t, 2*time.Second, c.pollInterval)
	require.False(t, c.createTopics)
	require.False(t, c.pollOnly)
	require.Equal(t, []string{"c:3"}, c.kafka.Brokers)
	require.Equal(t, "lz4", c.compression)
	require.Equal(t, "text", c.logFormat)

	// A bare boolean flag means true; a bad env value is ignored when the
	// flag is given.
	t.Setenv("RELAY_POLL_ONLY", "maybe")
	c, err = parseRun(context.Background(), []string{"--poll-only"}, io.Discard, io.Discard)
	require.NoError(t, err)
	require.True(t, c.pollOnly)
}

func TestParseRun_BadValuesNameFlagAndEnv(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		setting string // expected in the error
		reason  string
	}{
		{"batch size not a number", []string{"--batch-size", "many"}, nil, "--batch-size (RELAY_BATCH_SIZE)", `"many" (from --batch-size) is not a whole number`},
		{"batch size zero", nil, map[string]string{"RELAY_BATCH_SIZE": "0"}, "--batch-size (RELAY_BATCH_SIZE)", `"0" (from RELAY_BATCH_SIZE) is out of range`},
		{"poll interval without unit", nil, map[string]string{"RELAY_POLL_INTERVAL": "5"}, "--poll-interval (RELAY_POLL_INTERVAL)", "not a duration"},
		{"poll interval negative", []string{"--poll-interval=-1s"}, nil, "--poll-interval (RELAY_POLL_INTERVAL)", "out of range"},
		{"poll only", nil, map[string]string{"RELAY_POLL_ONLY": "yes please"}, "--poll-only (RELAY_POLL_ONLY)", "not true or false"},
		{"lease ttl too short", []string{"--lease-ttl", "1s"}, nil, "--lease-ttl (RELAY_LEASE_TTL)", "out of range: want 1.5s"},
		{"write timeout not below lease", []string{"--lease-ttl", "2s", "--write-timeout", "2s"}, nil, "--write-timeout (RELAY_WRITE_TIMEOUT)", "below --lease-ttl (RELAY_LEASE_TTL)"},
		{"create topics", nil, map[string]string{"RELAY_CREATE_TOPICS": "sure"}, "--create-topics (RELAY_CREATE_TOPICS)", "not true or false"},
		{"partitions", []string{"--topic-partitions", "0"}, nil, "--topic-partitions (RELAY_TOPIC_PARTITIONS)", "out of range"},
		{"replication", nil, map[string]string{"RELAY_TOPIC_REPLICATION_FACTOR": "x"}, "--topic-replication-factor (RELAY_TOPIC_REPLICATION_FACTOR)", "not a whole number"},
		{"compression", []string{"--compression", "brotli"}, nil, "--compression (RELAY_COMPRESSION)", "none, gzip, snappy, lz4, zstd"},
		{"max message bytes", []string{"--max-message-bytes", "10"}, nil, "--max-message-bytes (RELAY_MAX_MESSAGE_BYTES)", "out of range"},
		{"max payload bytes zero", []string{"--max-payload-bytes", "0"}, nil, "--max-payload-bytes (RELAY_MAX_PAYLOAD_BYTES)", "out of range"},
		{"max payload bytes above max message bytes", nil, map[string]string{"RELAY_MAX_PAYLOAD_BYTES": "2000000"}, "--max-payload-bytes (RELAY_MAX_PAYLOAD_BYTES)",
			"2000000 must not exceed --max-message-bytes (RELAY_MAX_MESSAGE_BYTES) 1000000"},
		{"metrics addr", nil, map[string]string{"METRICS_ADDR": "9090"}, "--metrics-addr (METRICS_ADDR)", "not host:port"},
		{"metrics port", []string{"--metrics-addr", ":99999"}, nil, "--metrics-addr (METRICS_ADDR)", "no valid port"},
		{"log format", nil, map[string]string{"LOG_FORMAT": "xml"}, "--log-format (LOG_FORMAT)", "auto, json, text"},
		{"log level", []string{"--log-level", "loud"}, nil, "--log-level (LOG_LEVEL)", "debug, info, warn, error"},
		{"shutdown timeout", []string{"--shutdown-timeout", "soon"}, nil, "--shutdown-timeout (RELAY_SHUTDOWN_TIMEOUT)", "not a duration"},
		{"connect timeout", nil, map[string]string{"RELAY_CONNECT_TIMEOUT": "0s"}, "--connect-timeout (RELAY_CONNECT_TIMEOUT)", "out of range"},
		{"backlog interval", []string{"--backlog-interval", "-1s"}, nil, "--backlog-interval (RELAY_BACKLOG_INTERVAL)", "out of range"},
		{"empty name", []string{"--name", ""}, nil, "--name (RELAY_NAME)", "must not be empty"},
		{"database url", []string{"--database-url", ""}, nil, "--database-url (DATABASE_URL)", "must not be empty"},
		{"brokers", nil, map[string]string{"KAFKA_BROKERS": "kafka"}, "--kafka-brokers (KAFKA_BROKERS)", `"kafka" is not host:port`},
		{"sasl mechanism", []string{"--kafka-sasl-mechanism", "GSSAPI", "--kafka-sasl-username", "u"}, nil, "--kafka-sasl-mechanism (KAFKA_SASL_MECHANISM)", "GSSAPI"},
		{"sasl password missing", nil, map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "u"}, "--kafka-sasl-password (KAFKA_SASL_PASSWORD)", "required"},
		{"tls ca file", []string{"--kafka-tls-ca-file", "/nonexistent/ca.pem"}, nil, "--kafka-tls-ca-file (KAFKA_TLS_CA_FILE)", "no such file"},
		{"positional argument", []string{"now"}, nil, "arguments", `unexpected ["now"]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := parseRun(context.Background(), tc.args, io.Discard, io.Discard)
			var ce *cli.ConfigError
			require.True(t, errors.As(err, &ce), "want a *cli.ConfigError, got %v", err)
			require.Equal(t, tc.setting, ce.Setting)
			require.Contains(t, ce.Reason, tc.reason)
			require.Equal(t, 2, ExitCode(err))
		})
	}
}

func TestParseRun_UnknownFlagIsUsageError(t *testing.T) {
	var stderr, stdout syncBuf
	_, err := parseRun(context.Background(), []string{"--batch"}, &stdout, &stderr)
	require.ErrorIs(t, err, cli.ErrUsage)
	require.Equal(t, 2, ExitCode(err))
	require.Contains(t, stderr.String(), "flag provided but not defined: -batch")
	require.Contains(t, stderr.String(), "did you mean --batch-size?\nRun 'relay run --help' for the flags.\n")
	require.NotContains(t, stderr.String(), "RELAY_BATCH_SIZE", "not the whole help")
	require.Empty(t, stdout.String())
}

// "relay --help" describes the whole command (run is its default);
// "relay run --help" only run; --version prints the build.
func TestRun_HelpOfTheDefaultCommandAndVersion(t *testing.T) {
	help := func(args ...string) string {
		t.Helper()
		var stdout, stderr syncBuf
		err := Run(context.Background(), args, &stdout, &stderr)
		require.Equal(t, 0, ExitCode(err), "%v: %v", args, err)
		return stdout.String()
	}
	top := help("--help")
	require.True(t, strings.HasPrefix(top, "Usage: relay [command] [flags]\n"), top)
	require.Contains(t, top, "Commands:")
	require.Contains(t, top, `"relay --version" for the version`)
	require.Contains(t, top, "--batch-size int")

	run := help("run", "--help")
	require.True(t, strings.HasPrefix(run, "Usage: relay run [flags]\n\nRelays events from the outbox"), run)
	require.NotContains(t, run, "Commands:")
	require.Contains(t, run, "--batch-size int")

	v := help("--version")
	require.Regexp(t, `^relay \S+ \(.*go1\.\d+.*\)\n$`, v)
}

type syncBuf struct{ b []byte }

func (s *syncBuf) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }
func (s *syncBuf) String() string              { return string(s.b) }

func TestHelp_ShowsNoSecretFromTheEnvironment(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://app:db-s3cr3t@db:5432/app")
	t.Setenv("KAFKA_SASL_PASSWORD", "kafka-s3cr3t")
	t.Setenv("KAFKA_SASL_MECHANISM", "PLAIN")
	t.Setenv("KAFKA_SASL_USERNAME", "relay")
	for _, cmd := range []string{"run", "status", "migrate", "parked list", "parked requeue", "parked delete"} {
		var out, errOut syncBuf
		err := Run(t.Context(), append(strings.Fields(cmd), "--help"), &out, &errOut)
		require.Equal(t, 0, ExitCode(err))
		require.NotEmpty(t, out.String()+errOut.String())
		require.NotContains(t, out.String()+errOut.String(), "s3cr3t", cmd)
	}
}
