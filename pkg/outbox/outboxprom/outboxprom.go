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

// latencyBuckets covers 0.5 ms to 30 s, roughly 1-2.5-5 per decade.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// batchSizeBuckets covers 1 to 10,000 rows per batch.
var batchSizeBuckets = []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// knownReasons are the reason label values reported at zero from the start.
var knownReasons = []string{
	outbox.ReasonMessageTooLarge, outbox.ReasonInvalidTopic, outbox.ReasonNotAuthorized,
	outbox.ReasonInvalidRecord, outbox.ReasonInvalidEnvelope, outbox.ReasonUnknownTopic,
	outbox.ReasonBrokerError, outbox.ReasonBrokerUnavailable, outbox.ReasonDatabase,
	outbox.ReasonLeaseLost,
}

// Metrics implements [outbox.RelayHooks] by updating Prometheus metrics, and
// [prometheus.Collector] so it can be registered: create it with [New], then
// register it once and pass it as RelayConfig.Hooks. All methods are safe
// for concurrent use.
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

var _ outbox.RelayHooks = (*Metrics)(nil)
var _ prometheus.Collector = (*Metrics)(nil)

// New returns unregistered relay metrics.
func New() *Metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: Namespace, Subsystem: Subsystem, Name: name, Help: help}
	}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: Subsystem, Name: name, Help: help, Buckets: buckets,
		})
	}
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts(opts("events_published_total",
			"Events the Kafka broker acknowledged, by topic.")), []string{"topic"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts(opts("publish_errors_total",
			"Failed publish attempts (transient or permanent), by reason.")), []string{"reason"}),
		batchSize: hist("batch_size",
			"Rows per claimed outbox batch.", batchSizeBuckets),
		publishDuration: hist("publish_duration_seconds",
			"Time to produce one batch, from the first produce request to the last acknowledgement.", latencyBuckets),
		commitToAck: hist("commit_to_ack_seconds",
			"Per event, time from the outbox row's created_at to the broker's acknowledgement.", latencyBuckets),
		backlogRows: prometheus.NewGauge(prometheus.GaugeOpts(opts("backlog_rows",
			"Rows in pulsebus.outbox at the last measurement."))),
		backlogAge: prometheus.NewGauge(prometheus.GaugeOpts(opts("backlog_oldest_age_seconds",
			"Age of the oldest row in pulsebus.outbox at the last measurement; 0 when empty."))),
		leader: prometheus.NewGauge(prometheus.GaugeOpts(opts("leader",
			"1 while this relay holds the leader lease and publishes, else 0."))),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts(opts("parked_total",
			"Outbox rows moved to pulsebus.outbox_parked because the broker refuses them for good, by topic and reason.")),
			[]string{"topic", "reason"}),
	}
	for _, r := range knownReasons {
		m.publishErrors.WithLabelValues(r)
	}
	return m
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

// Published adds n to pulsebus_relay_events_published_total{topic}.
func (m *Metrics) Published(topic string, n int) {
	m.published.WithLabelValues(topic).Add(float64(n))
}

// PublishError increments pulsebus_relay_publish_errors_total{reason}.
func (m *Metrics) PublishError(reason string) {
	m.publishErrors.WithLabelValues(reason).Inc()
}

// Batch observes pulsebus_relay_batch_size and
// pulsebus_relay_publish_duration_seconds.
func (m *Metrics) Batch(size int, publishDuration time.Duration) {
	m.batchSize.Observe(float64(size))
	m.publishDuration.Observe(publishDuration.Seconds())
}

// CommitToAck observes pulsebus_relay_commit_to_ack_seconds.
func (m *Metrics) CommitToAck(d time.Duration) {
	m.commitToAck.Observe(d.Seconds())
}

// Backlog sets pulsebus_relay_backlog_rows and
// pulsebus_relay_backlog_oldest_age_seconds.
func (m *Metrics) Backlog(rows int64, oldestAge time.Duration) {
	m.backlogRows.Set(float64(rows))
	m.backlogAge.Set(oldestAge.Seconds())
}

// Leader sets pulsebus_relay_leader to 1 or 0.
func (m *Metrics) Leader(isLeader bool) {
	if isLeader {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

// Parked increments pulsebus_relay_parked_total{topic,reason}.
func (m *Metrics) Parked(topic, reason string) {
	m.parked.WithLabelValues(topic, reason).Inc()
}
