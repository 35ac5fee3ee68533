// Package pgstate is a Prometheus collector of gauges whose truth lives in
// PostgreSQL (rows parked, dead letters stored). It reads them when
// Prometheus scrapes, at most once per MaxAge, each read bounded by Timeout,
// so any number of scrapers cost one cheap query per MaxAge per process;
// between reads, and when a read fails, it serves the last values it read, so an alert on them neither flaps nor resolves because the
// database was slow once. Failed reads are counted in a counter of its
// own, so a stuck read is visible.
//
// The packages outboxprom and dispatchprom build their state gauges on it;
// see docs/state-gauges.md for the queries and why they stay cheap.
package pgstate

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of [Options].
const (
	DefaultMaxAge  = 10 * time.Second
	DefaultTimeout = 2 * time.Second
)

// ReadFunc reads the current values from the database and returns them as
// constant metrics of the descriptors the collector was made with.
type ReadFunc func(ctx context.Context) ([]prometheus.Metric, error)

// Options tune a [Collector]; zero values take the defaults.
type Options struct {
	// MaxAge is how long values read are served before a scrape reads
	// again. Defaults to DefaultMaxAge.
	MaxAge time.Duration
	// Timeout bounds one read, waiting for a pool connection included.
	// Defaults to DefaultTimeout.
	Timeout time.Duration
	// Now is the clock. Defaults to time.Now. For tests.
	Now func() time.Time
}

// Collector implements [prometheus.Collector] over a [ReadFunc]. It is safe
// for concurrent use: concurrent scrapes wait for one read and share it.
type Collector struct {
	descs  []*prometheus.Desc
	read   ReadFunc
	errors prometheus.Counter
	opts   Options

	mu        sync.Mutex
	values    []prometheus.Metric // last successful read; nil before the first
	attempted time.Time           // when the last read started; zero before the first
}

// New returns a collector of the metrics descs describes, read by read.
// errors counts the reads that failed or timed out; it is collected with
// the gauges.
func New(descs []*prometheus.Desc, errors prometheus.Counter, read ReadFunc, opts Options) *Collector {
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Collector{descs: descs, read: read, errors: errors, opts: opts}
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	c.errors.Describe(ch)
}

// Collect implements [prometheus.Collector]: it reads the values if the
// last read started MaxAge ago or there was none, then sends the last good
// values (none before the first good read).
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.current() {
		ch <- m
	}
	c.errors.Collect(ch)
}

func (c *Collector) current() []prometheus.Metric {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if !c.attempted.IsZero() && now.Sub(c.attempted) < c.opts.MaxAge {
		return c.values
	}
	c.attempted = now
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	values, err := c.read(ctx)
	if err != nil {
		// Keep serving the last values; a scrape MaxAge later tries again.
		c.errors.Inc()
		return c.values
	}
	c.values = values
	return values
}
