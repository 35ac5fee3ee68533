package consumercmd_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/edupulse/pulsebus/internal/httpserve"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// waitStatus polls url until it answers code and returns how long that
// took and the body.
func waitStatus(t *testing.T, url string, code int, within time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	var body string
	testpoll.Until(t, within, 20*time.Millisecond, fmt.Sprintf("%s answers %d", url, code), func() bool {
		var got int
		got, body = getBody(t, url)
		return got == code
	})
	return time.Since(start), body
}

// /readyz asks the broker for real: through a TCP proxy that blackholes
// the broker (connections open, nothing answered) it turns 503 within
// httpserve's documented bound and stays so, and back to 200 once the
// network heals. 200 concurrent probes cost at most a few broker
// connections and requests, not one each.
func TestRun_ReadyzFollowsABlackholedBroker(t *testing.T) {
	t.Parallel()
	kc, px := testkafka.NewBehindProxy(t)
	b := &bundle{db: testdb.New(t), kc: kc, topic: "edupulse.events", group: "svc"}
	kc.CreateTopic(t, b.topic, 2)
	r := start(t, b.runArgs("name=audit,types=*,log=debug"))
	ready := r.metricsURL() + "/readyz"
	waitStatus(t, ready, http.StatusOK, 30*time.Second)

	// The broker goes silent.
	px.Blackhole()
	bound := httpserve.ReadyCacheTTL + httpserve.ReadyTimeout
	took, body := waitStatus(t, ready, http.StatusServiceUnavailable, 30*time.Second)
	t.Logf("not ready %s after the blackhole began (bound %s)", took, bound)
	require.Less(t, took, bound+2*time.Second, "not ready within the bound, with slack for a loaded machine")
	require.Equal(t, "not ready: kafka does not answer\n", body)
	require.NotContains(t, body, px.Addr())
	// And it stays so: no flapping while the broker is silent.
	for end := time.Now().Add(2 * bound); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		code, _ := getBody(t, ready)
		require.Equal(t, http.StatusServiceUnavailable, code, "ready again while the broker is blackholed")
	}

	px.Restore()
	took, _ = waitStatus(t, ready, http.StatusOK, 30*time.Second)
	t.Logf("ready %s after the network healed", took)
	require.Less(t, took, bound+2*time.Second)

	// A probe storm.
	time.Sleep(httpserve.ReadyCacheTTL) // after the healing check, let the cached answer expire, so the storm pays for one check
	accepted, asked := px.Accepted(), px.Requests(int16(kmsg.ApiVersions))
	var wg sync.WaitGroup
	codes := make(chan int, 200)
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(ready)
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
	t.Logf("200 probes: %d broker connections, %d API versions requests", px.Accepted()-accepted, px.Requests(int16(kmsg.ApiVersions))-asked)
	// The consumer's own traffic (a partition watch, a reconnect) may add
	// one or two.
	require.LessOrEqual(t, px.Accepted()-accepted, int64(3), "broker connections opened for 200 probes")
	require.LessOrEqual(t, px.Requests(int16(kmsg.ApiVersions))-asked, int64(3), "API versions requests for 200 probes")

	require.Contains(t, r.logs.String(), "kafka does not answer", "the cause is logged")
	require.NoError(t, r.stop())
}

// When PostgreSQL refuses the consumer, /readyz says so without echoing the
// database user, name or host it connects with; the log has them.
func TestRun_ReadyzBodyHidesDatabaseDetails(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	role := "ready_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	admin := b.db.Pool
	_, err := admin.Exec(context.Background(), `CREATE ROLE `+role+` LOGIN SUPERUSER`)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
		_, _ = admin.Exec(ctx, `DROP ROLE IF EXISTS `+role)
	})
	u, err := url.Parse(b.db.URL)
	require.NoError(t, err)
	u.User = url.User(role)
	args := b.runArgs("name=audit,types=*,log=info")
	for i, a := range args {
		if a == b.db.URL {
			args[i] = u.String()
		}
	}
	r := start(t, args)
	ready := r.metricsURL() + "/readyz"
	waitStatus(t, ready, http.StatusOK, 30*time.Second)

	// The role may no longer log in, and its sessions end.
	_, err = admin.Exec(context.Background(), `ALTER ROLE `+role+` NOLOGIN`)
	require.NoError(t, err)
	_, err = admin.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
	require.NoError(t, err)
	_, body := waitStatus(t, ready, http.StatusServiceUnavailable, 30*time.Second)
	// A check on a fresh connection fails with the login refused; look at
	// a few bodies so that one is about it.
	bodies := []string{body}
	for range 3 {
		time.Sleep(httpserve.ReadyCacheTTL)
		_, body := getBody(t, ready)
		bodies = append(bodies, body)
	}
	for _, body := range bodies {
		require.Equal(t, "not ready: postgres does not answer\n", body)
		for _, secret := range []string{role, b.db.Name, u.Hostname(), u.Port()} {
			require.NotContains(t, body, secret)
		}
	}
	testpoll.Until(t, 10*time.Second, 50*time.Millisecond, "the cause logged", func() bool {
		return strings.Contains(r.logs.String(), "not permitted to log in")
	})
	_, err = admin.Exec(context.Background(), `ALTER ROLE `+role+` LOGIN`)
	require.NoError(t, err)
	waitStatus(t, ready, http.StatusOK, 30*time.Second)
	require.NoError(t, r.stop())
}
