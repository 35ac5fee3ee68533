package outbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// OnRefused is what a refused row does to the later rows of its key; see
// RelayConfig.OnRefused.
type OnRefused string

// The choices of RelayConfig.OnRefused.
const (
	OnRefusedHoldKey OnRefused = "hold-key"
	OnRefusedPark    OnRefused = "park"
)

// RelayConfig configures a [Relay].
type RelayConfig struct {
	// Pool is the pool the relay claims rows, keeps its lease and listens
	// with. It takes one connection out of the pool for the lease and one
	// for LISTEN (unless PollOnly) and uses up to three more: the batch in
	// hand, the next batch claimed ahead (only while another connection is
	// free) or a settle, and backlog measurements. Required.
	Pool *pgxpool.Pool
	// Brokers are the Kafka bootstrap addresses (host:port). Required.
	Brokers []string
	// Transport carries the Kafka requests; set it for TLS or SASL.
	// Defaults to a new kafka.Transport owned (and closed) by the relay.
	Transport kafka.RoundTripper
	// Compression of produced batches. Defaults to none.
	Compression kafka.Compression

	// Name names the relay group: relays with the same Name share one
	// leader lease and only the leader publishes. Defaults to
	// DefaultRelayName.
	Name string
	// ID identifies this relay in the lease row. Defaults to
	// hostname-pid-random.
	ID string
	// LeaseTTL is how long a lease lasts without renewal; a standby takes
	// over within LeaseTTL plus one PollInterval after the leader dies. It
	// also bounds a hung claim transaction
	// (idle_in_transaction_session_timeout). Defaults to DefaultLeaseTTL.
	LeaseTTL time.Duration

	// BatchSize is the most rows claimed, produced and deleted per
	// transaction. Defaults to DefaultBatchSize.
	BatchSize int
	// OnRefused says what a row the broker refuses for good (too large, an
	// invalid envelope) does to the later rows of its key. With
	// OnRefusedHoldKey (the default) it is parked and every later row with
	// the same topic and key waits in the outbox until the parked row is
	// requeued (it then goes out first) or deleted (they then go out in
	// order): per-key order holds through a poison event. Rows of other
	// keys and topics, and rows without a key (which promise no order),
	// flow on. With OnRefusedPark it is parked and the later rows of its
	// key go out without it. The state lives in pulsebus.outbox_parked, so
	// it survives restarts and leader changes.
	OnRefused OnRefused
	// MaxBatchBytes bounds the rows the relay holds in memory: a claim
	// takes rows while their payloads, keys and meta (plus 128 bytes a row
	// for the other columns) add up to at most this, and the batch claimed
	// ahead takes only what the batch in hand leaves of it. A single row
	// larger than this is still claimed, alone. The relay's heap peaks at
	// about twice this (the rows and the messages built from them) plus
	// one produce request (MaxMessageBytes) per broker: with
	// DefaultMaxBatchBytes (16 MiB) and GOMEMLIMIT=48MiB the relay binary
	// drained 880 KB rows at a peak RSS of 55 MiB (see the README on
	// memory sizing). At least MinMaxBatchBytes.
	MaxBatchBytes int
	// PollInterval is the longest the leader goes without claiming: its
	// poll period (jittered down by up to 20%) once claims stop finding
	// rows and no notification arrives; and how often a standby tries to
	// take the lease. It is the worst case for a committed row that no
	// notification covers: a producer transaction that skipped its
	// notification because another one was notifying (the notification
	// lock; see "Waking the relay" in the package documentation) and
	// committed long after that one (or after it rolled back), a row
	// committed while LISTEN is down, or any row with PollOnly waits at
	// most PollInterval, plus the batch in hand, for a claim. See "Waking
	// the relay" in the package documentation. Defaults to
	// DefaultPollInterval.
	PollInterval time.Duration
	// PollOnly disables LISTEN: the relay claims every PollInterval, at
	// once after a full batch, and in follow-ups after a claim that found
	// rows (see NotifyDebounce). Defaults to false.
	PollOnly bool
	// NotifyDebounce is the least time between the starts of two claims
	// woken by notifications, so a burst of small commits is claimed as
	// one batch: at low rates the relay runs about one claim per
	// NotifyDebounce, not one per commit, and a row waits up to this much
	// longer. It is also the first follow-up delay: after a claim that
	// found rows, the leader claims again NotifyDebounce later even
	// without a notification, then after twice that while claims come back
	// empty, doubling up to PollInterval; a notification or a claim that
	// finds rows starts over. The follow-ups find the rows of producers
	// that skipped their notification (the notification lock). Defaults to
	// DefaultNotifyDebounce.
	NotifyDebounce time.Duration

	// WriteTimeout bounds one produce request; a request also ends at the
	// lease's safe time (see the package documentation on fencing). Stop
	// may wait this long for a request in flight. It must be below
	// LeaseTTL. Defaults to DefaultWriteTimeout or half of LeaseTTL,
	// whichever is less, so a short lease needs no WriteTimeout of its own.
	WriteTimeout time.Duration
	// MaxMessageBytes is the most bytes per produce request and so per
	// message; a message larger than this is parked without being sent.
	// Keep it at or below the broker's message.max.bytes. At least 1024.
	// Defaults to DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Limits validates envelopes before they are produced; an invalid one
	// is parked. Defaults to envelope.DefaultLimits().
	Limits *envelope.Limits

	// BackoffInitial and BackoffMax bound the exponential back-offs: of a
	// topic whose rows failed transiently (its rows wait, the other
	// topics flow), and of the whole relay after a database error or a
	// lost lease. Default to DefaultBackoffInitial and DefaultBackoffMax.
	BackoffInitial, BackoffMax time.Duration

	// AutoCreateTopics creates a missing topic with TopicPartitions
	// partitions and TopicReplicationFactor replicas. When false, rows for
	// a missing topic stay in the outbox and every attempt fails with an
	// [*UnknownTopicError] naming it. Defaults to false.
	AutoCreateTopics bool
	// TopicPartitions defaults to DefaultTopicPartitions.
	TopicPartitions int
	// TopicReplicationFactor defaults to DefaultReplicationFactor.
	TopicReplicationFactor int

	// BacklogInterval is how often the backlog is measured for
	// [Hooks.OnBacklog]; negative disables it. Defaults to
	// DefaultBacklogInterval.
	BacklogInterval time.Duration
	// Hooks receive observations; a nil field is skipped. Defaults to
	// none.
	Hooks Hooks
	// TracerProvider makes the relay's spans: one "publish" span (kind
	// producer) per batch, linked to the trace context each event carries
	// (its traceparent extension, which the Kafka message keeps). Defaults
	// to the global provider (otel.GetTracerProvider), a no-op unless the
	// program installed one.
	TracerProvider trace.TracerProvider
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// withDefaults returns the configuration with every zero field set to its
// default, or an error when the result is not a configuration the relay can
// run with.
func (c *RelayConfig) withDefaults() (RelayConfig, error) {
	cfg := *c
	cfg.setDefaults()
	return cfg, cfg.validate()
}

// setDefaults sets every zero field to its default.
func (c *RelayConfig) setDefaults() {
	if c.Name == "" {
		c.Name = DefaultRelayName
	}
	if c.ID == "" {
		c.ID = newRelayID()
	}
	setDefault(&c.LeaseTTL, DefaultLeaseTTL)
	setDefault(&c.BatchSize, DefaultBatchSize)
	setDefault(&c.PollInterval, DefaultPollInterval)
	setDefault(&c.NotifyDebounce, DefaultNotifyDebounce)
	// A produce request must end before the lease can: half the lease
	// leaves the renewals room.
	setDefault(&c.WriteTimeout, min(DefaultWriteTimeout, c.LeaseTTL/2))
	setDefault(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.MaxBatchBytes, DefaultMaxBatchBytes)
	setDefault(&c.BackoffInitial, DefaultBackoffInitial)
	setDefault(&c.BackoffMax, DefaultBackoffMax)
	setDefault(&c.BacklogInterval, DefaultBacklogInterval)
	setDefault(&c.TopicPartitions, DefaultTopicPartitions)
	setDefault(&c.TopicReplicationFactor, DefaultReplicationFactor)
	if c.Limits == nil {
		l := envelope.DefaultLimits()
		c.Limits = &l
	}
	if c.OnRefused == "" {
		c.OnRefused = OnRefusedHoldKey
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// newRelayID returns hostname-pid-random: unique per process, and telling
// an operator which process holds the lease.
func newRelayID() string {
	host, _ := os.Hostname()
	b := make([]byte, 3)
	_, _ = cryptoRead(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// validate checks a configuration with its defaults set, and reports
// every problem, each naming its field.
func (c *RelayConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("outbox: RelayConfig."+format, args...))
	}
	if c.Pool == nil {
		bad("Pool is required")
	}
	if len(c.Brokers) == 0 {
		bad("Brokers is required")
	}
	for i, b := range c.Brokers {
		if b == "" {
			bad("Brokers[%d] is empty; want host:port", i)
		}
	}
	if c.OnRefused != OnRefusedHoldKey && c.OnRefused != OnRefusedPark {
		bad("OnRefused %q is not %q or %q", c.OnRefused, OnRefusedHoldKey, OnRefusedPark)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"PollInterval", c.PollInterval}, {"NotifyDebounce", c.NotifyDebounce}, {"WriteTimeout", c.WriteTimeout},
		{"BackoffInitial", c.BackoffInitial}, {"BackoffMax", c.BackoffMax},
	} {
		if d.v < 0 {
			bad("%s %s must not be negative", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"BatchSize", c.BatchSize}, {"TopicPartitions", c.TopicPartitions}, {"TopicReplicationFactor", c.TopicReplicationFactor},
	} {
		if n.v < 0 {
			bad("%s %d must be positive", n.name, n.v)
		}
	}
	return errors.Join(append(errs, c.validateBounds()...)...)
}

// validateBounds checks the fields that have a least value or bound
// another.
func (c *RelayConfig) validateBounds() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("outbox: RelayConfig."+format, args...))
	}
	if c.LeaseTTL < minLeaseTTL {
		bad("LeaseTTL %s must be at least %s", c.LeaseTTL, minLeaseTTL)
	}
	if c.WriteTimeout >= c.LeaseTTL {
		bad("WriteTimeout %s must be below LeaseTTL %s", c.WriteTimeout, c.LeaseTTL)
	}
	if c.BackoffMax < c.BackoffInitial {
		bad("BackoffMax %s must not be below BackoffInitial %s", c.BackoffMax, c.BackoffInitial)
	}
	if c.MaxMessageBytes < minMaxMessageBytes {
		bad("MaxMessageBytes %d must be at least %d", c.MaxMessageBytes, minMaxMessageBytes)
	}
	if c.MaxBatchBytes < MinMaxBatchBytes {
		bad("MaxBatchBytes %d must be at least %d", c.MaxBatchBytes, MinMaxBatchBytes)
	}
	return errs
}

// minLeaseTTL is the least LeaseTTL.
const minLeaseTTL = 3 * time.Second / 2

// minMaxMessageBytes is the least MaxMessageBytes: below it, ordinary
// events would not fit a produce request and would all be parked.
const minMaxMessageBytes = 1024

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

var cryptoRead = rand.Read
