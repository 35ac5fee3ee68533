package dispatch

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/internal/kafkaname"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// Defaults of [Config], of [RetryPolicy] (a failing handler is given 5
// attempts within 30 s, and an unreachable or overloaded endpoint or
// database 10 minutes, which rides out a deploy, a restart or a failover)
// and of [WithBatchSize] for [Consumer.HandleBatchTx].
const (
	DefaultFlushInterval     = 500 * time.Millisecond
	DefaultFlushMessages     = 1000
	DefaultCommitInterval    = time.Second
	DefaultSessionTimeout    = 10 * time.Second
	DefaultHeartbeatInterval = time.Second
	DefaultRebalanceTimeout  = 15 * time.Second
	DefaultJoinGroupBackoff  = time.Second
	DefaultDrainTimeout      = 30 * time.Second
	DefaultFetchMaxWait      = 500 * time.Millisecond
	DefaultFetchMaxBytes     = 1 << 20
	DefaultQueueCapacity     = 256
	DefaultDedupeWindow      = 2048
	DefaultTxIdleTimeout     = 30 * time.Second
	DefaultPartitionWatch    = 5 * time.Second
	DefaultStallTimeout      = 2 * time.Minute

	DefaultMaxAttempts     = 5
	DefaultMaxElapsed      = 30 * time.Second
	DefaultRetryFor        = 10 * time.Minute
	DefaultInitialInterval = 100 * time.Millisecond
	DefaultMaxInterval     = 5 * time.Second

	DefaultBatchSize = 500
)

// notifyChannel is the PostgreSQL channel a replay, a redrive or a delete
// that releases a held key notifies, with the JSON payload {"group": ...,
// "handler": ...}; running consumers of that group reload that handler's
// offsets.
const notifyChannel = "pulsebus_handler_offsets"

// Config configures a [Consumer].
type Config struct {
	// Brokers are Kafka seed addresses (host:port). Required.
	Brokers []string
	// Dialer connects to Kafka, with TLS and SASL when needed. Defaults to a
	// plain dialer with a 10 s timeout.
	Dialer *kafka.Dialer
	// Group is the Kafka consumer group and the group_id of the handler
	// offsets; one per deployed service. Required.
	Group string
	// Topics are the topics to consume. Required.
	Topics []string
	// Pool is the PostgreSQL pool holding the pulsebus schema. Required. Each
	// transactional handler holds a connection while it runs, and the
	// consumer keeps one more for LISTEN: size it to the partitions assigned
	// times the transactional handlers, plus a few.
	Pool *pgxpool.Pool
	// Logger receives the consumer's logs. Defaults to slog.Default().
	Logger *slog.Logger
	// Hooks receive events for metrics; nil fields are skipped.
	Hooks Hooks
	// TracerProvider makes the consumer's spans: one "process" span (kind
	// consumer) per event and per-event handler, a child of the trace
	// context the event carries (its traceparent extension), with retries
	// and dead-lettering as span events; the handler runs under it, so a
	// webhook passes it on. Defaults to the global provider
	// (otel.GetTracerProvider), a no-op unless the program installed one.
	TracerProvider trace.TracerProvider
	// Retry is the default retry policy of every handler. Zero fields take
	// the Default* retry constants.
	Retry RetryPolicy
	// Middleware wraps every plain and per-event transactional handler, the
	// first outermost.
	Middleware []Middleware
	// Limits bound decoded envelopes. Defaults to envelope.DefaultLimits().
	Limits *envelope.Limits
	// StartOffset is where a handler starts on a partition for which it has
	// no offset row and the group has no committed offset: kafka.FirstOffset
	// or kafka.LastOffset. Defaults to kafka.FirstOffset, so nothing is
	// missed.
	StartOffset int64
	// FlushInterval bounds how long a plain handler's progress stays only in
	// memory (what is re-delivered after a crash). Defaults to
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// FlushMessages flushes a plain handler's progress after this many
	// messages even before FlushInterval. Defaults to DefaultFlushMessages.
	FlushMessages int
	// CommitInterval is how often the Kafka group offset (the minimum over
	// handlers, for tooling) is committed. Defaults to DefaultCommitInterval.
	CommitInterval time.Duration
	// SessionTimeout is the group session timeout: how long the broker waits
	// for a silent member before moving its partitions. Defaults to
	// DefaultSessionTimeout.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often the member heartbeats, and so how soon
	// it notices a rebalance. Defaults to DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long the broker waits for members to rejoin
	// during a rebalance. Defaults to DefaultRebalanceTimeout.
	RebalanceTimeout time.Duration
	// JoinGroupBackoff is the pause after a failed join. Defaults to
	// DefaultJoinGroupBackoff.
	JoinGroupBackoff time.Duration
	// PartitionWatchInterval is how often the member checks its topics for
	// added partitions; finding some starts a rebalance that assigns them.
	// Defaults to DefaultPartitionWatch.
	PartitionWatchInterval time.Duration
	// DrainTimeout is how long in-flight handlers may run after the context
	// given to Run is done before their own context is cancelled. Defaults
	// to DefaultDrainTimeout.
	DrainTimeout time.Duration
	// FetchMaxWait is the longest a fetch waits at the broker for new data.
	// Defaults to DefaultFetchMaxWait.
	FetchMaxWait time.Duration
	// FetchMaxBytes is the most bytes per fetch and partition (a compressed
	// record batch is held whole while it is read). Defaults to
	// DefaultFetchMaxBytes.
	FetchMaxBytes int
	// QueueCapacity is how many fetched messages each handler's reader
	// buffers per partition. With the batch in hand (128 messages for a
	// plain handler, the batch size for a transactional one, counted twice)
	// it bounds memory: about handlers × partitions × (QueueCapacity + 2 ×
	// batch) × (message size + 300 bytes), plus the dedupe windows. Lower it
	// for large messages. Defaults to DefaultQueueCapacity.
	QueueCapacity int
	// TxIdleTimeout bounds how long a handler transaction may sit idle
	// between statements (idle_in_transaction_session_timeout, set for each
	// handler transaction): PostgreSQL ends the session of a member that
	// froze inside one, releasing its lock on the offset row, so the member
	// that took the partition over is not blocked by it. A transactional
	// handler must not do slow work outside the database inside its
	// transaction for longer. Defaults to DefaultTxIdleTimeout; -1 turns it
	// off (the server's own setting applies), saving a statement per
	// transaction.
	TxIdleTimeout time.Duration
	// DedupeWindow is how many of the latest messages of a partition each
	// handler remembers the event ids (ce_id) of. A message whose id is
	// among them is a duplicate — the relay republishes a batch after a
	// crash between the broker's ack and its commit — and is skipped
	// (OutcomeSkippedDuplicate). The window is rebuilt from Kafka when a
	// handler (re)starts on a partition, by reading up to this many
	// messages before its next offset. Keep it at least the relay's batch
	// size. Costs about 60 bytes per message per handler and partition.
	// Defaults to DefaultDedupeWindow; -1 turns deduplication off.
	DedupeWindow int
	// StallTimeout is how long a handler's worker on a partition may go
	// without advancing its offset while messages wait there before it
	// counts as stalled: a database write that keeps failing, a handler
	// retried for that long, a partition that cannot be read. A stalled
	// worker is logged at error with the last error it met, reported
	// through Hooks.OnStall, its lag is measured from the broker's high
	// watermark, and [Consumer.Stalled] names it (the consumer binary's
	// /readyz is not ready while it does). Defaults to DefaultStallTimeout.
	StallTimeout time.Duration
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Dialer == nil {
		out.Dialer = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.TracerProvider == nil {
		out.TracerProvider = otel.GetTracerProvider()
	}
	out.Retry = out.Retry.withDefaults(RetryPolicy{
		MaxAttempts: DefaultMaxAttempts, MaxElapsed: DefaultMaxElapsed, RetryFor: DefaultRetryFor,
		InitialInterval: DefaultInitialInterval, MaxInterval: DefaultMaxInterval,
	})
	if out.Limits == nil {
		l := envelope.DefaultLimits()
		out.Limits = &l
	}
	if out.StartOffset == 0 {
		out.StartOffset = kafka.FirstOffset
	}
	setDur := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	setDur(&out.FlushInterval, DefaultFlushInterval)
	setDur(&out.CommitInterval, DefaultCommitInterval)
	setDur(&out.SessionTimeout, DefaultSessionTimeout)
	setDur(&out.HeartbeatInterval, DefaultHeartbeatInterval)
	setDur(&out.RebalanceTimeout, DefaultRebalanceTimeout)
	setDur(&out.JoinGroupBackoff, DefaultJoinGroupBackoff)
	setDur(&out.PartitionWatchInterval, DefaultPartitionWatch)
	setDur(&out.DrainTimeout, DefaultDrainTimeout)
	setDur(&out.FetchMaxWait, DefaultFetchMaxWait)
	setDur(&out.StallTimeout, DefaultStallTimeout)
	if out.TxIdleTimeout == 0 {
		out.TxIdleTimeout = DefaultTxIdleTimeout
	}
	if out.FlushMessages <= 0 {
		out.FlushMessages = DefaultFlushMessages
	}
	if out.FetchMaxBytes <= 0 {
		out.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if out.QueueCapacity <= 0 {
		out.QueueCapacity = DefaultQueueCapacity
	}
	switch {
	case out.DedupeWindow == 0:
		out.DedupeWindow = DefaultDedupeWindow
	case out.DedupeWindow < 0:
		out.DedupeWindow = 0
	}
	return out
}

// validate reports every problem of c, joined.
func (c *Config) validate() error {
	errs := c.checkRequired()
	errs = append(errs, c.checkRanges()...)
	if d := c.withDefaults(); d.HeartbeatInterval >= d.SessionTimeout {
		errs = append(errs, fmt.Errorf("dispatch: Config.HeartbeatInterval %s must be shorter than Config.SessionTimeout %s",
			d.HeartbeatInterval, d.SessionTimeout))
	}
	if err := c.Retry.check("Config.Retry"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkRequired reports the required fields that are missing or invalid.
func (c *Config) checkRequired() []error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("dispatch: Config.Brokers is empty"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("dispatch: Config.Group is empty"))
	} else if strings.IndexByte(c.Group, 0) >= 0 || !utf8.ValidString(c.Group) {
		errs = append(errs, fmt.Errorf("dispatch: Config.Group %q is not UTF-8 text without NUL bytes", c.Group))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("dispatch: Config.Topics is empty"))
	}
	for i, t := range c.Topics {
		if err := kafkaname.ValidateTopic(t); err != nil {
			errs = append(errs, fmt.Errorf("dispatch: Config.Topics[%d]: %w", i, err))
		}
	}
	if c.Pool == nil {
		errs = append(errs, errors.New("dispatch: Config.Pool is nil"))
	}
	return errs
}

// checkRanges reports the optional fields set to values out of range.
func (c *Config) checkRanges() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"FlushInterval", c.FlushInterval}, {"CommitInterval", c.CommitInterval}, {"SessionTimeout", c.SessionTimeout},
		{"HeartbeatInterval", c.HeartbeatInterval}, {"RebalanceTimeout", c.RebalanceTimeout},
		{"JoinGroupBackoff", c.JoinGroupBackoff}, {"DrainTimeout", c.DrainTimeout}, {"FetchMaxWait", c.FetchMaxWait},
		{"PartitionWatchInterval", c.PartitionWatchInterval}, {"StallTimeout", c.StallTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("dispatch: Config.%s %s is negative", d.name, d.v))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"FlushMessages", c.FlushMessages}, {"FetchMaxBytes", c.FetchMaxBytes}, {"QueueCapacity", c.QueueCapacity}} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("dispatch: Config.%s %d is negative", n.name, n.v))
		}
	}
	if c.TxIdleTimeout < 0 && c.TxIdleTimeout != -1 {
		errs = append(errs, fmt.Errorf("dispatch: Config.TxIdleTimeout %s: want > 0, 0 for the default or -1 for off", c.TxIdleTimeout))
	}
	if c.DedupeWindow < -1 {
		errs = append(errs, fmt.Errorf("dispatch: Config.DedupeWindow %d: want > 0, 0 for the default or -1 for off", c.DedupeWindow))
	}
	if c.StartOffset != 0 && c.StartOffset != kafka.FirstOffset && c.StartOffset != kafka.LastOffset {
		errs = append(errs, fmt.Errorf("dispatch: Config.StartOffset %d is not kafka.FirstOffset or kafka.LastOffset", c.StartOffset))
	}
	return errs
}
