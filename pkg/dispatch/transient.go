package dispatch

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// transientError marks a failure that is expected to go away on its own —
// the other side is restarting, overloaded or briefly unreachable. The
// consumer retries it for the handler's whole [RetryPolicy.RetryFor],
// holding the partition for that handler, before it dead-letters the
// event. See [IsTransient] for the errors recognised without the mark.
type transientError struct {
	Err error
	// After, when positive, is the least pause before the next attempt,
	// e.g. an HTTP Retry-After. The pause is the longer of it and the
	// back-off.
	After time.Duration
}

func (e *transientError) Error() string { return e.Err.Error() }

// RetryAfter is the least pause before the next attempt; 0 for none.
func (e *transientError) RetryAfter() time.Duration { return e.After }

// Unwrap returns the wrapped error.
func (e *transientError) Unwrap() error { return e.Err }

// Transient marks err as a failure that is expected to go away on its
// own — the other side is restarting, overloaded or briefly unreachable:
// the consumer retries it for the handler's whole [RetryPolicy.RetryFor],
// holding the partition for that handler, before it dead-letters the
// event. Transient(nil) is nil.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{Err: err}
}

// TransientAfter marks err as transient and asks for no retry sooner than
// after (an HTTP Retry-After, a broker's throttle time).
// TransientAfter(nil, d) is nil.
func TransientAfter(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &transientError{Err: err, After: max(after, 0)}
}

// IsTransient reports whether err is a failure the consumer rides out for
// [RetryPolicy.RetryFor] rather than dead-lettering after
// [RetryPolicy.MaxAttempts]. A [Permanent] error is never transient. Besides
// errors marked with [Transient], these are:
//
//   - network errors: a refused, reset or broken connection, an unexpected
//     EOF, any net.Error (timeouts and DNS failures included), and a
//     deadline exceeded;
//   - PostgreSQL errors that say nothing about the handler's data:
//     connection exceptions (class 08), serialization failures (40001),
//     deadlocks (40P01), a server shutting down or starting (57P01, 57P02,
//     57P03), too many connections or out of resources (class 53), a lock
//     not available (55P03), and errors pgconn reports safe to retry.
//
// Constraint violations and the other errors of a handler's own SQL are
// not classified: they are the handler's to decide (wrap them with
// [Permanent] or [Transient]); unmarked, MaxAttempts applies.
func IsTransient(err error) bool {
	if err == nil || IsPermanent(err) {
		return false
	}
	var te *transientError
	if errors.As(err, &te) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return transientSQLState(pe.Code)
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE),
		pgconn.SafeToRetry(err),
		pgconn.Timeout(err):
		return true
	}
	return false
}

// retryAfter returns the pause a transientError in err's chain asks for,
// or 0.
func retryAfter(err error) time.Duration {
	var te *transientError
	if errors.As(err, &te) {
		return te.After
	}
	return 0
}

// transientSQLState reports whether a PostgreSQL error code says the
// server or the moment, not the statement, is at fault.
func transientSQLState(code string) bool {
	switch code {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"55P03", // lock_not_available
		"57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03": // cannot_connect_now
		return true
	}
	return len(code) == 5 && (code[:2] == "08" || code[:2] == "53")
}

// nextRetry decides whether an attempt that failed with err (not a
// permanent error) is retried, and after what pause. elapsed is the time
// since the first attempt, backoff the back-off's next pause, others the
// failures so far, this one included, that were neither permanent nor
// transient. A transient failure is retried while the pause ends within
// RetryFor; any other while others < MaxAttempts and the pause ends within
// MaxElapsed. The pause is the back-off, or longer when a [TransientAfter]
// error asks for it.
func (p RetryPolicy) nextRetry(err error, transient bool, elapsed, backoff time.Duration, others int) (time.Duration, bool) {
	if transient {
		d := max(backoff, retryAfter(err))
		return d, elapsed+d <= p.RetryFor
	}
	return backoff, others < p.MaxAttempts && elapsed+backoff <= p.MaxElapsed
}
