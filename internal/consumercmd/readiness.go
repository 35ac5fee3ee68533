package consumercmd

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// readiness adapts [dispatch.Consumer.Ready] to /readyz, whose body anyone
// who reaches the port can read: it names what is not ready ("kafka",
// "postgres") and nothing more. The cause, with broker addresses and the
// database's user, name and host, goes to the log when readiness changes.
type readiness struct {
	ready func(context.Context) error
	log   *slog.Logger

	mu      sync.Mutex
	last    string // the body's reason of the last check, "" when ready
	lastErr string // the cause last logged
}

// check runs the readiness check (httpserve caches it) and returns an
// error whose text is safe to show.
func (r *readiness) check(ctx context.Context) error {
	err := r.ready(ctx)
	reason := ""
	if err != nil {
		reason = "a dependency check failed (see the consumer's log)"
		var ue *dispatch.UnavailableError
		switch {
		case errors.As(err, &ue):
			reason = ue.Dependency + " does not answer"
		case errors.Is(err, dispatch.ErrStalled):
			reason = "a handler is stalled (its worker, partition and cause are in the consumer's log)"
		}
	}
	r.mu.Lock()
	changed := reason != r.last
	newCause := err != nil && err.Error() != r.lastErr
	r.last = reason
	if err != nil {
		r.lastErr = err.Error()
	} else {
		r.lastErr = ""
	}
	r.mu.Unlock()
	switch {
	case err != nil && (changed || newCause):
		r.log.Warn("not ready", "reason", reason, "err", err)
	case err != nil:
		r.log.Debug("still not ready", "reason", reason, "err", err)
	case changed:
		r.log.Info("ready again")
	}
	if err != nil {
		return errors.New(reason)
	}
	return nil
}
