package pgstate_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/pgstate"
)

// fixture is a collector of one gauge whose reads return value, or err
// when set, and count themselves.
type fixture struct {
	mu    sync.Mutex
	now   time.Time
	value float64
	err   error
	block bool // the read waits for its context to end
	reads atomic.Int32
	desc  *prometheus.Desc
	c     *pgstate.Collector
	reg   *prometheus.Registry
}

func newFixture(t *testing.T, opts pgstate.Options) *fixture {
	t.Helper()
	f := &fixture{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		desc: prometheus.NewDesc("test_rows", "Rows.", nil, nil)}
	opts.Now = func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_read_errors_total", Help: "Errors."})
	f.c = pgstate.New([]*prometheus.Desc{f.desc}, errs, func(ctx context.Context) ([]prometheus.Metric, error) {
		f.reads.Add(1)
		f.mu.Lock()
		value, err, block := f.value, f.err, f.block
		f.mu.Unlock()
		if block {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		if err != nil {
			return nil, err
		}
		return []prometheus.Metric{prometheus.MustNewConstMetric(f.desc, prometheus.GaugeValue, value)}, nil
	}, opts)
	f.reg = prometheus.NewPedanticRegistry()
	require.NoError(t, f.reg.Register(f.c))
	return f
}

func (f *fixture) set(value float64, err error, block bool) {
	f.mu.Lock()
	f.value, f.err, f.block = value, err, block
	f.mu.Unlock()
}

func (f *fixture) advance(d time.Duration) { f.mu.Lock(); f.now = f.now.Add(d); f.mu.Unlock() }

// scrape returns the gauge (-1 when absent) and the error counter.
func (f *fixture) scrape(t *testing.T) (rows, errs float64) {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	rows = -1
	for _, mf := range mfs {
		switch mf.GetName() {
		case "test_rows":
			rows = mf.GetMetric()[0].GetGauge().GetValue()
		case "test_read_errors_total":
			errs = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return rows, errs
}

func TestCollector_ReadsAtMostOncePerMaxAge(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgstate.Options{MaxAge: 10 * time.Second})
	f.set(3, nil, false)
	rows, errs := f.scrape(t)
	require.Equal(t, 3.0, rows, "the first scrape reads")
	require.Zero(t, errs)

	f.set(5, nil, false)
	f.advance(9 * time.Second)
	rows, _ = f.scrape(t)
	require.Equal(t, 3.0, rows, "within MaxAge the cached value")
	require.Equal(t, int32(1), f.reads.Load())

	f.advance(time.Second)
	rows, _ = f.scrape(t)
	require.Equal(t, 5.0, rows, "after MaxAge a new read")
	require.Equal(t, int32(2), f.reads.Load())
}

// A failed read keeps the last values, counts an error, and is retried
// only after MaxAge, not at every scrape.
func TestCollector_FailedReadKeepsLastValues(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgstate.Options{MaxAge: 10 * time.Second})
	f.set(7, nil, false)
	f.scrape(t)

	f.set(0, errors.New("connection refused"), false)
	f.advance(10 * time.Second)
	rows, errs := f.scrape(t)
	require.Equal(t, 7.0, rows)
	require.Equal(t, 1.0, errs)
	rows, errs = f.scrape(t)
	require.Equal(t, 7.0, rows)
	require.Equal(t, 1.0, errs, "no new read before MaxAge")
	require.Equal(t, int32(2), f.reads.Load())

	f.set(2, nil, false)
	f.advance(10 * time.Second)
	rows, errs = f.scrape(t)
	require.Equal(t, 2.0, rows)
	require.Equal(t, 1.0, errs)
}

// Before the first good read there is no value to serve: the gauge is
// absent, not a made-up 0.
func TestCollector_NoValueBeforeTheFirstGoodRead(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgstate.Options{})
	f.set(0, errors.New("no database"), false)
	rows, errs := f.scrape(t)
	require.Equal(t, -1.0, rows)
	require.Equal(t, 1.0, errs)
}

// A read that hangs is cut at Timeout: the scrape returns, an error is
// counted.
func TestCollector_ReadBoundedByTimeout(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgstate.Options{Timeout: 50 * time.Millisecond})
	f.set(0, nil, true)
	done := make(chan struct{})
	var errs float64
	go func() { defer close(done); _, errs = f.scrape(t) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("scrape did not return after the read timed out")
	}
	require.Equal(t, 1.0, errs)
}

// Concurrent scrapes share one read.
func TestCollector_ConcurrentScrapesShareARead(t *testing.T) {
	t.Parallel()
	f := newFixture(t, pgstate.Options{MaxAge: time.Hour})
	f.set(1, nil, false)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); f.scrape(t) }()
	}
	wg.Wait()
	require.Equal(t, int32(1), f.reads.Load())
}
