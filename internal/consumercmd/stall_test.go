package consumercmd_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

// readyz returns /readyz's status and body.
func readyz(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// A handler whose offset writes fail while events wait: after
// --stall-timeout, /readyz answers 503 naming it and the cause, the stalled
// workers gauge is 1, the lag counts what waits and an error is logged;
// once the writes work again, all of it clears.
func TestRun_StalledHandlerIsNotReady(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	h := newHook(t)
	b.produce(t, lessons(t, 2))
	r := start(t, append(b.runArgs("name=hook,types=*,webhook="+h.URL+"/in"), "--stall-timeout", "1s"))
	base := r.metricsURL()
	testpoll.Until(t, 30*time.Second, 25*time.Millisecond, "2 delivered, saved and ready", func() bool {
		code, _ := readyz(t, base)
		return len(h.delivered("/in")) == 2 && code == http.StatusOK &&
			scrape(t, base, `pulsebus_consumer_lag{handler="hook",partition="0",topic="edupulse.events"}`) == 0
	})

	ctx := context.Background()
	_, err := b.db.Pool.Exec(ctx, `CREATE FUNCTION freeze_offsets() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'offsets frozen by the test'; END $$;
		CREATE TRIGGER freeze_offsets BEFORE UPDATE ON pulsebus.handler_offsets FOR EACH ROW EXECUTE FUNCTION freeze_offsets()`)
	require.NoError(t, err)
	b.produce(t, lessons(t, 3))
	testpoll.Until(t, 30*time.Second, 50*time.Millisecond, "/readyz not ready", func() bool {
		code, _ := readyz(t, base)
		return code == http.StatusServiceUnavailable
	})
	_, body := readyz(t, base)
	require.Contains(t, body, "a handler is stalled", "the body says what; the log says which and why")
	require.NotContains(t, body, "offsets frozen by the test")
	require.Equal(t, 1.0, scrape(t, base, `pulsebus_consumer_stalled_workers{handler="hook"}`))
	require.Equal(t, 3.0, scrape(t, base, `pulsebus_consumer_lag{handler="hook",partition="0",topic="edupulse.events"}`))
	found := false
	for _, l := range jsonLines(r.logs) {
		if l["level"] == "ERROR" && l["msg"] == "handler worker stalled: it has not advanced while messages wait" {
			require.Contains(t, l["cause"], "offsets frozen by the test")
			found = true
		}
	}
	require.True(t, found, "an error log names the stall and its cause")

	_, err = b.db.Pool.Exec(ctx, `DROP TRIGGER freeze_offsets ON pulsebus.handler_offsets`)
	require.NoError(t, err)
	testpoll.Until(t, 30*time.Second, 50*time.Millisecond, "ready again, nothing stalled, lag 0", func() bool {
		code, _ := readyz(t, base)
		return code == http.StatusOK && scrape(t, base, `pulsebus_consumer_stalled_workers{handler="hook"}`) == 0 &&
			scrape(t, base, `pulsebus_consumer_lag{handler="hook",partition="0",topic="edupulse.events"}`) == 0
	})
	require.NoError(t, r.stop())
}
