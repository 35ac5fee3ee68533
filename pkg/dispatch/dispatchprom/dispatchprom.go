package dispatchprom

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// Metric names.
const (
	NameEventsHandled   = "pulsebus_consumer_events_handled_total"
	NameHandlerDuration = "pulsebus_consumer_handler_duration_seconds"
	NameRetries         = "pulsebus_consumer_retries_total"
	NameDeadLetters     = "pulsebus_consumer_dead_letters_total"
	NameRebalances      = "pulsebus_consumer_rebalances_total"
	NameLag             = "pulsebus_consumer_lag"
	NameCommitToHandle  = "pulsebus_consumer_commit_to_handle_seconds"
	NameStalledWorkers  = "pulsebus_consumer_stalled_workers"
	NameOffsetResets    = "pulsebus_consumer_offset_resets_total"
)

// DefaultDurationBuckets are the buckets of the handler duration histogram,
// in seconds: 0.5 ms to about 33 s.
var DefaultDurationBuckets = prometheus.ExponentialBuckets(0.0005, 2, 17)

// DefaultLatencyBuckets are the buckets of the commit-to-handle histogram,
// in seconds: 1 ms to 10 min, since a consumer catching up handles events
// that are minutes old.
var DefaultLatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Option customises [New].
type Option func(*options)

type options struct {
	durationBuckets []float64
	latencyBuckets  []float64
	constLabels     prometheus.Labels
	now             func() time.Time
}

// WithDurationBuckets sets the handler duration histogram's buckets.
// Defaults to DefaultDurationBuckets.
func WithDurationBuckets(b []float64) Option { return func(o *options) { o.durationBuckets = b } }

// WithLatencyBuckets sets the commit-to-handle histogram's buckets. Defaults
// to DefaultLatencyBuckets.
func WithLatencyBuckets(b []float64) Option { return func(o *options) { o.latencyBuckets = b } }

// WithConstLabels adds labels to every metric, for a process that runs
// several consumers (e.g. {"group": "search"}). Defaults to none.
func WithConstLabels(l prometheus.Labels) Option { return func(o *options) { o.constLabels = l } }

// WithClock sets the clock the commit-to-handle latency is measured with.
// Defaults to time.Now. For tests.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Metrics records the consumer's events ([Metrics.Hooks]) as Prometheus
// metrics and is a [prometheus.Collector]: register it, then pass
// m.Hooks() as Config.Hooks. It is safe for concurrent use.
type Metrics struct {
	handled        *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	retries        *prometheus.CounterVec
	deadLetters    *prometheus.CounterVec
	rebalances     prometheus.Counter
	lag            *prometheus.GaugeVec
	commitToHandle *prometheus.HistogramVec
	stalled        *prometheus.GaugeVec
	offsetResets   *prometheus.CounterVec
	now            func() time.Time

	mu       sync.Mutex
	lagSet   map[lagKey]struct{} // the lag series this member has set
	stallSet map[lagKey]struct{} // the workers counted in stalled
}

type lagKey struct {
	handler, topic string
	partition      int
}

// New returns the consumer metrics, not yet registered.
func New(opts ...Option) *Metrics {
	o := options{durationBuckets: DefaultDurationBuckets, latencyBuckets: DefaultLatencyBuckets, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	cl := o.constLabels
	return &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameEventsHandled, ConstLabels: cl,
			Help: "Events handled, by handler and outcome (ok, retried, dead_lettered, skipped_duplicate, held)."},
			[]string{"handler", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: NameHandlerDuration, ConstLabels: cl,
			Help:    "Time spent per event in the handler, its transaction and its retries.",
			Buckets: o.durationBuckets}, []string{"handler"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameRetries, ConstLabels: cl,
			Help: "Handler attempts that failed and were retried."}, []string{"handler"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameDeadLetters, ConstLabels: cl,
			Help: "Messages dead-lettered, by handler."}, []string{"handler"}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{Name: NameRebalances, ConstLabels: cl,
			Help: "Consumer group generations this member joined."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NameLag, ConstLabels: cl,
			Help: "Messages a handler is behind on a partition this member owns: high watermark minus next offset."},
			[]string{"handler", "topic", "partition"}),
		commitToHandle: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: NameCommitToHandle, ConstLabels: cl,
			Help:    "Time from an event's ce_time to its successful handling.",
			Buckets: o.latencyBuckets}, []string{"handler"}),
		stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: NameStalledWorkers, ConstLabels: cl,
			Help: "Handler workers (one per handler and partition) that have not advanced for the stall timeout while messages wait."},
			[]string{"handler"}),
		offsetResets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: NameOffsetResets, ConstLabels: cl,
			Help: "Handler offsets found beyond their partition's end (a recreated topic, a replay past the end) and reset to the partition's start."},
			[]string{"handler"}),
		now:      o.now,
		lagSet:   map[lagKey]struct{}{},
		stallSet: map[lagKey]struct{}{},
	}
}

// Hooks returns the consumer hooks that feed m: every field is set.
func (m *Metrics) Hooks() dispatch.Hooks {
	return dispatch.Hooks{
		OnHandled:     m.onHandled,
		OnRetry:       m.onRetry,
		OnDeadLetter:  m.onDeadLetter,
		OnRebalance:   m.onRebalance,
		OnLag:         m.onLag,
		OnStall:       m.onStall,
		OnOffsetReset: m.onOffsetReset,
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.handled, m.duration, m.retries, m.deadLetters, m.rebalances, m.lag, m.commitToHandle, m.stalled,
		m.offsetResets}
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

// outcomes are the outcome label values [Metrics.InitHandlers] creates.
var outcomes = []dispatch.Outcome{dispatch.OutcomeOK, dispatch.OutcomeRetried,
	dispatch.OutcomeDeadLettered, dispatch.OutcomeSkippedDuplicate, dispatch.OutcomeHeld}

// InitHandlers creates the counter series of each named handler at zero:
// events handled by every outcome, retries and dead letters. Call it with
// the handlers registered on the consumer before it runs, so that
// increase() and rate() see their first event, retry and dead letter (a
// series born at 1 shows no increase) and dashboards show 0, not "no data".
func (m *Metrics) InitHandlers(handlers ...string) {
	for _, h := range handlers {
		for _, o := range outcomes {
			m.handled.WithLabelValues(h, string(o))
		}
		m.retries.WithLabelValues(h)
		m.deadLetters.WithLabelValues(h)
	}
}

// onHandled counts the event by outcome and observes its duration and, for
// handled events with a time, its commit-to-handle latency.
func (m *Metrics) onHandled(e dispatch.HandledEvent) {
	m.handled.WithLabelValues(e.Handler, string(e.Outcome)).Inc()
	if e.Outcome == dispatch.OutcomeSkippedDuplicate || e.Outcome == dispatch.OutcomeHeld {
		return
	}
	m.duration.WithLabelValues(e.Handler).Observe(e.Duration.Seconds())
	if (e.Outcome == dispatch.OutcomeOK || e.Outcome == dispatch.OutcomeRetried) && !e.EventTime.IsZero() {
		m.commitToHandle.WithLabelValues(e.Handler).Observe(max(0, m.now().Sub(e.EventTime).Seconds()))
	}
}

// onRetry counts a retry.
func (m *Metrics) onRetry(handler string, _ int, _ error) {
	m.retries.WithLabelValues(handler).Inc()
}

// onDeadLetter counts a dead letter.
func (m *Metrics) onDeadLetter(e dispatch.DeadLetterEvent) {
	m.deadLetters.WithLabelValues(e.Handler).Inc()
}

// onRebalance counts the generation and deletes the lag series of
// partitions this member no longer owns.
func (m *Metrics) onRebalance(assigned map[string][]int) {
	m.rebalances.Inc()
	owned := map[lagKey]bool{}
	for topic, parts := range assigned {
		for _, p := range parts {
			owned[lagKey{topic: topic, partition: p}] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.lagSet {
		if !owned[lagKey{topic: k.topic, partition: k.partition}] {
			m.lag.DeleteLabelValues(k.handler, k.topic, strconv.Itoa(k.partition))
			delete(m.lagSet, k)
		}
	}
}

// onLag sets the lag gauge. The first report of a handler also creates its
// stalled workers and offset resets series at 0, so alerts see 0 rather
// than nothing.
func (m *Metrics) onLag(handler, topic string, partition int, lag int64) {
	k := lagKey{handler: handler, topic: topic, partition: partition}
	m.mu.Lock()
	if _, ok := m.lagSet[k]; !ok {
		m.stalled.WithLabelValues(handler).Add(0)
		m.offsetResets.WithLabelValues(handler).Add(0)
	}
	m.lagSet[k] = struct{}{}
	m.lag.WithLabelValues(handler, topic, strconv.Itoa(partition)).Set(float64(lag))
	m.mu.Unlock()
}

// onStall counts the worker in the stalled workers gauge while it is
// stalled.
func (m *Metrics) onStall(e dispatch.StallEvent) {
	k := lagKey{handler: e.Handler, topic: e.Topic, partition: e.Partition}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, counted := m.stallSet[k]
	switch {
	case e.Stalled && !counted:
		m.stallSet[k] = struct{}{}
		m.stalled.WithLabelValues(e.Handler).Inc()
	case !e.Stalled && counted:
		delete(m.stallSet, k)
		m.stalled.WithLabelValues(e.Handler).Dec()
	}
}

// onOffsetReset counts the reset.
func (m *Metrics) onOffsetReset(e dispatch.OffsetResetEvent) {
	m.offsetResets.WithLabelValues(e.Handler).Inc()
}
