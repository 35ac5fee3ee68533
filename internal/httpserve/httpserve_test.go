package httpserve_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/edupulse/pulsebus/internal/httpserve"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestStart_ServesMetricsHealthAndReadiness(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "pulsebus_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var notReady atomic.Bool
	ready := func(context.Context) error {
		if notReady.Load() {
			return errors.New("database unreachable")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, done, err := httpserve.Start(ctx, "127.0.0.1:0", reg, ready, nil)
	require.NoError(t, err)
	base := "http://" + addr

	code, body := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "pulsebus_test_total 3")

	code, _ = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)

	code, _ = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
	notReady.Store(true)
	// The answer is cached for ReadyCacheTTL.
	deadline := time.Now().Add(httpserve.ReadyCacheTTL + 5*time.Second)
	for code == http.StatusOK && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		code, body = get(t, base+"/readyz")
	}
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.True(t, strings.Contains(body, "database unreachable"), body)

	cancel()
	require.NoError(t, <-done)
}

func TestStart_ReportsListenError(t *testing.T) {
	_, _, err := httpserve.Start(context.Background(), "256.0.0.1:bad", prometheus.NewRegistry(), nil, nil)
	require.ErrorContains(t, err, "listen on 256.0.0.1:bad")
}

// 200 concurrent callers share one check (a single flight); the result is
// reused for the TTL, then checked again.
func TestCache_OneCheckPerTTLForManyCallers(t *testing.T) {
	var checks atomic.Int32
	release := make(chan struct{})
	c := httpserve.NewCache(time.Hour, 5*time.Second, func(context.Context) int {
		<-release
		return int(checks.Add(1))
	})
	var wg sync.WaitGroup
	results := make(chan int, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Get(context.Background())
			if err == nil {
				results <- v
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the callers pile up behind the first
	close(release)
	wg.Wait()
	close(results)
	n := 0
	for v := range results {
		require.Equal(t, 1, v)
		n++
	}
	require.Equal(t, 200, n)
	require.Equal(t, int32(1), checks.Load())

	// The TTL is a duration under test; it is long enough that two calls in
	// a row fall within it even on a loaded machine.
	const ttl = 500 * time.Millisecond
	short := httpserve.NewCache(ttl, time.Second, func(context.Context) int { return int(checks.Add(1)) })
	v1, _ := short.Get(context.Background())
	v2, _ := short.Get(context.Background())
	require.Equal(t, v1, v2, "fresh: cached")
	time.Sleep(ttl + 100*time.Millisecond)
	v3, _ := short.Get(context.Background())
	require.Equal(t, v1+1, v3, "expired: checked again")
}

// A caller that gives up while the check runs gets its context's error;
// the check, bounded by its own timeout, still ends and serves the others.
func TestCache_CallerGivingUpDoesNotFailTheCheck(t *testing.T) {
	started := make(chan struct{})
	c := httpserve.NewCache(time.Hour, 200*time.Millisecond, func(ctx context.Context) error {
		close(started)
		<-ctx.Done() // a dependency that never answers
		return errors.New("no answer")
	})
	first := make(chan error, 1)
	go func() {
		err, _ := c.Get(context.Background())
		first <- err
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Get(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.EqualError(t, <-first, "no answer", "the check ended at its timeout")
	got, err := c.Get(context.Background())
	require.NoError(t, err)
	require.EqualError(t, got, "no answer", "cached")
}
