package dispatchprom_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/dispatch/dispatchprom"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T, opts ...dispatchprom.Option) (*dispatchprom.Metrics, *prometheus.Registry) {
	t.Helper()
	m := dispatchprom.New(append([]dispatchprom.Option{dispatchprom.WithClock(func() time.Time { return t0 })}, opts...)...)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m))
	return m, reg
}

func TestMetrics_Handled(t *testing.T) {
	t.Parallel()
	m, reg := setup(t, dispatchprom.WithDurationBuckets([]float64{0.01, 1}), dispatchprom.WithLatencyBuckets([]float64{1, 10}))
	m.Hooks().OnHandled(dispatch.HandledEvent{Handler: "idx", Outcome: dispatch.OutcomeOK, Attempts: 1,
		Duration: 5 * time.Millisecond, EventTime: t0.Add(-2 * time.Second)})
	m.Hooks().OnHandled(dispatch.HandledEvent{Handler: "idx", Outcome: dispatch.OutcomeRetried, Attempts: 3,
		Duration: 500 * time.Millisecond, EventTime: t0.Add(-500 * time.Millisecond)})
	// Dead-lettered: duration counted, no commit-to-handle latency.
	m.Hooks().OnHandled(dispatch.HandledEvent{Handler: "idx", Outcome: dispatch.OutcomeDeadLettered, Attempts: 5,
		Duration: 2 * time.Second, EventTime: t0.Add(-time.Hour)})
	// Skipped duplicates: counted only.
	m.Hooks().OnHandled(dispatch.HandledEvent{Handler: "idx", Outcome: dispatch.OutcomeSkippedDuplicate})
	// A malformed message dead-lettered without a time: no latency.
	m.Hooks().OnHandled(dispatch.HandledEvent{Handler: "hook", Outcome: dispatch.OutcomeDeadLettered})
	// An event time in the future (clock skew) is observed as 0, not negative.
	m.Hooks().OnHandled(dispatch.HandledEvent{Handler: "hook", Outcome: dispatch.OutcomeOK, Attempts: 1,
		Duration: time.Millisecond, EventTime: t0.Add(time.Minute)})

	want := `
# HELP pulsebus_consumer_events_handled_total Events handled, by handler and outcome (ok, retried, dead_lettered, skipped_duplicate, held).
# TYPE pulsebus_consumer_events_handled_total counter
pulsebus_consumer_events_handled_total{handler="hook",outcome="dead_lettered"} 1
pulsebus_consumer_events_handled_total{handler="hook",outcome="ok"} 1
pulsebus_consumer_events_handled_total{handler="idx",outcome="dead_lettered"} 1
pulsebus_consumer_events_handled_total{handler="idx",outcome="ok"} 1
pulsebus_consumer_events_handled_total{handler="idx",outcome="retried"} 1
pulsebus_consumer_events_handled_total{handler="idx",outcome="skipped_duplicate"} 1
# HELP pulsebus_consumer_handler_duration_seconds Time spent per event in the handler, its transaction and its retries.
# TYPE pulsebus_consumer_handler_duration_seconds histogram
pulsebus_consumer_handler_duration_seconds_bucket{handler="hook",le="0.01"} 2
pulsebus_consumer_handler_duration_seconds_bucket{handler="hook",le="1"} 2
pulsebus_consumer_handler_duration_seconds_bucket{handler="hook",le="+Inf"} 2
pulsebus_consumer_handler_duration_seconds_sum{handler="hook"} 0.001
pulsebus_consumer_handler_duration_seconds_count{handler="hook"} 2
pulsebus_consumer_handler_duration_seconds_bucket{handler="idx",le="0.01"} 1
pulsebus_consumer_handler_duration_seconds_bucket{handler="idx",le="1"} 2
pulsebus_consumer_handler_duration_seconds_bucket{handler="idx",le="+Inf"} 3
pulsebus_consumer_handler_duration_seconds_sum{handler="idx"} 2.505
pulsebus_consumer_handler_duration_seconds_count{handler="idx"} 3
# HELP pulsebus_consumer_commit_to_handle_seconds Time from an event's ce_time to its successful handling.
# TYPE pulsebus_consumer_commit_to_handle_seconds histogram
pulsebus_consumer_commit_to_handle_seconds_bucket{handler="hook",le="1"} 1
pulsebus_consumer_commit_to_handle_seconds_bucket{handler="hook",le="10"} 1
pulsebus_consumer_commit_to_handle_seconds_bucket{handler="hook",le="+Inf"} 1
pulsebus_consumer_commit_to_handle_seconds_sum{handler="hook"} 0
pulsebus_consumer_commit_to_handle_seconds_count{handler="hook"} 1
pulsebus_consumer_commit_to_handle_seconds_bucket{handler="idx",le="1"} 1
pulsebus_consumer_commit_to_handle_seconds_bucket{handler="idx",le="10"} 2
pulsebus_consumer_commit_to_handle_seconds_bucket{handler="idx",le="+Inf"} 2
pulsebus_consumer_commit_to_handle_seconds_sum{handler="idx"} 2.5
pulsebus_consumer_commit_to_handle_seconds_count{handler="idx"} 2
`
	require.Equal(t, strings.TrimLeft(want, "\n"), gather(t, reg, dispatchprom.NameEventsHandled, dispatchprom.NameHandlerDuration, dispatchprom.NameCommitToHandle))
}

func TestMetrics_RetriesDeadLettersRebalances(t *testing.T) {
	t.Parallel()
	m, reg := setup(t)
	m.Hooks().OnRetry("hook", 1, errors.New("503"))
	m.Hooks().OnRetry("hook", 2, errors.New("503"))
	m.Hooks().OnRetry("idx", 1, errors.New("deadlock"))
	m.Hooks().OnDeadLetter(dispatch.DeadLetterEvent{Handler: "hook", Topic: "t", Partition: 2, Offset: 7, Attempts: 3, Err: errors.New("503")})
	m.Hooks().OnRebalance(map[string][]int{"t": {0, 1}})
	m.Hooks().OnRebalance(map[string][]int{})

	want := `
# HELP pulsebus_consumer_retries_total Handler attempts that failed and were retried.
# TYPE pulsebus_consumer_retries_total counter
pulsebus_consumer_retries_total{handler="hook"} 2
pulsebus_consumer_retries_total{handler="idx"} 1
# HELP pulsebus_consumer_dead_letters_total Messages dead-lettered, by handler.
# TYPE pulsebus_consumer_dead_letters_total counter
pulsebus_consumer_dead_letters_total{handler="hook"} 1
# HELP pulsebus_consumer_rebalances_total Consumer group generations this member joined.
# TYPE pulsebus_consumer_rebalances_total counter
pulsebus_consumer_rebalances_total 2
`
	require.Equal(t, strings.TrimLeft(want, "\n"), gather(t, reg, dispatchprom.NameRetries, dispatchprom.NameDeadLetters, dispatchprom.NameRebalances))
}

// A rebalance deletes the lag of partitions the member lost and keeps the
// others.
func TestMetrics_LagDroppedAfterRebalance(t *testing.T) {
	t.Parallel()
	m, reg := setup(t)
	m.Hooks().OnRebalance(map[string][]int{"a": {0, 1}, "b": {0}})
	m.Hooks().OnLag("idx", "a", 0, 10)
	m.Hooks().OnLag("idx", "a", 1, 20)
	m.Hooks().OnLag("hook", "a", 1, 5)
	m.Hooks().OnLag("idx", "b", 0, 0)
	m.Hooks().OnLag("idx", "a", 0, 3) // replaces 10

	require.Equal(t, 4, strings.Count(gather(t, reg, dispatchprom.NameLag), "\npulsebus_consumer_lag{"))
	m.Hooks().OnRebalance(map[string][]int{"a": {1}})
	want := `
# HELP pulsebus_consumer_lag Messages a handler is behind on a partition this member owns: high watermark minus next offset.
# TYPE pulsebus_consumer_lag gauge
pulsebus_consumer_lag{handler="hook",partition="1",topic="a"} 5
pulsebus_consumer_lag{handler="idx",partition="1",topic="a"} 20
`
	require.Equal(t, strings.TrimLeft(want, "\n"), gather(t, reg, dispatchprom.NameLag))

	m.Hooks().OnRebalance(nil)
	require.Empty(t, gather(t, reg, dispatchprom.NameLag))
}

// The stalled workers gauge counts each stalled worker once per handler,
// until it recovers; offset resets are counted.
func TestMetrics_StalledWorkersAndOffsetResets(t *testing.T) {
	t.Parallel()
	m, reg := setup(t)
	cause := errors.New("offset write failed")
	m.Hooks().OnStall(dispatch.StallEvent{Handler: "idx", Topic: "a", Partition: 0, Stalled: true, Cause: cause})
	m.Hooks().OnStall(dispatch.StallEvent{Handler: "idx", Topic: "a", Partition: 0, Stalled: true, Cause: cause}) // again: counted once
	m.Hooks().OnStall(dispatch.StallEvent{Handler: "idx", Topic: "a", Partition: 1, Stalled: true})
	m.Hooks().OnStall(dispatch.StallEvent{Handler: "hook", Topic: "a", Partition: 1, Stalled: true})
	m.Hooks().OnStall(dispatch.StallEvent{Handler: "hook", Topic: "a", Partition: 1})
	m.Hooks().OnStall(dispatch.StallEvent{Handler: "hook", Topic: "a", Partition: 1}) // again: no negative count
	m.Hooks().OnOffsetReset(dispatch.OffsetResetEvent{Handler: "idx", Topic: "a", Partition: 0, Saved: 99, Low: 0, High: 3})
	want := `
# HELP pulsebus_consumer_stalled_workers Handler workers (one per handler and partition) that have not advanced for the stall timeout while messages wait.
# TYPE pulsebus_consumer_stalled_workers gauge
pulsebus_consumer_stalled_workers{handler="hook"} 0
pulsebus_consumer_stalled_workers{handler="idx"} 2
# HELP pulsebus_consumer_offset_resets_total Handler offsets found beyond their partition's end (a recreated topic, a replay past the end) and reset to the partition's start.
# TYPE pulsebus_consumer_offset_resets_total counter
pulsebus_consumer_offset_resets_total{handler="idx"} 1
`
	require.Equal(t, strings.TrimLeft(want, "\n"), gather(t, reg, dispatchprom.NameStalledWorkers, dispatchprom.NameOffsetResets))
}

// Two consumers in one process keep apart with const labels, and the
// pedantic registry accepts every metric.
func TestMetrics_ConstLabelsAndLint(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	a := dispatchprom.New(dispatchprom.WithConstLabels(prometheus.Labels{"group": "a"}))
	b := dispatchprom.New(dispatchprom.WithConstLabels(prometheus.Labels{"group": "b"}))
	require.NoError(t, reg.Register(a))
	require.NoError(t, reg.Register(b))
	require.Error(t, reg.Register(dispatchprom.New(dispatchprom.WithConstLabels(prometheus.Labels{"group": "a"}))),
		"registering the same metrics twice must fail")
	a.Hooks().OnRetry("h", 1, nil)
	b.Hooks().OnRetry("h", 1, nil)
	b.Hooks().OnRetry("h", 2, nil)
	want := `
# HELP pulsebus_consumer_retries_total Handler attempts that failed and were retried.
# TYPE pulsebus_consumer_retries_total counter
pulsebus_consumer_retries_total{group="a",handler="h"} 1
pulsebus_consumer_retries_total{group="b",handler="h"} 2
`
	require.Equal(t, strings.TrimLeft(want, "\n"), gather(t, reg, dispatchprom.NameRetries))

	a.Hooks().OnHandled(dispatch.HandledEvent{Handler: "h", Outcome: dispatch.OutcomeOK, EventTime: time.Now()})
	a.Hooks().OnLag("h", "t", 0, 1)
	a.Hooks().OnRebalance(map[string][]int{"t": {0}})
	a.Hooks().OnDeadLetter(dispatch.DeadLetterEvent{Handler: "h"})
	_, err := reg.Gather() // the pedantic registry checks the metrics' consistency
	require.NoError(t, err)
}

// gather renders the named metric families in the text exposition format,
// in the order of names (series sorted by labels).
func gather(t *testing.T, reg *prometheus.Registry, names ...string) string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var buf bytes.Buffer
	for _, name := range names {
		i := slices.IndexFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == name })
		if i >= 0 {
			_, err := expfmt.MetricFamilyToText(&buf, mfs[i])
			require.NoError(t, err)
		}
	}
	return buf.String()
}

// InitHandlers creates each handler's counters at 0, so increase() sees
// the first event, retry and dead letter; the histograms and lag wait for
// data.
func TestMetrics_InitHandlers(t *testing.T) {
	t.Parallel()
	m, reg := setup(t)
	m.InitHandlers("idx", "hook")
	want := `
# HELP pulsebus_consumer_events_handled_total Events handled, by handler and outcome (ok, retried, dead_lettered, skipped_duplicate, held).
# TYPE pulsebus_consumer_events_handled_total counter
pulsebus_consumer_events_handled_total{handler="hook",outcome="dead_lettered"} 0
pulsebus_consumer_events_handled_total{handler="hook",outcome="held"} 0
pulsebus_consumer_events_handled_total{handler="hook",outcome="ok"} 0
pulsebus_consumer_events_handled_total{handler="hook",outcome="retried"} 0
pulsebus_consumer_events_handled_total{handler="hook",outcome="skipped_duplicate"} 0
pulsebus_consumer_events_handled_total{handler="idx",outcome="dead_lettered"} 0
pulsebus_consumer_events_handled_total{handler="idx",outcome="held"} 0
pulsebus_consumer_events_handled_total{handler="idx",outcome="ok"} 0
pulsebus_consumer_events_handled_total{handler="idx",outcome="retried"} 0
pulsebus_consumer_events_handled_total{handler="idx",outcome="skipped_duplicate"} 0
# HELP pulsebus_consumer_retries_total Handler attempts that failed and were retried.
# TYPE pulsebus_consumer_retries_total counter
pulsebus_consumer_retries_total{handler="hook"} 0
pulsebus_consumer_retries_total{handler="idx"} 0
# HELP pulsebus_consumer_dead_letters_total Messages dead-lettered, by handler.
# TYPE pulsebus_consumer_dead_letters_total counter
pulsebus_consumer_dead_letters_total{handler="hook"} 0
pulsebus_consumer_dead_letters_total{handler="idx"} 0
`
	require.Equal(t, strings.TrimLeft(want, "\n"), gather(t, reg, dispatchprom.NameEventsHandled, dispatchprom.NameRetries,
		dispatchprom.NameDeadLetters, dispatchprom.NameHandlerDuration, dispatchprom.NameLag))

	m.Hooks().OnDeadLetter(dispatch.DeadLetterEvent{Handler: "hook"})
	require.Contains(t, gather(t, reg, dispatchprom.NameDeadLetters), `pulsebus_consumer_dead_letters_total{handler="hook"} 1`)
}
