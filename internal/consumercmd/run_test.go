package consumercmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/consumercmd"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// run with a webhook and a log handler: every event reaches the endpoint as
// a CloudEvent, 503s are retried, the log handler writes one line per event,
// the metrics and health endpoints answer, and cancelling the context (what
// SIGTERM does) returns nil. offsets then shows no lag, and lag once more
// events arrive while the consumer is down.
func TestRun_WebhookAndLogHandlers(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	h := newHook(t)
	envs := lessons(t, 30)
	// The first attempt at every third event fails with 503.
	flaky := map[string]bool{}
	for i := 0; i < len(envs); i += 3 {
		flaky[envs[i].ID] = true
	}
	h.setStatus(func(r *http.Request, n int) int {
		if n == 1 && flaky[r.Header.Get("ce-id")] {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	b.produce(t, envs)

	r := start(t, b.runArgs(
		"name=search,types=lesson.*|quiz.submitted,webhook="+h.URL+"/hooks/search,timeout=5s,header=X-Team:search",
		"name=audit,types=*,log=info",
	))
	base := r.metricsURL()
	testpoll.Until(t, 60*time.Second, 25*time.Millisecond, "30 events delivered", func() bool { return len(h.delivered("/hooks/search")) == len(envs) })

	// The CloudEvents binary mode, checked on one event.
	want := envs[7]
	var got *delivery
	for _, d := range h.requests() {
		if d.header.Get("ce-id") == want.ID && d.status == http.StatusOK {
			got = &d
		}
	}
	require.NotNil(t, got)
	require.Equal(t, want.Payload, got.body)
	require.Equal(t, "1.0", got.header.Get("ce-specversion"))
	require.Equal(t, "lesson.published", got.header.Get("ce-type"))
	require.Equal(t, "lessons-api", got.header.Get("ce-source"))
	require.Equal(t, envelope.FormatTime(want.Time), got.header.Get("ce-time"))
	require.Equal(t, "school-1", got.header.Get("ce-tenant"))
	require.Empty(t, got.header.Get("ce-partitionkey"), "not an attribute of the event")
	require.Equal(t, "application/json", got.header.Get("Content-Type"))
	require.Equal(t, want.ID, got.header.Get("Idempotency-Key"))
	require.Equal(t, "search", got.header.Get("X-Team"))

	// Metrics: outcomes add up, retries counted, lag and latency present.
	// Each handler has its own workers: the audit handler's count is
	// waited for too, not assumed from the search handler's.
	testpoll.Until(t, 30*time.Second, 25*time.Millisecond, "metrics of 30 handled events per handler", func() bool {
		ok := scrape(t, base, `pulsebus_consumer_events_handled_total{handler="search",outcome="ok"}`)
		retried := scrape(t, base, `pulsebus_consumer_events_handled_total{handler="search",outcome="retried"}`)
		audited := scrape(t, base, `pulsebus_consumer_events_handled_total{handler="audit",outcome="ok"}`)
		return max(ok, 0)+max(retried, 0) == float64(len(envs)) && audited == float64(len(envs))
	})
	require.Equal(t, float64(len(flaky)), scrape(t, base, `pulsebus_consumer_events_handled_total{handler="search",outcome="retried"}`))
	require.Equal(t, float64(len(flaky)), scrape(t, base, `pulsebus_consumer_retries_total{handler="search"}`))
	require.Equal(t, float64(len(envs)), scrape(t, base, `pulsebus_consumer_events_handled_total{handler="audit",outcome="ok"}`))
	require.Equal(t, float64(len(envs)), scrape(t, base, `pulsebus_consumer_commit_to_handle_seconds_count{handler="search"}`))
	require.GreaterOrEqual(t, scrape(t, base, `pulsebus_consumer_rebalances_total`), 1.0)
	testpoll.Until(t, 10*time.Second, 25*time.Millisecond, "lag gauges at 0", func() bool {
		return scrape(t, base, `pulsebus_consumer_lag{handler="search",partition="0",topic="edupulse.events"}`) == 0
	})
	require.NotEqual(t, -1.0, scrape(t, base, `go_goroutines`), "Go collector registered")
	require.Equal(t, http.StatusOK, httpStatus(t, base+"/healthz"))
	require.Equal(t, http.StatusOK, httpStatus(t, base+"/readyz"))

	// The log handler: one line per event with where it was read from.
	logged := map[string]map[string]any{}
	for _, l := range jsonLines(r.logs) {
		if l["msg"] == "event" && l["handler"] == "audit" {
			logged[l["id"].(string)] = l
		}
	}
	require.Len(t, logged, len(envs))
	l := logged[want.ID]
	require.Equal(t, "lesson.published", l["type"])
	require.Equal(t, want.Key, l["key"])
	require.Equal(t, b.topic, l["topic"])
	require.Contains(t, l, "partition")
	require.Contains(t, l, "offset")

	require.NoError(t, r.stop(), "a cancelled run drains and returns nil")
	require.Contains(t, r.logs.String(), "consumer exited cleanly")

	// offsets: every handler at the high watermark.
	out, _, err := command(t, append([]string{"offsets"}, b.admin()...)...)
	require.NoError(t, err)
	require.Regexp(t, `(?m)^audit\s+1\s+3\s+0\s`, out)
	require.Regexp(t, `(?m)^search\s+1\s+3\s+0\s`, out)
	out, _, err = command(t, append([]string{"offsets", "--by-partition"}, b.admin()...)...)
	require.NoError(t, err)
	require.Contains(t, out, "HANDLER")
	ends := b.kc.EndOffsets(t, b.topic)
	for _, handler := range []string{"audit", "search"} {
		for p, end := range ends {
			require.Regexp(t, fmt.Sprintf(`(?m)^%s\s+%s\s+%d\s+%d\s+%d\s+0\s`, handler, b.topic, p, end, end), out)
		}
	}

	// Five more events while the consumer is down: lag 5 per handler.
	b.produce(t, lessons(t, 5))
	out, _, err = command(t, append([]string{"offsets", "--json", "--by-partition"}, b.admin()...)...)
	require.NoError(t, err)
	var rows []struct {
		Handler       string `json:"handler"`
		Partition     int    `json:"partition"`
		NextOffset    int64  `json:"next_offset"`
		HighWatermark int64  `json:"high_watermark"`
		Lag           int64  `json:"lag"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	require.Len(t, rows, 6)
	lag := map[string]int64{}
	for _, row := range rows {
		require.Equal(t, row.HighWatermark-row.NextOffset, row.Lag)
		lag[row.Handler] += row.Lag
	}
	require.Equal(t, map[string]int64{"audit": 5, "search": 5}, lag)
	out, _, err = command(t, append([]string{"offsets", "--json"}, b.admin()...)...)
	require.NoError(t, err)
	var sums []struct {
		Handler    string   `json:"handler"`
		Topics     []string `json:"topics"`
		Partitions int      `json:"partitions"`
		Lag        int64    `json:"lag"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &sums))
	require.Len(t, sums, 2)
	for _, s := range sums {
		require.Equal(t, []string{b.topic}, s.Topics)
		require.Equal(t, 3, s.Partitions)
		require.Equal(t, lag[s.Handler], s.Lag)
	}
}

// Cancelling the context while a webhook call is in flight waits for it,
// saves the offset and returns nil: a restart does not deliver it again.
func TestRun_DrainsInFlightOnCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	h := newHook(t)
	arrived := make(chan struct{})
	release := make(chan struct{})
	var once bool
	h.setStatus(func(r *http.Request, n int) int {
		if !once {
			once = true
			close(arrived)
			<-release
		}
		return http.StatusOK
	})
	b.produce(t, lessons(t, 1))
	r := start(t, b.runArgs("name=hook,types=*,webhook="+h.URL))
	select {
	case <-arrived:
	case <-time.After(60 * time.Second):
		t.Fatal("the webhook call never arrived")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	// The run must wait for the in-flight call: it cannot return before
	// release, however long that takes. Give it a moment to (wrongly) return.
	select {
	case err := <-stopped:
		t.Fatalf("run returned (%v) while a handler was in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after the in-flight call finished")
	}
	offs, err := (&dispatch.Admin{Pool: b.db.Pool}).ListOffsets(context.Background(), b.group)
	require.NoError(t, err)
	require.Len(t, offs, 1)
	require.Equal(t, int64(1), offs[0].NextOffset, "the drained event's offset was saved")
	require.Len(t, h.delivered("/"), 1)
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	_, _, err := command(t, "--help")
	require.Equal(t, 0, consumercmd.ExitCode(err))
	_, _, err = command(t, "run", "--help")
	require.Equal(t, 0, consumercmd.ExitCode(err))
	_, _, err = command(t, "dead-letters", "redrive", "--help")
	require.Equal(t, 0, consumercmd.ExitCode(err))
	_, _, err = command(t, "frobnicate")
	require.Equal(t, 2, consumercmd.ExitCode(err))
	_, _, err = command(t, "run", "--no-such-flag")
	require.Equal(t, 2, consumercmd.ExitCode(err))
	_, _, err = command(t, "offsets", "stray")
	require.Equal(t, 2, consumercmd.ExitCode(err))
	require.Equal(t, 1, consumercmd.ExitCode(fmt.Errorf("connect: refused")))
	require.Equal(t, 0, consumercmd.ExitCode(nil))
}
