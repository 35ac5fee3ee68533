package relaycmd_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/edupulse/pulsebus/internal/httpserve"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
)

// The relay's /readyz: a blackholed broker (through a TCP proxy) turns it
// 503 within httpserve's bound and back to 200 when the network heals; 200
// concurrent probes cost at most a few broker requests; the body names
// neither the relay's id nor the database's user, name or host.
func TestRun_ReadyzCachedAndTellsOnlyWhatIsNotReady(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc, px := testkafka.NewBehindProxy(t)
	kc.CreateTopic(t, "lessons", 1)
	u, err := url.Parse(db.URL)
	require.NoError(t, err)
	pgProxy := newProxy(t, u.Host)
	u.Host = pgProxy.Addr()
	const id = "relay-ready-7"
	b := startBackground(t, "--database-url", u.String(), "--kafka-brokers", px.Addr(),
		"--lease-ttl", "3s", "--poll-interval", "100ms", "--name", "inproc", "--id", id)
	_, body := b.waitGet("/readyz", 20*time.Second, func(code int, body string) bool {
		return code == http.StatusOK && strings.Contains(body, "lease: leader (term")
	})
	require.Equal(t, "ready\nlease: leader (term 1)\n", body)

	// A probe storm, once the cached answer expired.
	time.Sleep(httpserve.ReadyCacheTTL)
	asked := px.Requests(int16(kmsg.ApiVersions))
	var wg sync.WaitGroup
	codes := make(chan int, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://" + b.addr + "/readyz")
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		require.Equal(t, http.StatusOK, code)
	}
	t.Logf("200 probes: %d API versions requests", px.Requests(int16(kmsg.ApiVersions))-asked)
	require.LessOrEqual(t, px.Requests(int16(kmsg.ApiVersions))-asked, int64(3), "API versions requests for 200 probes")

	// The broker goes silent.
	px.Blackhole()
	bound := httpserve.ReadyCacheTTL + httpserve.ReadyTimeout
	start := time.Now()
	_, body = b.waitGet("/readyz", 30*time.Second, func(code int, _ string) bool { return code == http.StatusServiceUnavailable })
	took := time.Since(start)
	t.Logf("not ready %s after the blackhole began (bound %s)", took, bound)
	require.Less(t, took, bound+2*time.Second)
	require.Contains(t, body, "not ready: kafka does not answer\n")
	require.NotContains(t, body, px.Addr())
	px.Restore()
	b.waitGet("/readyz", 30*time.Second, func(code int, _ string) bool { return code == http.StatusOK })

	// PostgreSQL goes away.
	pgProxy.Cut()
	_, body = b.waitGet("/readyz", 30*time.Second, func(code int, _ string) bool { return code == http.StatusServiceUnavailable })
	require.Contains(t, body, "not ready: postgres does not answer\n")
	// The default test user is "postgres", the dependency's name: look for
	// how pgx names it instead.
	for _, secret := range []string{id, "inproc", "user=", db.Name, u.Hostname(), u.Port()} {
		require.NotContains(t, body, secret)
	}
	require.Contains(t, b.stderr.String(), `msg="not ready" err="postgres: failed to connect to `+"`user=", "the cause is logged")
	_, err = b.stop()
	require.NoError(t, err)
}
