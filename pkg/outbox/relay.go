package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/internal/tracing"
)

// Relay moves events from pulsebus.outbox to Kafka. See the package
// documentation for its guarantees.
type Relay struct {
	cfg      RelayConfig
	log      *slog.Logger
	hooks    Hooks
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
		lease:      &lease{db: c.Pool, name: c.Name, id: c.ID, ttl: c.LeaseTTL},
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

// Config returns the relay's configuration with every default filled in,
// such as the WriteTimeout a zero value became. Its Brokers and Limits are
// copies: changing them does not change the relay.
func (r *Relay) Config() RelayConfig {
	c := r.cfg
	c.Brokers = slices.Clone(c.Brokers)
	limits := *c.Limits
	c.Limits = &limits
	return c
}

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
		r.hooks.leader(is)
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
