package relaycmd_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/edupulse/pulsebus/internal/relaycmd"
	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

func metricValue(t *testing.T, body, series string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

func outboxRows(t *testing.T, db *testdb.DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pulsebus.outbox`).Scan(&n))
	return n
}

// The in-process relay publishes, reports leader in /readyz and its
// metrics, turns not ready when Kafka goes away, and returns nil when its
// context ends.
func TestRun_PublishesReadyzMetricsAndStopsCleanly(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc, err := testkafka.Start()
	require.NoError(t, err)
	kafkaUp := true
	t.Cleanup(func() {
		if kafkaUp {
			kc.Close()
		}
	})
	kc.CreateTopic(t, "lessons", 2)

	b := startBackground(t, "--database-url", db.URL, "--kafka-brokers", strings.Join(kc.Addrs, ","),
		"--lease-ttl", "3s", "--poll-interval", "100ms", "--backlog-interval", "100ms", "--name", "inproc", "--id", "relay-inproc-1")
	_, body := b.waitGet("/readyz", 20*time.Second, func(code int, body string) bool {
		return code == http.StatusOK && strings.Contains(body, "lease: leader (term")
	})
	require.Equal(t, "ready\nlease: leader (term 1)\n", body)
	require.Regexp(t, `msg="relay started" relay_id=relay-inproc-1 write_timeout=1.5s`, b.stderr.String(),
		"the start log gives the write timeout the library chose: min(10s, lease TTL/2)")

	insertEvents(t, db, "lessons", 25)
	b.waitGet("/metrics", 20*time.Second, func(code int, body string) bool {
		return metricValue(t, body, `pulsebus_relay_events_published_total{topic="lessons"}`) == "25"
	})
	require.Zero(t, outboxRows(t, db))
	var onKafka int64
	for _, end := range kc.EndOffsets(t, "lessons") {
		onKafka += end
	}
	require.Equal(t, int64(25), onKafka)
	_, body = b.waitGet("/metrics", 10*time.Second, func(code int, body string) bool {
		return metricValue(t, body, "pulsebus_relay_backlog_rows") == "0"
	})
	require.Equal(t, "1", metricValue(t, body, "pulsebus_relay_leader"))
	require.Equal(t, "25", metricValue(t, body, "pulsebus_relay_commit_to_ack_seconds_count"))
	require.NotEmpty(t, metricValue(t, body, "go_goroutines"), "Go collector registered")
	require.NotEmpty(t, metricValue(t, body, "process_resident_memory_bytes"), "process collector registered")

	// Kafka goes away: still alive, no longer ready.
	kc.Close()
	kafkaUp = false
	_, body = b.waitGet("/readyz", 20*time.Second, func(code int, _ string) bool { return code == http.StatusServiceUnavailable })
	require.Contains(t, body, "not ready: kafka does not answer")
	require.Contains(t, body, "lease: leader")
	code, _ := b.get("/healthz")
	require.Equal(t, http.StatusOK, code)

	took, err := b.stop()
	require.NoError(t, err)
	require.Less(t, took, 10*time.Second)
	require.Contains(t, b.stderr.String(), "relay released lease")
	var expired bool
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT expires_at <= clock_timestamp() FROM pulsebus.relay_leader WHERE name = 'inproc'`).Scan(&expired))
	require.True(t, expired, "lease released on shutdown")
}

func TestRun_UnreachableDependenciesFailFast(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	refused := freeAddr(t) // nothing listens there
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"database refuses", []string{"--database-url", "postgres://relay:db-s3cr3t@" + refused + "/app?sslmode=disable", "--kafka-brokers", kc.Addrs[0]},
			[]string{"connect to PostgreSQL at postgres://relay:xxxxx@" + refused}},
		{"database hangs", []string{"--database-url", "postgres://relay:db-s3cr3t@" + silentListener(t) + "/app?sslmode=disable", "--kafka-brokers", kc.Addrs[0]},
			[]string{"connect to PostgreSQL", "no answer within --connect-timeout 1s"}},
		{"schema missing", []string{"--database-url", testdb.NewEmpty(t).URL, "--kafka-brokers", kc.Addrs[0]},
			[]string{"database schema is outdated (database at version 0", "run relay migrate with the same --database-url"}},
		{"kafka refuses", []string{"--database-url", db.URL, "--kafka-brokers", refused},
			[]string{"connect to Kafka (brokers=" + refused, "no broker answered within --connect-timeout 1s", "connection refused"}},
		{"kafka hangs", []string{"--database-url", db.URL, "--kafka-brokers", silentListener(t)},
			[]string{"connect to Kafka (brokers=", "no broker answered within --connect-timeout 1s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			_, stderr, err := run(t, append([]string{"run", "--connect-timeout", "1s", "--metrics-addr", "127.0.0.1:0", "--log-format", "json"}, tc.args...)...)
			require.Error(t, err)
			took := time.Since(start)
			require.Less(t, took, 8*time.Second, "bounded by --connect-timeout")
			if tc.name == "kafka refuses" {
				// Retried until the timeout, not given up on the first refusal.
				require.GreaterOrEqual(t, took, time.Second)
				require.Contains(t, stderr, "waiting for a Kafka broker")
			}
			require.Equal(t, 1, relaycmd.ExitCode(err))
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error()+stderr, "db-s3cr3t")
			require.Contains(t, stderr, `"msg":"relay failed"`)
		})
	}
}

// SASL SCRAM against a kfake cluster that requires it: the relay
// authenticates and publishes; a wrong password fails at start with a clear
// error; no password reaches the logs.
func TestRun_KafkaSASL(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "relay-user", "kafka-s3cr3t"), kfake.SeedTopics(1, "lessons"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	dbURL := strings.Replace(db.URL, "postgres@", "postgres:db-s3cr3t@", 1) // trust auth ignores it
	require.Contains(t, dbURL, "db-s3cr3t")

	t.Run("wrong password", func(t *testing.T) {
		_, stderr, err := run(t, "run", "--database-url", dbURL, "--kafka-brokers", brokers, "--connect-timeout", "3s",
			"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", "relay-user", "--kafka-sasl-password", "wrong-s3cr3t",
			"--metrics-addr", "127.0.0.1:0")
		require.Error(t, err)
		require.Equal(t, 1, relaycmd.ExitCode(err))
		require.Contains(t, err.Error(), "connect to Kafka (brokers="+brokers+" client_id=pulsebus tls=false sasl=SCRAM-SHA-256 user=relay-user)")
		require.NotContains(t, err.Error()+stderr, "s3cr3t")
	})

	t.Run("publishes", func(t *testing.T) {
		insertEvents(t, db, "lessons", 5)
		b := startBackground(t, "--database-url", dbURL, "--kafka-brokers", brokers, "--poll-interval", "100ms",
			"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", "relay-user", "--kafka-sasl-password", "kafka-s3cr3t")
		b.waitGet("/metrics", 20*time.Second, func(code int, body string) bool {
			return metricValue(t, body, `pulsebus_relay_events_published_total{topic="lessons"}`) == "5"
		})
		require.Zero(t, outboxRows(t, db))
		_, err := b.stop()
		require.NoError(t, err)
		logs := b.stderr.String()
		require.Contains(t, logs, "sasl=SCRAM-SHA-256 user=relay-user")
		require.Contains(t, logs, "postgres:xxxxx@")
		require.NotContains(t, logs, "s3cr3t")
	})
}

func TestRun_MetricsAddrInUse(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	busy := silentListener(t)
	_, _, err := run(t, "run", "--database-url", db.URL, "--kafka-brokers", kc.Addrs[0], "--metrics-addr", busy)
	require.ErrorContains(t, err, "listen on --metrics-addr (METRICS_ADDR) "+busy)
	require.Equal(t, 1, relaycmd.ExitCode(err))
}

func TestRun_Help(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"run", "--help"}, {"help", "run"}} {
		out, _, err := run(t, args...)
		require.Equal(t, 0, relaycmd.ExitCode(err), "%v", args)
		if args[0] == "run" || len(args) == 2 {
			require.True(t, strings.HasPrefix(out, "Usage: relay run [flags]\n"), "%v: %s", args, out)
		} else {
			require.True(t, strings.HasPrefix(out, "Usage: relay [command] [flags]\n"), "%v: %s", args, out)
		}
		if len(args) > 1 || args[0] != "help" {
			require.Contains(t, out, "--batch-size int  (env RELAY_BATCH_SIZE, default 1000)", "%v", args)
		}
	}
	out, _, err := run(t, "migrate", "--help")
	require.Equal(t, 0, relaycmd.ExitCode(err))
	require.Contains(t, out, "Usage: relay migrate")

	_, stderr, err := run(t, "frobnicate")
	require.Equal(t, 2, relaycmd.ExitCode(err))
	require.ErrorContains(t, err, `unknown command "frobnicate"`)
	require.Contains(t, stderr, "Commands:")

	_, stderr, err = run(t, "migrate", "--bogus")
	require.Equal(t, 2, relaycmd.ExitCode(err), "%v", err)
	require.Contains(t, stderr, "flag provided but not defined")
}

func TestRun_Migrate(t *testing.T) {
	t.Parallel()
	db := testdb.NewEmpty(t)
	out, _, err := run(t, "migrate", "--database-url", db.URL)
	require.NoError(t, err)
	require.Contains(t, out, "applied")
	out, _, err = run(t, "status", "--database-url", db.URL)
	require.NoError(t, err)
	require.Contains(t, out, "backlog:  0 rows")
}

// PostgreSQL goes away (a proxy in between is cut): /readyz turns 503 and
// names it; shutdown still ends in time.
func TestRun_NotReadyWithoutPostgres(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	u, err := url.Parse(db.URL)
	require.NoError(t, err)
	px := newProxy(t, u.Host)
	u.Host = px.Addr()

	b := startBackground(t, "--database-url", u.String(), "--kafka-brokers", kc.Addrs[0], "--lease-ttl", "3s", "--poll-interval", "100ms")
	b.waitGet("/readyz", 20*time.Second, func(code int, body string) bool {
		return code == http.StatusOK && strings.Contains(body, "lease: leader (term")
	})
	px.Cut()
	_, body := b.waitGet("/readyz", 20*time.Second, func(code int, _ string) bool { return code == http.StatusServiceUnavailable })
	require.Contains(t, body, "not ready: postgres does not answer")
	took, err := b.stop()
	require.NoError(t, err)
	require.Less(t, took, 10*time.Second)
}

// A message larger than --max-message-bytes is parked by the relay: the
// parked metric counts it, later rows flow, and status shows it.
func TestRun_ParkedRowInMetricsAndStatus(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 1)
	insertEvents(t, db, "lessons", 1)
	big, err := envelope.New("status-test", struct {
		statusEvent
		Pad string `json:"pad"`
	}{Pad: strings.Repeat("x", 4096)})
	require.NoError(t, err)
	require.NoError(t, outbox.InsertTx(context.Background(), db.Pool, "lessons", big))
	insertEvents(t, db, "lessons", 1)

	b := startBackground(t, "--database-url", db.URL, "--kafka-brokers", kc.Addrs[0], "--max-message-bytes", "2048", "--poll-interval", "100ms")
	_, body := b.waitGet("/metrics", 20*time.Second, func(code int, body string) bool {
		return metricValue(t, body, `pulsebus_relay_parked_total{reason="message_too_large",topic="lessons"}`) == "1"
	})
	require.Equal(t, "2", metricValue(t, body, `pulsebus_relay_events_published_total{topic="lessons"}`))
	require.Contains(t, b.stderr.String(), "outbox row parked")

	out, _, err := run(t, "status", "--database-url", db.URL)
	require.NoError(t, err)
	require.Regexp(t, `(?m)^backlog: +0 rows\nparked: +1 row\n  lessons +1 row, last parked \d+\.\ds ago\n$`, out)
	require.Regexp(t, `(?m)^leader: +\S+-\d+-[0-9a-f]{6}, term 1, lease expires in 1\d\.\ds`, out)
}

// A signal while still connecting is a clean stop, not a failure.
func TestRun_SignalDuringStartIsCleanStop(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr procharness.SyncBuffer
	db, connecting := silentListenerAccepting(t)
	go func() {
		done <- relaycmd.Run(ctx, []string{"run", "--database-url", "postgres://u@" + db + "/x",
			"--connect-timeout", "30s", "--metrics-addr", "127.0.0.1:0"}, io.Discard, &stderr)
	}()
	select {
	case <-connecting:
	case <-time.After(10 * time.Second):
		t.Fatal("Run never connected to the database")
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
		require.Contains(t, stderr.String(), "relay stopped during start-up")
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// --max-payload-bytes raises the envelope payload limit: with the default
// (900 KiB) a 950 KiB payload is parked however large --max-message-bytes
// is; with the flag raised, it is published. The start-up log warns while
// pulsebus.limits lets producers write payloads the relay would park.
func TestRun_MaxPayloadBytesLetsALargePayloadThrough(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "media", 1)
	exec(t, db, `UPDATE pulsebus.limits SET max_payload_bytes = 1000000`)
	const payloadBytes = 950 << 10
	big, err := envelope.New("media-service", statusEvent{}, envelope.WithKey("m"))
	require.NoError(t, err)
	big.Payload = []byte(`"` + strings.Repeat("x", payloadBytes-2) + `"`)
	require.NoError(t, outbox.InsertTx(context.Background(), db.Pool, "media", big))

	a := startBackground(t, "--database-url", db.URL, "--kafka-brokers", kc.Addrs[0], "--max-message-bytes", "3000000",
		"--poll-interval", "100ms", "--name", "default-payload-limit")
	a.waitGet("/metrics", 30*time.Second, func(code int, body string) bool {
		return metricValue(t, body, `pulsebus_relay_parked_total{reason="invalid_envelope",topic="media"}`) == "1"
	})
	_, err = a.stop()
	require.NoError(t, err)
	require.Contains(t, a.stderr.String(), "pulsebus.limits lets producers write events this relay parks: raise --max-payload-bytes")
	out, _, err := run(t, "parked", "list", "--database-url", db.URL)
	require.NoError(t, err)
	require.Contains(t, out, fmt.Sprintf("envelope: payload: size %d exceeds limit %d", payloadBytes, envelope.DefaultMaxPayloadBytes))
	_, _, err = run(t, "parked", "requeue", "--database-url", db.URL, "--all")
	require.NoError(t, err)

	b := startBackground(t, "--database-url", db.URL, "--kafka-brokers", kc.Addrs[0], "--max-message-bytes", "3000000",
		"--max-payload-bytes", "1000000", "--poll-interval", "100ms", "--name", "raised-payload-limit")
	require.Eventually(t, recordsAre(kc, "media", 1), 30*time.Second, 20*time.Millisecond, "the 950 KiB event published")
	recs := kc.ReadAll(t, "media")
	require.Len(t, recs[0].Value, payloadBytes)
	require.Equal(t, big.ID, ceID(recs[0]))
	require.Eventually(t, rowsAre(db, "outbox", 0), 10*time.Second, 20*time.Millisecond)
	require.Zero(t, count(t, db, "outbox_parked", "true"))
	require.NotContains(t, b.stderr.String(), "pulsebus.limits lets producers write events this relay parks")
}
