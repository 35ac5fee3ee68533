package outboxprom_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/outbox"
	"github.com/edupulse/pulsebus/pkg/outbox/outboxprom"
)

// setup returns the hooks of new metrics, registered in a new registry.
func setup(t *testing.T, opts ...outboxprom.Option) (outbox.Hooks, *prometheus.Registry) {
	t.Helper()
	m := outboxprom.New(opts...)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m))
	return m.Hooks(), reg
}

func family(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	t.Fatalf("metric %s not gathered", name)
	return nil
}

// value returns the counter or gauge value of the series of name with
// exactly the given label pairs.
func value(t *testing.T, reg *prometheus.Registry, name string, labelPairs ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labelPairs); i += 2 {
		want[labelPairs[i]] = labelPairs[i+1]
	}
	for _, mt := range family(t, reg, name).GetMetric() {
		got := map[string]string{}
		for _, lp := range mt.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if maps.Equal(got, want) {
			if c := mt.GetCounter(); c != nil {
				return c.GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

func TestMetrics_NamesAndLabelsMatchTheDashboard(t *testing.T) {
	t.Parallel()
	m, reg := setup(t)
	m.OnPublished("lessons", 1)
	m.OnPublishFailed(outbox.ReasonBrokerUnavailable)
	m.OnBatch(1, time.Millisecond)
	m.OnCommitToAck(time.Millisecond)
	m.OnBacklog(1, time.Second)
	m.OnLeader(true)
	m.OnParked("lessons", outbox.ReasonMessageTooLarge)

	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]string{}
	for _, mf := range mfs {
		var labels []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, lp.GetName())
		}
		got[mf.GetName()] = mf.GetType().String() + "{" + strings.Join(labels, ",") + "}"
	}
	require.Equal(t, map[string]string{
		"pulsebus_relay_events_published_total":     "COUNTER{topic}",
		"pulsebus_relay_publish_errors_total":       "COUNTER{reason}",
		"pulsebus_relay_batch_size":                 "HISTOGRAM{}",
		"pulsebus_relay_publish_duration_seconds":   "HISTOGRAM{}",
		"pulsebus_relay_commit_to_ack_seconds":      "HISTOGRAM{}",
		"pulsebus_relay_backlog_rows":               "GAUGE{}",
		"pulsebus_relay_backlog_oldest_age_seconds": "GAUGE{}",
		"pulsebus_relay_leader":                     "GAUGE{}",
		"pulsebus_relay_parked_total":               "COUNTER{reason,topic}", // gathered labels are sorted
	}, got)

	// A second registration of the same names is refused.
	require.Error(t, reg.Register(outboxprom.New()))
}

func TestMetrics_InitialValues(t *testing.T) {
	t.Parallel()
	_, reg := setup(t)
	// Before any event: leader 0, every known error reason at 0, so
	// alerts on increase() see the first error.
	require.Equal(t, 0.0, value(t, reg, "pulsebus_relay_leader"))
	errs := family(t, reg, "pulsebus_relay_publish_errors_total")
	var reasons []string
	for _, mt := range errs.GetMetric() {
		require.Zero(t, mt.GetCounter().GetValue())
		reasons = append(reasons, mt.GetLabel()[0].GetValue())
	}
	for _, r := range []outbox.Reason{outbox.ReasonBrokerUnavailable, outbox.ReasonDatabase, outbox.ReasonLeaseLost, outbox.ReasonMessageTooLarge, outbox.ReasonUnknownTopic} {
		require.Contains(t, reasons, string(r))
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		require.NotContains(t, []string{"pulsebus_relay_events_published_total", "pulsebus_relay_parked_total"}, mf.GetName(),
			"no topic series before the first event")
	}
}

func TestMetrics_Values(t *testing.T) {
	t.Parallel()
	m, reg := setup(t)
	m.OnPublished("lessons", 3)
	m.OnPublished("lessons", 2)
	m.OnPublished("grades", 7)
	m.OnPublishFailed(outbox.ReasonBrokerUnavailable)
	m.OnPublishFailed(outbox.ReasonBrokerUnavailable)
	m.OnPublishFailed("some_new_reason")
	m.OnParked("lessons", outbox.ReasonMessageTooLarge)
	m.OnParked("lessons", outbox.ReasonMessageTooLarge)
	m.OnParked("grades", outbox.ReasonInvalidEnvelope)
	m.OnBacklog(1234, 2500*time.Millisecond)
	m.OnLeader(true)

	require.Equal(t, 7.0, value(t, reg, "pulsebus_relay_events_published_total", "topic", "grades"))
	require.Equal(t, 5.0, value(t, reg, "pulsebus_relay_events_published_total", "topic", "lessons"))
	require.Equal(t, 2.0, value(t, reg, "pulsebus_relay_parked_total", "topic", "lessons", "reason", "message_too_large"))
	require.Equal(t, 1.0, value(t, reg, "pulsebus_relay_parked_total", "topic", "grades", "reason", "invalid_envelope"))
	require.Len(t, family(t, reg, "pulsebus_relay_parked_total").GetMetric(), 2)
	require.Equal(t, 1234.0, value(t, reg, "pulsebus_relay_backlog_rows"))
	require.Equal(t, 2.5, value(t, reg, "pulsebus_relay_backlog_oldest_age_seconds"))
	require.Equal(t, 1.0, value(t, reg, "pulsebus_relay_leader"))

	errs := map[string]float64{}
	for _, mt := range family(t, reg, "pulsebus_relay_publish_errors_total").GetMetric() {
		errs[mt.GetLabel()[0].GetValue()] = mt.GetCounter().GetValue()
	}
	require.Equal(t, 2.0, errs[string(outbox.ReasonBrokerUnavailable)])
	require.Equal(t, 1.0, errs["some_new_reason"], "reasons outside the known list are counted too")
	require.Equal(t, 0.0, errs[string(outbox.ReasonDatabase)])

	m.OnLeader(false)
	m.OnBacklog(0, 0)
	require.Equal(t, 0.0, value(t, reg, "pulsebus_relay_leader"))
	require.Equal(t, 0.0, value(t, reg, "pulsebus_relay_backlog_rows"))
	require.Equal(t, 0.0, value(t, reg, "pulsebus_relay_backlog_oldest_age_seconds"))
}

func TestMetrics_HistogramBuckets(t *testing.T) {
	t.Parallel()
	m, reg := setup(t)
	m.OnBatch(1, 400*time.Microsecond)
	m.OnBatch(1000, 12*time.Millisecond)
	m.OnBatch(10_000, 45*time.Second) // beyond the last bucket: +Inf only
	for _, d := range []time.Duration{time.Millisecond, 3 * time.Millisecond, 20 * time.Second} {
		m.OnCommitToAck(d)
	}

	bounds := func(name string) []float64 {
		var b []float64
		for _, bk := range family(t, reg, name).GetMetric()[0].GetHistogram().GetBucket() {
			b = append(b, bk.GetUpperBound())
		}
		return b
	}
	for _, name := range []string{"pulsebus_relay_publish_duration_seconds", "pulsebus_relay_commit_to_ack_seconds"} {
		b := bounds(name)
		require.Equal(t, 0.0005, b[0], name)
		require.Equal(t, 30.0, b[len(b)-1], name)
		require.True(t, slices.IsSorted(b))
	}
	b := bounds("pulsebus_relay_batch_size")
	require.Equal(t, 1.0, b[0])
	require.Equal(t, 10000.0, b[len(b)-1])

	cum := func(name string, le float64) uint64 {
		for _, bk := range family(t, reg, name).GetMetric()[0].GetHistogram().GetBucket() {
			if bk.GetUpperBound() == le {
				return bk.GetCumulativeCount()
			}
		}
		t.Fatalf("%s has no bucket le=%g", name, le)
		return 0
	}
	require.Equal(t, uint64(1), cum("pulsebus_relay_publish_duration_seconds", 0.0005))
	require.Equal(t, uint64(2), cum("pulsebus_relay_publish_duration_seconds", 0.025))
	require.Equal(t, uint64(2), cum("pulsebus_relay_publish_duration_seconds", 30))
	require.Equal(t, uint64(1), cum("pulsebus_relay_batch_size", 1))
	require.Equal(t, uint64(2), cum("pulsebus_relay_batch_size", 1000))
	require.Equal(t, uint64(3), cum("pulsebus_relay_batch_size", 10000))
	require.Equal(t, uint64(2), cum("pulsebus_relay_commit_to_ack_seconds", 0.005))
	h := family(t, reg, "pulsebus_relay_batch_size").GetMetric()[0].GetHistogram()
	require.Equal(t, uint64(3), h.GetSampleCount())
	require.Equal(t, 11001.0, h.GetSampleSum())
}

func TestMetrics_ConcurrentUse(t *testing.T) {
	t.Parallel()
	m, reg := setup(t)
	const goroutines, each = 8, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m.OnPublished(fmt.Sprintf("t%d", i%4), 1)
				m.OnCommitToAck(time.Duration(i) * time.Microsecond)
				m.OnLeader(g%2 == 0)
				if _, err := reg.Gather(); i%100 == 0 && err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	var total float64
	for _, mt := range family(t, reg, "pulsebus_relay_events_published_total").GetMetric() {
		total += mt.GetCounter().GetValue()
	}
	require.Equal(t, float64(goroutines*each), total)
	require.Equal(t, uint64(goroutines*each), family(t, reg, "pulsebus_relay_commit_to_ack_seconds").GetMetric()[0].GetHistogram().GetSampleCount())
}

func TestNew_Options(t *testing.T) {
	t.Parallel()
	m, reg := setup(t,
		outboxprom.WithConstLabels(prometheus.Labels{"relay": "billing"}),
		outboxprom.WithLatencyBuckets([]float64{0.1, 1}),
		outboxprom.WithBatchSizeBuckets([]float64{10, 100}),
	)
	m.OnBatch(5, 50*time.Millisecond)
	m.OnCommitToAck(time.Second)
	require.Equal(t, 0.0, value(t, reg, "pulsebus_relay_leader", "relay", "billing"), "const labels on every metric")
	for name, want := range map[string][]float64{
		"pulsebus_relay_publish_duration_seconds": {0.1, 1},
		"pulsebus_relay_commit_to_ack_seconds":    {0.1, 1},
		"pulsebus_relay_batch_size":               {10, 100},
	} {
		var got []float64
		for _, bk := range family(t, reg, name).GetMetric()[0].GetHistogram().GetBucket() {
			got = append(got, bk.GetUpperBound())
		}
		require.Equal(t, want, got, name)
	}
}
