package outboxprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/pulsebus/pkg/outbox"
)

// Namespace and Subsystem prefix every metric name: pulsebus_relay_*.
const (
	Namespace = "pulsebus"
	Subsystem = "relay"
)

// DefaultLatencyBuckets are the buckets of the publish duration and
// commit-to-ack histograms, in seconds: 0.5 ms to 30 s, roughly 1-2.5-5
// per decade.
var DefaultLatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// DefaultBatchSizeBuckets are the buckets of the batch size histogram: 1
// to 10,000 rows per batch.
var DefaultBatchSizeBuckets = []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// knownReasons are the reason label values reported at zero from the start.
var knownReasons = []outbox.Reason{
	outbox.ReasonMessageTooLarge, outbox.ReasonInvalidTopic, outbox.ReasonNotAuthorized,
	outbox.ReasonInvalidRecord, outbox.ReasonInvalidEnvelope, outbox.ReasonUnknownTopic,
	outbox.ReasonBrokerError, outbox.ReasonBrokerUnavailable, outbox.ReasonDatabase,
	outbox.ReasonLeaseLost,
}

// Option customises [New].
type Option func(*options)

type options struct {
	latencyBuckets   []float64
	batchSizeBuckets []float64
	constLabels      prometheus.Labels
}

// WithLatencyBuckets sets the buckets of the publish duration and
// commit-to-ack histograms. Defaults to DefaultLatencyBuckets.
func WithLatencyBuckets(b []float64) Option { return func(o *options) { o.latencyBuckets = b } }

// WithBatchSizeBuckets sets the batch size histogram's buckets. Defaults to
// DefaultBatchSizeBuckets.
func WithBatchSizeBuckets(b []float64) Option { return func(o *options) { o.batchSizeBuckets = b } }

// WithConstLabels adds labels to every metric, for a process that runs
// several relays (e.g. {"relay": "billing"}). Defaults to none.
func WithConstLabels(l prometheus.Labels) Option { return func(o *options) { o.constLabels = l } }

// Metrics updates Prometheus metrics from the relay's observations and is a
// [prometheus.Collector]: create it with [New], register it once, and pass
// [Metrics.Hooks] as RelayConfig.Hooks. It is safe for concurrent use.
type Metrics struct {
	published       *prometheus.CounterVec
	publishErrors   *prometheus.CounterVec
	batchSize       prometheus.Histogram
	publishDuration prometheus.Histogram
	commitToAck     prometheus.Histogram
	backlogRows     prometheus.Gauge
	backlogAge      prometheus.Gauge
	leader          prometheus.Gauge
	parked          *prometheus.CounterVec
}

var _ prometheus.Collector = (*Metrics)(nil)

// New returns the relay metrics, not yet registered.
func New(opts ...Option) *Metrics {
	o := options{latencyBuckets: DefaultLatencyBuckets, batchSizeBuckets: DefaultBatchSizeBuckets}
	for _, opt := range opts {
		opt(&o)
	}
	metricOpts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: Namespace, Subsystem: Subsystem, Name: name, Help: help, ConstLabels: o.constLabels}
	}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: Subsystem, Name: name, Help: help, Buckets: buckets, ConstLabels: o.constLabels,
		})
	}
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts(metricOpts("events_published_total",
			"Events the Kafka broker acknowledged, by topic.")), []string{"topic"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts(metricOpts("publish_errors_total",
			"Failed publish attempts (transient or permanent), by reason.")), []string{"reason"}),
		batchSize: hist("batch_size",
			"Rows per claimed outbox batch.", o.batchSizeBuckets),
		publishDuration: hist("publish_duration_seconds",
			"Time to produce one batch, from the first produce request to the last acknowledgement.", o.latencyBuckets),
		commitToAck: hist("commit_to_ack_seconds",
			"Per event, time from the outbox row's created_at to the broker's acknowledgement.", o.latencyBuckets),
		backlogRows: prometheus.NewGauge(prometheus.GaugeOpts(metricOpts("backlog_rows",
			"Rows in pulsebus.outbox at the last measurement."))),
		backlogAge: prometheus.NewGauge(prometheus.GaugeOpts(metricOpts("backlog_oldest_age_seconds",
			"Age of the oldest row in pulsebus.outbox at the last measurement; 0 when empty."))),
		leader: prometheus.NewGauge(prometheus.GaugeOpts(metricOpts("leader",
			"1 while this relay holds the leader lease and publishes, else 0."))),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts(metricOpts("parked_total",
			"Outbox rows moved to pulsebus.outbox_parked because the broker refuses them for good, by topic and reason.")),
			[]string{"topic", "reason"}),
	}
	for _, r := range knownReasons {
		m.publishErrors.WithLabelValues(string(r))
	}
	return m
}

// Hooks returns the relay hooks that update the metrics.
func (m *Metrics) Hooks() outbox.Hooks {
	return outbox.Hooks{
		OnPublished:     m.onPublished,
		OnPublishFailed: m.onPublishFailed,
		OnBatch:         m.onBatch,
		OnCommitToAck:   m.onCommitToAck,
		OnBacklog:       m.onBacklog,
		OnLeader:        m.onLeader,
		OnParked:        m.onParked,
	}
}

// Describe implements [prometheus.Collector].
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements [prometheus.Collector].
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.publishErrors, m.batchSize, m.publishDuration,
		m.commitToAck, m.backlogRows, m.backlogAge, m.leader, m.parked}
}

// onPublished adds n to pulsebus_relay_events_published_total{topic}.
func (m *Metrics) onPublished(topic string, n int) {
	m.published.WithLabelValues(topic).Add(float64(n))
}

// onPublishFailed increments pulsebus_relay_publish_errors_total{reason}.
func (m *Metrics) onPublishFailed(reason outbox.Reason) {
	m.publishErrors.WithLabelValues(string(reason)).Inc()
}

// onBatch observes pulsebus_relay_batch_size and
// pulsebus_relay_publish_duration_seconds.
func (m *Metrics) onBatch(size int, publishDuration time.Duration) {
	m.batchSize.Observe(float64(size))
	m.publishDuration.Observe(publishDuration.Seconds())
}

// onCommitToAck observes pulsebus_relay_commit_to_ack_seconds.
func (m *Metrics) onCommitToAck(d time.Duration) {
	m.commitToAck.Observe(d.Seconds())
}

// onBacklog sets pulsebus_relay_backlog_rows and
// pulsebus_relay_backlog_oldest_age_seconds.
func (m *Metrics) onBacklog(rows int64, oldestAge time.Duration) {
	m.backlogRows.Set(float64(rows))
	m.backlogAge.Set(oldestAge.Seconds())
}

// onLeader sets pulsebus_relay_leader to 1 or 0.
func (m *Metrics) onLeader(isLeader bool) {
	if isLeader {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

// onParked increments pulsebus_relay_parked_total{topic,reason}.
func (m *Metrics) onParked(topic string, reason outbox.Reason) {
	m.parked.WithLabelValues(topic, string(reason)).Inc()
}
