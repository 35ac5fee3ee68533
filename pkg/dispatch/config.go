package dispatch

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// Defaults of [Config].
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
)

// NotifyChannel is the PostgreSQL channel a replay notifies, with the JSON
// payload {"group": ..., "handler": ...}; running consumers of that group
// reload that handler's offsets.
const NotifyChannel = "pulsebus_handler_offsets"

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
	// Logger receives the consumer's logs. Defaults to discarding them.
	Logger *slog.Logger
	// Hooks receive events for metrics. Defaults to [NopHooks].
	Hooks Hooks
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
	// DrainTimeout is how long in-flight handlers may run after the context
	// given to Run is done before their own context is cancelled. Defaults
	// to DefaultDrainTimeout.
	DrainTimeout time.Duration
	// FetchMaxWait is the longest a fetch waits at the broker for new data.
	// Defaults to DefaultFetchMaxWait.
	FetchMaxWait time.Duration
	// FetchMaxBytes is the most bytes per fetch and partition. Defaults to
	// DefaultFetchMaxBytes.
	FetchMaxBytes int
	// QueueCapacity is how many fetched messages each handler's reader
	// buffers per partition: the bound on memory and read-ahead. Defaults to
	// DefaultQueueCapacity.
	QueueCapacity int
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Dialer == nil {
		out.Dialer = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if out.Hooks == nil {
		out.Hooks = NopHooks{}
	}
	out.Retry = out.Retry.withDefaults(RetryPolicy{
		MaxAttempts: DefaultMaxAttempts, MaxElapsed: DefaultMaxElapsed,
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
	setDur(&out.DrainTimeout, DefaultDrainTimeout)
	setDur(&out.FetchMaxWait, DefaultFetchMaxWait)
	if out.FlushMessages <= 0 {
		out.FlushMessages = DefaultFlushMessages
	}
	if out.FetchMaxBytes <= 0 {
		out.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if out.QueueCapacity <= 0 {
		out.QueueCapacity = DefaultQueueCapacity
	}
	return out
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("dispatch: Config.Brokers is empty"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("dispatch: Config.Group is empty"))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("dispatch: Config.Topics is empty"))
	}
	if c.Pool == nil {
		errs = append(errs, errors.New("dispatch: Config.Pool is nil"))
	}
	if c.StartOffset != 0 && c.StartOffset != kafka.FirstOffset && c.StartOffset != kafka.LastOffset {
		errs = append(errs, fmt.Errorf("dispatch: Config.StartOffset %d is not kafka.FirstOffset or kafka.LastOffset", c.StartOffset))
	}
	return errors.Join(errs...)
}
