package relaycmd_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// A fresh relay exports the parked gauges at 0 from its first scrape; the
// first parked row turns them to 1 (what PulseBusOutboxRowsParked alerts
// on), and a restarted relay reports the row from its first scrape, while
// the parked_total counter starts again without it.
func TestRun_ParkedGaugesFromFirstScrapeAndAfterRestart(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 1)
	args := []string{"--database-url", db.URL, "--kafka-brokers", kc.Addrs[0], "--max-message-bytes", "2048",
		"--poll-interval", "100ms", "--backlog-interval", "100ms", "--lease-ttl", "3s"}

	b := startBackground(t, args...)
	_, body := b.waitGet("/metrics", 20*time.Second, func(code int, _ string) bool { return code == http.StatusOK })
	require.Equal(t, "0", metricValue(t, body, "pulsebus_relay_parked_rows"), "parked rows exist at 0 from the first scrape")
	require.Equal(t, "0", metricValue(t, body, "pulsebus_relay_parked_oldest_age_seconds"))
	require.Equal(t, "0", metricValue(t, body, "pulsebus_relay_parked_read_errors_total"))
	for _, reason := range []outbox.Reason{outbox.ReasonMessageTooLarge, outbox.ReasonBrokerUnavailable, outbox.ReasonDatabase} {
		require.Equal(t, "0", metricValue(t, body, `pulsebus_relay_publish_errors_total{reason="`+string(reason)+`"}`), string(reason))
	}

	big, err := envelope.New("metrics-test", struct {
		statusEvent
		Pad string `json:"pad"`
	}{Pad: strings.Repeat("x", 4096)})
	require.NoError(t, err)
	require.NoError(t, outbox.InsertTx(context.Background(), db.Pool, "lessons", big))
	// The gauge is read from PostgreSQL at scrape time and sees the row as
	// soon as the parking commits; the counter follows from the hook the
	// relay calls after that commit: a scrape can fall in between.
	b.waitGet("/metrics", 30*time.Second, func(_ int, body string) bool {
		return metricValue(t, body, "pulsebus_relay_parked_rows") == "1" &&
			metricValue(t, body, `pulsebus_relay_parked_total{reason="message_too_large",topic="lessons"}`) == "1"
	})
	_, err = b.stop()
	require.NoError(t, err)

	// Some time passes while the row stays parked: the restarted relay
	// reports it at once, and its age.
	var parkedFor float64
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT extract(epoch FROM clock_timestamp() - parked_at)::float8 FROM pulsebus.outbox_parked`).Scan(&parkedFor))
	b = startBackground(t, args...)
	_, body = b.waitGet("/metrics", 20*time.Second, func(code int, _ string) bool { return code == http.StatusOK })
	require.Equal(t, "1", metricValue(t, body, "pulsebus_relay_parked_rows"), "the parked row after a restart, from the first scrape")
	age, err := strconv.ParseFloat(metricValue(t, body, "pulsebus_relay_parked_oldest_age_seconds"), 64)
	require.NoError(t, err)
	require.GreaterOrEqual(t, age, parkedFor)
	require.Empty(t, metricValue(t, body, `pulsebus_relay_parked_total{reason="message_too_large",topic="lessons"}`),
		"the counter does not survive the restart; the gauge does")
}
