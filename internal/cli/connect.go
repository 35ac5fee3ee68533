package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultConnectTimeout is how long [Connect] keeps retrying a database that
// does not answer yet when its context has no deadline of its own.
const DefaultConnectTimeout = 10 * time.Second

// Bounds of the back-off between connection attempts.
const (
	connectRetryFirst = 100 * time.Millisecond
	connectRetryMax   = 2 * time.Second
)

// pingRetrying pings the database through pool until it answers, retrying
// failures that go away by themselves (nothing listening yet, a connection
// reset, a server still starting up or at its connection limit) with
// back-off until ctx's deadline or, without one, DefaultConnectTimeout.
// Other failures (a wrong password, a missing database) return at once.
func pingRetrying(ctx context.Context, pool *pgxpool.Pool) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultConnectTimeout)
		defer cancel()
	}
	start := time.Now()
	wait := connectRetryFirst
	for attempt := 1; ; attempt++ {
		err := pool.Ping(ctx)
		if err == nil {
			return nil
		}
		if !transientConnectError(err) || ctx.Err() != nil {
			if attempt > 1 {
				return fmt.Errorf("%w (%d attempts in %s)", err, attempt, time.Since(start).Round(time.Millisecond))
			}
			return err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (%d attempts in %s)", err, attempt, time.Since(start).Round(time.Millisecond))
		case <-timer.C:
		}
		wait = min(2*wait, connectRetryMax)
	}
}

// transientConnectError reports whether a failed connection attempt may
// succeed when tried again shortly: the network did not reach a server
// (refused, reset, unknown host yet, closed early) or the server said it
// is starting, shutting down or full.
func transientConnectError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P03", // cannot_connect_now: the database system is starting up
			"57P01", // admin_shutdown
			"57P02", // crash_shutdown
			"53300": // too_many_connections
			return true
		}
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var netErr net.Error
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) || errors.As(err, &netErr) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
