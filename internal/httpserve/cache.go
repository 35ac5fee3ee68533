package httpserve

import (
	"context"
	"sync"
	"time"
)

// Readiness timing of both binaries: a check of their dependencies is
// bounded by ReadyTimeout and its result is reused for ReadyCacheTTL, so
// /readyz turns not ready at most ReadyCacheTTL + ReadyTimeout (3 s) after
// a dependency stops answering — a broker blackholed or cut off, a
// database gone — and ready again within ReadyCacheTTL of its first answer
// (plus the prober's own period). However many callers probe, the
// dependencies see at most one check per ReadyCacheTTL.
const (
	ReadyTimeout  = 2 * time.Second
	ReadyCacheTTL = time.Second
)

// Cache shares the result of a check among concurrent callers and reuses
// it for a while: a storm of callers costs one check per TTL (a single
// flight, then a cached result). The zero value is not usable; use
// [NewCache].
type Cache[T any] struct {
	check   func(context.Context) T
	ttl     time.Duration
	timeout time.Duration

	mu      sync.Mutex
	value   T
	expires time.Time
	running chan struct{} // closed when the check in flight ends; nil when none
}

// NewCache returns a cache of check's result, fresh for ttl after each
// check ends. Each check runs under a context bounded by timeout.
func NewCache[T any](ttl, timeout time.Duration, check func(context.Context) T) *Cache[T] {
	return &Cache[T]{check: check, ttl: ttl, timeout: timeout}
}

// Get returns the cached result while it is fresh. Otherwise the first
// caller runs the check and those that arrive meanwhile wait for its
// result. The check's context is the first caller's without its
// cancellation, bounded by the timeout, so a caller that hangs up does not
// fail the others. A caller whose ctx ends first gets ctx.Err().
func (c *Cache[T]) Get(ctx context.Context) (T, error) {
	c.mu.Lock()
	if time.Now().Before(c.expires) {
		v := c.value
		c.mu.Unlock()
		return v, nil
	}
	if running := c.running; running != nil {
		c.mu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		}
		c.mu.Lock()
		v := c.value
		c.mu.Unlock()
		return v, nil
	}
	running := make(chan struct{})
	c.running = running
	c.mu.Unlock()

	var v T
	defer func() {
		// Also when check panics, so the waiters are not left hanging.
		c.mu.Lock()
		c.value, c.expires, c.running = v, time.Now().Add(c.ttl), nil
		c.mu.Unlock()
		close(running)
	}()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	v = c.check(cctx)
	return v, nil
}
