package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/pulsebus/internal/typepattern"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// Handler handles one event. Plain handlers are at-least-once: after a crash
// or a retry an event can arrive again, so they should use env.ID as an
// idempotency key. Return [Permanent] for an error that no retry can fix.
type Handler interface {
	Handle(ctx context.Context, env envelope.Envelope) error
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, env envelope.Envelope) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, env envelope.Envelope) error { return f(ctx, env) }

// TxHandler handles one event inside a transaction that also advances the
// handler's offset: its writes and the offset commit together, so each event
// takes effect exactly once. Return an error to roll back; tx.Commit and
// tx.Rollback return an error. The transaction's BEGIN is sent with the
// handler's first Exec or SendBatch, and the offset move with the COMMIT,
// so a handler that writes with one statement costs two round trips.
type TxHandler interface {
	HandleTx(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error
}

// TxHandlerFunc adapts a function to [TxHandler].
type TxHandlerFunc func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error

// HandleTx calls f.
func (f TxHandlerFunc) HandleTx(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
	return f(ctx, tx, env)
}

// BatchTxHandler handles several consecutive events of one partition in one
// transaction that also advances the handler's offset past the last of them
// (the transaction is as for [TxHandler]).
// When it fails, the events are handled again one by one (each in its own
// transaction, with the retry policy) so one bad event is dead-lettered alone.
type BatchTxHandler interface {
	HandleBatchTx(ctx context.Context, tx pgx.Tx, envs []envelope.Envelope) error
}

// BatchTxHandlerFunc adapts a function to [BatchTxHandler].
type BatchTxHandlerFunc func(ctx context.Context, tx pgx.Tx, envs []envelope.Envelope) error

// HandleBatchTx calls f.
func (f BatchTxHandlerFunc) HandleBatchTx(ctx context.Context, tx pgx.Tx, envs []envelope.Envelope) error {
	return f(ctx, tx, envs)
}

// Middleware wraps a handler for cross-cutting concerns (logging, tracing,
// timeouts, recovering panics). For transactional handlers the wrapped
// handler finds the transaction with [TxFromContext]. Middleware does not
// apply to batch handlers.
type Middleware func(Handler) Handler

type txKey struct{}

// TxFromContext returns the transaction a transactional handler runs in, for
// middleware; nil for plain handlers.
func TxFromContext(ctx context.Context) pgx.Tx {
	tx, _ := ctx.Value(txKey{}).(pgx.Tx)
	return tx
}

// permanentError marks an error no retry can fix ([Permanent]).
type permanentError struct{ Err error }

func (e *permanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *permanentError) Unwrap() error { return e.Err }

// Permanent wraps err so it is not retried: the message is dead-lettered
// at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{Err: err}
}

// IsPermanent reports whether err is not worth a retry: a [Permanent] error
// or an invalid envelope ([envelope.ErrInvalid]).
func IsPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe) || errors.Is(err, envelope.ErrInvalid)
}

// RetryPolicy is how long a handler is retried on one event before the
// event is dead-lettered. Every failed attempt is classified
// (see the package documentation, "Failures"):
//
//   - permanent ([Permanent], an invalid envelope): dead-lettered at once;
//   - transient ([IsTransient]: marked [Transient], a network error, a
//     timeout, a PostgreSQL connection loss, serialization failure or
//     deadlock): retried until RetryFor has passed since the first attempt,
//     holding the partition for this handler, then dead-lettered;
//   - anything else (most likely a bug or bad data): retried until
//     MaxAttempts such failures or MaxElapsed, then dead-lettered.
//
// The pause between attempts grows from InitialInterval by 1.5 times up to
// MaxInterval, with 50% jitter; a [TransientAfter] error (an HTTP 429 or 503
// with Retry-After) lengthens it to what the other side asked for.
type RetryPolicy struct {
	// MaxAttempts is the most attempts that fail with an error neither
	// permanent nor transient, the first one included. Transient failures
	// do not count. Defaults to DefaultMaxAttempts.
	MaxAttempts int
	// MaxElapsed bounds the time from the first attempt within which an
	// error neither permanent nor transient is retried; no such retry
	// starts after it. Defaults to DefaultMaxElapsed.
	MaxElapsed time.Duration
	// RetryFor bounds the time from the first attempt within which
	// transient failures are retried: how long an outage of what the
	// handler calls (a webhook endpoint being deployed, a database
	// failing over) is ridden out before events are dead-lettered. The
	// handler holds its partition meanwhile: later events wait, so order
	// is kept. Defaults to DefaultRetryFor.
	RetryFor time.Duration
	// InitialInterval is the first back-off; each next one is 1.5 times
	// longer, with 50% jitter. Defaults to DefaultInitialInterval.
	InitialInterval time.Duration
	// MaxInterval caps a single back-off (not a pause a [TransientAfter]
	// error asks for). Defaults to DefaultMaxInterval.
	MaxInterval time.Duration
}

// check rejects negative fields; what names the policy in the error.
func (p RetryPolicy) check(what string) error {
	var errs []error
	if p.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("dispatch: %s.MaxAttempts %d is negative", what, p.MaxAttempts))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MaxElapsed", p.MaxElapsed}, {"RetryFor", p.RetryFor}, {"InitialInterval", p.InitialInterval}, {"MaxInterval", p.MaxInterval}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("dispatch: %s.%s %s is negative", what, d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

func (p RetryPolicy) withDefaults(d RetryPolicy) RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = d.MaxElapsed
	}
	if p.RetryFor <= 0 {
		p.RetryFor = d.RetryFor
	}
	if p.InitialInterval <= 0 {
		p.InitialInterval = d.InitialInterval
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = d.MaxInterval
	}
	return p
}

// HandlerOption customises one registered handler.
type HandlerOption func(*registration)

// WithRetry sets the handler's retry policy; zero fields take the
// consumer's [Config.Retry].
func WithRetry(p RetryPolicy) HandlerOption { return func(r *registration) { r.retry = p } }

// WithMiddleware wraps the handler in mw, the first outermost, after the
// consumer-wide middleware.
func WithMiddleware(mw ...Middleware) HandlerOption {
	return func(r *registration) { r.middleware = append(r.middleware, mw...) }
}

// WithBatchSize sets how many consecutive events of a partition a
// transactional handler takes per transaction. Defaults to 1 for
// [Consumer.HandleTx] and DefaultBatchSize for [Consumer.HandleBatchTx].
func WithBatchSize(n int) HandlerOption { return func(r *registration) { r.batchSize = n } }

type kind int

const (
	kindPlain kind = iota
	kindTx
	kindBatchTx
)

// registration is one handler as the consumer runs it.
type registration struct {
	name       string
	types      []string
	kind       kind
	plain      Handler
	tx         TxHandler
	batch      BatchTxHandler
	middleware []Middleware
	retry      RetryPolicy
	batchSize  int
	holdKey    bool // WithKeyOrder

	// Built by finish.
	run      Handler                                                              // plain, wrapped
	runOne   func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error    // kindTx, wrapped
	runBatch func(ctx context.Context, tx pgx.Tx, envs []envelope.Envelope) error // kindBatchTx
	exact    map[string]bool
	prefix   []string
	matchAll bool
}

// finish checks the registration and builds what the worker runs: the
// type matchers, the batch size and the handler wrapped in the consumer's
// middleware (global) and its own.
func (r *registration) finish(global []Middleware) error {
	if err := r.check(); err != nil {
		return err
	}
	if err := r.parseTypes(); err != nil {
		return err
	}
	if r.batchSize <= 0 {
		r.batchSize = 1
		if r.kind == kindBatchTx {
			r.batchSize = DefaultBatchSize
		}
	}
	r.wrap(append(append([]Middleware(nil), global...), r.middleware...))
	return nil
}

// check rejects a registration no consumer can run.
func (r *registration) check() error {
	if r.name == "" || strings.ContainsAny(r.name, " \t\r\n\x00") || !utf8.ValidString(r.name) {
		return fmt.Errorf("dispatch: handler name %q must be non-empty UTF-8 without spaces", r.name)
	}
	if (r.kind == kindPlain && r.plain == nil) || (r.kind == kindTx && r.tx == nil) || (r.kind == kindBatchTx && r.batch == nil) {
		return fmt.Errorf("dispatch: handler %s is nil", r.name)
	}
	if r.batchSize < 0 {
		return fmt.Errorf("dispatch: handler %s: WithBatchSize(%d) is negative", r.name, r.batchSize)
	}
	if err := r.retry.check("handler " + r.name + ": WithRetry"); err != nil {
		return err
	}
	if len(r.types) == 0 {
		return fmt.Errorf("dispatch: handler %s: no event types (use \"*\" for all)", r.name)
	}
	return nil
}

// parseTypes builds the type matchers of matches from r.types.
func (r *registration) parseTypes() error {
	r.exact = map[string]bool{}
	for _, t := range r.types {
		p, err := typepattern.Parse(t)
		switch {
		case err != nil:
			return fmt.Errorf("dispatch: handler %s: %w", r.name, err)
		case p.All:
			r.matchAll = true
		case p.Prefix != "":
			r.prefix = append(r.prefix, p.Prefix)
		default:
			r.exact[p.Exact] = true
		}
	}
	return nil
}

// wrap builds the function the worker calls, wrapped in mws (the first
// outermost); batch handlers take no middleware.
func (r *registration) wrap(mws []Middleware) {
	wrap := func(h Handler) Handler {
		for i := len(mws) - 1; i >= 0; i-- {
			h = mws[i](h)
		}
		return h
	}
	switch r.kind {
	case kindPlain:
		r.run = wrap(r.plain)
	case kindTx:
		inner := wrap(HandlerFunc(func(ctx context.Context, env envelope.Envelope) error {
			return r.tx.HandleTx(ctx, TxFromContext(ctx), env)
		}))
		r.runOne = func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
			return inner.Handle(context.WithValue(ctx, txKey{}, tx), env)
		}
	case kindBatchTx:
		r.runBatch = r.batch.HandleBatchTx
	}
}

// matches reports whether the handler wants events of type t.
func (r *registration) matches(t []byte) bool {
	if r.matchAll || r.exact[string(t)] {
		return true
	}
	for _, p := range r.prefix {
		if len(t) >= len(p) && string(t[:len(p)]) == p {
			return true
		}
	}
	return false
}
