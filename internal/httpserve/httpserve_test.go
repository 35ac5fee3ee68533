package httpserve_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

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
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.True(t, strings.Contains(body, "database unreachable"), body)

	cancel()
	require.NoError(t, <-done)
}

func TestStart_ReportsListenError(t *testing.T) {
	_, _, err := httpserve.Start(context.Background(), "256.0.0.1:bad", prometheus.NewRegistry(), nil, nil)
	require.ErrorContains(t, err, "listen on 256.0.0.1:bad")
}
