package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/internal/tracing"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// Relay defaults. DefaultNotifyDebounce was chosen by measurement
// (BenchmarkCommitToAck, 8 producers of single-event transactions, shared
// 2-core machine): against 1ms it cut claims per event at 1,000 events/s
// from 0.57 to 0.18 and the relay's PostgreSQL CPU per event by 40%, and
// kept the commit-to-ack p99 at 5,000 events/s at 9-13ms (1ms: 12-14ms,
// 10ms: 13-17ms).
const (
	DefaultRelayName         = "default"
	DefaultBatchSize         = 1000
	DefaultPollInterval      = time.Second
	DefaultNotifyDebounce    = 5 * time.Millisecond
	DefaultLeaseTTL          = 15 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultMaxMessageBytes   = 1_000_000
	DefaultMaxBatchBytes     = 16 << 20
	DefaultBackoffInitial    = 100 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBacklogInterval   = 10 * time.Second
	DefaultTopicPartitions   = 1
	DefaultReplicationFactor = 1
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
	// DB is the pool the relay claims rows, keeps its lease and listens
	// with. It takes one connection out of the pool for the lease and one
	// for LISTEN (unless PollOnly) and uses up to three more: the batch in
	// hand, the next batch claimed ahead (only while another connection is
	// free) or a settle, and backlog measurements. Required.
	DB *pgxpool.Pool
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
	// notification because another one was notifying (NotifyLockKey) and
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
	// that skipped their notification (NotifyLockKey). Defaults to
	// DefaultNotifyDebounce.
	NotifyDebounce time.Duration

	// WriteTimeout bounds one produce request; a request also ends at the
	// lease's safe time (see the package documentation on fencing). Stop
	// may wait this long for a request in flight. Defaults to
	// DefaultWriteTimeout; it must be below LeaseTTL.
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
	// [RelayHooks.Backlog]; negative disables it. Defaults to
	// DefaultBacklogInterval.
	BacklogInterval time.Duration
	// Hooks receives observations. Defaults to NopRelayHooks.
	Hooks RelayHooks
	// TracerProvider makes the relay's spans: one "publish" span (kind
	// producer) per batch, linked to the trace context each event carries
	// (its traceparent extension, which the Kafka message keeps). Defaults
	// to the global provider (otel.GetTracerProvider), a no-op unless the
	// program installed one.
	TracerProvider trace.TracerProvider
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *RelayConfig) withDefaults() (RelayConfig, error) {
	cfg := *c
	if cfg.DB == nil {
		return cfg, errors.New("outbox: RelayConfig.DB is required")
	}
	if len(cfg.Brokers) == 0 {
		return cfg, errors.New("outbox: RelayConfig.Brokers is required")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultRelayName
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 3)
		_, _ = cryptoRead(b)
		cfg.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	setDefault(&cfg.LeaseTTL, DefaultLeaseTTL)
	setDefault(&cfg.BatchSize, DefaultBatchSize)
	setDefault(&cfg.PollInterval, DefaultPollInterval)
	setDefault(&cfg.NotifyDebounce, DefaultNotifyDebounce)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&cfg.MaxBatchBytes, DefaultMaxBatchBytes)
	setDefault(&cfg.BackoffInitial, DefaultBackoffInitial)
	setDefault(&cfg.BackoffMax, DefaultBackoffMax)
	setDefault(&cfg.BacklogInterval, DefaultBacklogInterval)
	setDefault(&cfg.TopicPartitions, DefaultTopicPartitions)
	setDefault(&cfg.TopicReplicationFactor, DefaultReplicationFactor)
	if cfg.Limits == nil {
		l := envelope.DefaultLimits()
		cfg.Limits = &l
	}
	switch cfg.OnRefused {
	case "":
		cfg.OnRefused = OnRefusedHoldKey
	case OnRefusedHoldKey, OnRefusedPark:
	default:
		return cfg, fmt.Errorf("outbox: RelayConfig.OnRefused %q is not %q or %q", cfg.OnRefused, OnRefusedHoldKey, OnRefusedPark)
	}
	if cfg.Hooks == nil {
		cfg.Hooks = NopRelayHooks{}
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for i, b := range cfg.Brokers {
		if b == "" {
			return cfg, fmt.Errorf("outbox: RelayConfig.Brokers[%d] is empty; want host:port", i)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"PollInterval", cfg.PollInterval}, {"NotifyDebounce", cfg.NotifyDebounce}, {"WriteTimeout", cfg.WriteTimeout},
		{"BackoffInitial", cfg.BackoffInitial}, {"BackoffMax", cfg.BackoffMax},
	} {
		if d.v < 0 {
			return cfg, fmt.Errorf("outbox: RelayConfig.%s %s must not be negative", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"BatchSize", cfg.BatchSize}, {"TopicPartitions", cfg.TopicPartitions}, {"TopicReplicationFactor", cfg.TopicReplicationFactor},
	} {
		if n.v < 0 {
			return cfg, fmt.Errorf("outbox: RelayConfig.%s %d must be positive", n.name, n.v)
		}
	}
	switch {
	case cfg.LeaseTTL < 3*time.Second/2:
		return cfg, fmt.Errorf("outbox: RelayConfig.LeaseTTL %s must be at least 1.5s", cfg.LeaseTTL)
	case cfg.WriteTimeout >= cfg.LeaseTTL:
		return cfg, fmt.Errorf("outbox: RelayConfig.WriteTimeout %s must be below LeaseTTL %s", cfg.WriteTimeout, cfg.LeaseTTL)
	case cfg.BackoffMax < cfg.BackoffInitial:
		return cfg, fmt.Errorf("outbox: RelayConfig.BackoffMax %s must not be below BackoffInitial %s", cfg.BackoffMax, cfg.BackoffInitial)
	case cfg.MaxMessageBytes < minMaxMessageBytes:
		return cfg, fmt.Errorf("outbox: RelayConfig.MaxMessageBytes %d must be at least %d", cfg.MaxMessageBytes, minMaxMessageBytes)
	case cfg.MaxBatchBytes < MinMaxBatchBytes:
		return cfg, fmt.Errorf("outbox: RelayConfig.MaxBatchBytes %d must be at least %d", cfg.MaxBatchBytes, MinMaxBatchBytes)
	}
	return cfg, nil
}

// MinMaxBatchBytes is the least RelayConfig.MaxBatchBytes.
const MinMaxBatchBytes = 64 << 10

// minMaxMessageBytes is the least MaxMessageBytes: below it, ordinary
// events would not fit a produce request and would all be parked.
const minMaxMessageBytes = 1024

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

var cryptoRead = rand.Read

// Relay moves events from pulsebus.outbox to Kafka. See the package
// documentation for its guarantees.
type Relay struct {
	cfg      RelayConfig
	log      *slog.Logger
	hooks    RelayHooks
	tracer   trace.Tracer
	pub      *publisher
	own      *kafka.Transport // the transport the relay made, closed on stop
	client   *kafka.Client
	lease    *lease
	beginSQL string // begins a settle transaction
	// txSettings configures a claim transaction (see txSettings).
	txSettings string
	noPrefetch bool         // tests and benchmarks: one batch at a time
	claims     atomic.Int64 // claim transactions begun, for tests and benchmarks

	wake chan struct{} // buffered 1: a notification or a leadership change

	mu       sync.Mutex
	started  bool
	term     leaseTerm // zero Term: not leader
	stopped  chan struct{}
	stopWork context.CancelFunc // abandons the batch in hand
	stopPoll context.CancelFunc // stops claiming new batches
}

// NewRelay checks cfg and returns a relay ready to Start.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var own *kafka.Transport
	if c.Transport == nil {
		own = &kafka.Transport{}
		c.Transport = own
	}
	addr := kafka.TCP(c.Brokers...)
	r := &Relay{
		cfg:        c,
		own:        own,
		log:        c.Logger.With("component", "relay", "relay", c.Name, "relay_id", c.ID),
		hooks:      c.Hooks,
		tracer:     c.TracerProvider.Tracer(tracing.InstrumentationRelay),
		client:     &kafka.Client{Addr: addr, Transport: c.Transport, Timeout: c.WriteTimeout},
		lease:      &lease{db: c.DB, name: c.Name, id: c.ID, ttl: c.LeaseTTL},
		beginSQL:   beginSQL(c.LeaseTTL),
		txSettings: txSettings(c.LeaseTTL),
		wake:       make(chan struct{}, 1),
		stopped:    make(chan struct{}),
	}
	r.pub = &publisher{
		transport:   c.Transport,
		addr:        addr,
		compression: c.Compression,
		maxBytes:    c.MaxMessageBytes,
		timeout:     c.WriteTimeout,
		hooks:       c.Hooks,
		limits:      c.Limits,
		holdKeys:    c.OnRefused == OnRefusedHoldKey,
	}
	if c.AutoCreateTopics {
		r.pub.autoCreate = r.createTopics
	}
	return r, nil
}

// ID returns the relay's id in the lease row.
func (r *Relay) ID() string { return r.cfg.ID }

// Start starts the relay's goroutines and returns. The relay runs until
// ctx is done or Stop is called; either way it then shuts down as Stop
// describes. It returns an error only if the relay was started before.
func (r *Relay) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("outbox: relay already started")
	}
	r.started = true
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	pollCtx, stopPoll := context.WithCancel(ctx)
	r.stopWork, r.stopPoll = stopWork, stopPoll
	go r.run(pollCtx, workCtx)
	return nil
}

// Stop stops claiming new batches and lets the batch in hand finish (its
// produce requests answered and its rows deleted) until ctx is done. Then
// it abandons the batch: no further produce request is sent, the ones
// already sent are waited for until their deadline (at most WriteTimeout),
// what the broker acknowledged is deleted and the rest stays in the outbox,
// claimed by no one. Last it releases the lease, so a standby takes over at
// once, and waits for every goroutine. Stop is idempotent and safe to call
// concurrently; it returns an error wrapping ctx's error if the relay had
// to abandon work.
func (r *Relay) Stop(ctx context.Context) error {
	r.mu.Lock()
	if !r.started {
		r.started = true
		close(r.stopped)
		r.mu.Unlock()
		return nil
	}
	stopPoll, stopWork := r.stopPoll, r.stopWork
	r.mu.Unlock()
	if stopPoll == nil { // stopped before it was started
		<-r.stopped
		return nil
	}
	stopPoll()
	select {
	case <-r.stopped:
		return nil
	case <-ctx.Done():
		stopWork()
		<-r.stopped
		return fmt.Errorf("outbox: relay stop: in-flight batch abandoned: %w", ctx.Err())
	}
}

// Stopped is closed when the relay has stopped.
func (r *Relay) Stopped() <-chan struct{} { return r.stopped }

// IsLeader reports whether the relay holds a lease it may publish under.
func (r *Relay) IsLeader() bool {
	_, ok := r.currentTerm()
	return ok
}

// currentTerm returns the held term and whether it is safe to start work
// under it.
func (r *Relay) currentTerm() (leaseTerm, bool) {
	r.mu.Lock()
	t := r.term
	r.mu.Unlock()
	return t, t.Term != 0 && time.Now().Before(t.Deadline.Add(-r.safetyMargin()))
}

// safeUntil returns, for a batch claimed under term, the time until which
// produce requests may be in flight: the latest renewal's deadline less the
// safety margin, while the relay still holds that term.
func (r *Relay) safeUntil(term int64) safeUntil {
	return func() (time.Time, bool) {
		t, ok := r.currentTerm()
		if !ok || t.Term != term {
			return time.Time{}, false
		}
		return t.Deadline.Add(-r.safetyMargin()), true
	}
}

// safetyMargin is how much earlier than the local lease deadline the relay
// stops having produce requests in flight: room for clock rate drift and
// scheduling delays.
func (r *Relay) safetyMargin() time.Duration { return r.cfg.LeaseTTL / 5 }

func (r *Relay) setTerm(t leaseTerm) {
	r.mu.Lock()
	was := r.term.Term != 0
	r.term = t
	r.mu.Unlock()
	if is := t.Term != 0; is != was {
		if is {
			r.log.Info("relay became leader", "term", t.Term)
		} else {
			r.log.Info("relay stepped down")
		}
		r.hooks.Leader(is)
		r.signal()
	}
}

func (r *Relay) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Relay) run(pollCtx, workCtx context.Context) {
	defer close(r.stopped)
	defer r.stopWork()
	leaseCtx, stopLease := context.WithCancel(context.WithoutCancel(pollCtx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.keepLease(leaseCtx) }()
	if !r.cfg.PollOnly {
		wg.Add(1)
		go func() { defer wg.Done(); r.listen(pollCtx) }()
	}
	if r.cfg.BacklogInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); r.reportBacklog(pollCtx) }()
	}

	r.loop(pollCtx, workCtx)

	// Every batch is finished or rolled back and no produce request is in
	// flight: the lease can go.
	stopLease()
	wg.Wait()
	if r.own != nil {
		r.own.CloseIdleConnections()
	}
}

func (r *Relay) newBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = r.cfg.BackoffInitial
	b.MaxInterval = r.cfg.BackoffMax
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

// prefetch is a claim running in the background while the batch before it
// is published.
type prefetch struct {
	done  chan struct{}
	batch *claimedBatch
	err   error
}

func (r *Relay) startPrefetch(ctx context.Context, term leaseTerm, bounds claimBounds) *prefetch {
	p := &prefetch{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.batch, p.err = r.claim(ctx, term, bounds)
	}()
	return p
}

func (p *prefetch) wait() (*claimedBatch, error) {
	<-p.done
	return p.batch, p.err
}

// discard waits for the prefetched claim and rolls it back unpublished.
func (p *prefetch) discard() {
	if b, err := p.wait(); err == nil {
		b.rollback()
	}
}

// canPrefetch reports whether a second claim transaction may hold a pool
// connection now and still leave one for the backlog measurement and a
// settle.
func (r *Relay) canPrefetch() bool {
	if r.noPrefetch {
		return false
	}
	st := r.cfg.DB.Stat()
	return st.MaxConns()-st.AcquiredConns() >= 2
}

// topicWait is the back-off of a topic whose rows failed transiently: its
// rows are not claimed until the back-off ends.
type topicWait struct {
	bo    *backoff.ExponentialBackOff
	until time.Time
}

// topicWaits are the topics backing off.
type topicWaits struct {
	r     *Relay
	waits map[string]*topicWait
}

// skipped returns the topics whose rows are not to be claimed now, and
// forgets the back-offs that ended long ago (the topic's rows went some
// other way).
func (w *topicWaits) skipped(now time.Time) []string {
	var topics []string
	for topic, tw := range w.waits {
		switch {
		case now.Before(tw.until):
			topics = append(topics, topic)
		case now.After(tw.until.Add(w.r.cfg.BackoffMax)):
			delete(w.waits, topic)
		}
	}
	return topics
}

// next returns how long until the first back-off ends, or ok false when
// no topic is backing off.
func (w *topicWaits) next(now time.Time) (d time.Duration, ok bool) {
	for _, tw := range w.waits {
		if now.Before(tw.until) && (!ok || tw.until.Sub(now) < d) {
			d, ok = tw.until.Sub(now), true
		}
	}
	return d, ok
}

// update records a batch's outcome: the topics whose rows wait back off
// (longer each time in a row), the others that had rows in the batch are
// healthy again.
func (w *topicWaits) update(rows []Row, waiting map[string]error) {
	now := time.Now()
	for topic, err := range waiting {
		tw := w.waits[topic]
		if tw == nil {
			tw = &topicWait{bo: w.r.newBackoff()}
			w.waits[topic] = tw
		}
		d := tw.bo.NextBackOff()
		tw.until = now.Add(d)
		w.r.log.Warn("topic failed; its rows wait while other topics flow", "topic", topic, "err", err, "backoff", d)
	}
	if len(w.waits) == 0 {
		return
	}
	for i := range rows {
		if _, failed := waiting[rows[i].Topic]; !failed {
			delete(w.waits, rows[i].Topic)
		}
	}
}

// loop claims and publishes batches while leader, waking as the package
// documentation describes (Waking the relay): at once after a full batch,
// else on a notification (debounced), a follow-up (see followUp), the
// poll, or the end of a topic's back-off.
//
// Pipeline: the next batch is claimed ahead, in a second transaction, when
// the batch in hand came back full (a backlog: claimed while it is being
// produced) or when notifications arrived while it was produced (claimed
// while it commits, if NotifyDebounce has passed since the last claim
// began); in either case only while the batch in hand holds at most half
// of MaxBatchBytes, and within the other half. The claim-ahead excludes
// the batch in hand's rows by id. The next batch is produced only once the
// batch before it was acknowledged and committed, so per partition the
// produce requests stay in row order; if the batch before it did not go
// through whole, the claim-ahead is rolled back unpublished before that
// batch is settled, so a settle never waits on the relay's own locks.
//
// Failures: rows that failed transiently make their topic back off on its
// own (topicWaits); claims skip that topic's rows until then, so the
// other topics flow at full speed and the topic's rows keep their order.
// Only a failure of the batch as a whole (the database, the lease) backs
// the whole loop off.
func (r *Relay) loop(pollCtx, workCtx context.Context) {
	bo := r.newBackoff()
	waits := &topicWaits{r: r, waits: map[string]*topicWait{}}
	poll := time.NewTimer(0)
	defer poll.Stop()
	var next *prefetch
	discardNext := func() {
		if next != nil {
			next.discard()
			next = nil
		}
	}
	defer discardNext()
	var lastClaim time.Time
	// idle is how long after lastClaim the leader claims again when no
	// notification wakes it (see followUp).
	idle := r.cfg.PollInterval
	for {
		if pollCtx.Err() != nil {
			return
		}
		term, leader := r.currentTerm()
		if leader || next != nil {
			var (
				b         *claimedBatch
				err       error
				fromAhead = next != nil
			)
			if next != nil {
				b, err = next.wait()
				next = nil
			} else {
				lastClaim = time.Now()
				b, err = r.claim(workCtx, term, claimBounds{
					maxBytes: r.cfg.MaxBatchBytes, atLeastOne: true, skipTopics: waits.skipped(lastClaim),
				})
			}
			var res batchResult
			if err == nil {
				prefetch := func() bool {
					if next != nil || pollCtx.Err() != nil || b.bytes > r.cfg.MaxBatchBytes/2 || !r.canPrefetch() {
						return false
					}
					t, ok := r.currentTerm()
					if !ok || t.Term != b.term.Term {
						return false
					}
					lastClaim = time.Now()
					next = r.startPrefetch(workCtx, t, claimBounds{
						maxBytes: r.cfg.MaxBatchBytes - b.bytes, exclude: b.ids(), skipTopics: waits.skipped(lastClaim),
					})
					return true
				}
				if b.full {
					prefetch() // a backlog: claim the next batch while producing this one
				}
				res, err = r.finish(workCtx, b, func() {
					// Rows committed while this batch was produced: claim
					// them while this batch commits, unless that would
					// claim sooner than the debounce allows.
					select {
					case <-r.wake:
						if time.Since(lastClaim) < r.cfg.NotifyDebounce || !prefetch() {
							r.signal() // the loop claims them next, debounced
						}
					default:
					}
				}, discardNext)
			}
			if err != nil {
				discardNext()
				d := bo.NextBackOff()
				r.log.Warn("relay batch failed; backing off", "err", err, "backoff", d,
					"claimed", res.claimed, "published", res.published, "parked", res.parked)
				if !sleepCtx(pollCtx, d) {
					return
				}
				continue
			}
			bo.Reset()
			waits.update(b.rows, res.waiting)
			idle = r.followUp(idle, res.claimed > 0)
			if next != nil || b.full || res.parked > 0 || (fromAhead && res.claimed == 0) {
				continue // more waiting: no need to wait for a signal
			}
		} else {
			idle = r.cfg.PollInterval
		}
		wait := r.idleWait(idle, lastClaim)
		if d, ok := waits.next(time.Now()); ok && d < wait {
			wait = d
		}
		resetTimer(poll, wait)
		select {
		case <-pollCtx.Done():
			return
		case <-poll.C:
		case <-r.wake:
			// A notification: back to fast follow-ups after this claim.
			idle = r.cfg.NotifyDebounce
			// Debounce: let a burst of commits gather into one batch.
			if d := r.cfg.NotifyDebounce - time.Since(lastClaim); d > 0 && !sleepCtx(pollCtx, d) {
				return
			}
		}
	}
}

// followUp returns how long after a claim that was not full the leader
// claims again without a notification, given the previous such delay
// (NotifyDebounce after a notification): NotifyDebounce when the claim
// found rows, twice the previous delay when it found none, never more
// than PollInterval.
//
// Producers notify only when no other transaction is notifying
// (NotifyLockKey), so the rows of a transaction that skipped its
// notification and committed after the notifier's commit woke a claim have
// no notification of their own. Follow-ups find them: soon after
// activity, when such late commits happen, less and less often when
// claims come back empty, and every PollInterval when nothing happens.
// Whatever the timing, a committed row waits at most PollInterval for a
// claim.
func (r *Relay) followUp(prev time.Duration, found bool) time.Duration {
	if found {
		return min(r.cfg.NotifyDebounce, r.cfg.PollInterval)
	}
	return min(2*max(prev, r.cfg.NotifyDebounce), r.cfg.PollInterval)
}

// idleWait returns how long to wait for a notification before claiming
// again: until idle after lastClaim, or, once idle reached PollInterval, a
// jittered PollInterval from now.
func (r *Relay) idleWait(idle time.Duration, lastClaim time.Time) time.Duration {
	if idle >= r.cfg.PollInterval {
		return r.jitter(r.cfg.PollInterval)
	}
	return max(0, idle-time.Since(lastClaim))
}

// jitter returns d shortened by up to 20%, so the bound "takes over within
// TTL plus one poll" holds and replicas spread their polls.
func (r *Relay) jitter(d time.Duration) time.Duration {
	return d - time.Duration(mrand.Int64N(int64(d)/5+1))
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// keepLease acquires, renews and on return releases the lease, on the
// lease's own connection (see lease), closed on return.
func (r *Relay) keepLease(ctx context.Context) {
	defer r.lease.close()
	renewEvery := r.cfg.LeaseTTL / 3
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			r.mu.Lock()
			t := r.term
			r.mu.Unlock()
			if t.Term != 0 {
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if err := r.lease.release(rctx, t.Term); err != nil {
					r.log.Warn("release lease", "err", err)
				} else {
					r.log.Info("relay released lease", "term", t.Term)
				}
				cancel()
				r.setTerm(leaseTerm{})
			}
			return
		case <-timer.C:
		}
		held, leader := r.currentTerm()
		if held.Term != 0 && !leader {
			r.log.Warn("lease not renewed in time; stepping down", "term", held.Term)
			r.setTerm(leaseTerm{})
			held = leaseTerm{}
		}
		if held.Term != 0 {
			opCtx, cancel := context.WithDeadline(ctx, held.Deadline.Add(-r.safetyMargin()))
			t, ok, err := r.lease.renew(opCtx, held.Term)
			cancel()
			switch {
			case err != nil:
				r.log.Warn("renew lease", "err", err, "term", held.Term)
				timer.Reset(min(time.Second, renewEvery))
				continue
			case !ok:
				r.log.Warn("lease lost", "term", held.Term)
				r.setTerm(leaseTerm{})
			default:
				r.setTerm(t)
				timer.Reset(renewEvery)
				continue
			}
		}
		opCtx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL)
		t, ok, err := r.lease.tryAcquire(opCtx)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.log.Warn("acquire lease", "err", err)
		}
		if ok {
			r.setTerm(t)
			timer.Reset(renewEvery)
			continue
		}
		timer.Reset(r.jitter(min(r.cfg.PollInterval, renewEvery)))
	}
}
