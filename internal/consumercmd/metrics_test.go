package consumercmd_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

// A fresh consumer exports every handler's counters at 0 and its stored
// dead letters at 0 from the first scrape, so increase() sees the first
// retry and dead letter. The first dead letter turns the stored gauge to 1
// (what PulseBusDeadLettersStored alerts on), and a restarted consumer
// reports it from its first scrape.
func TestRun_HandlerSeriesFromFirstScrapeAndStoredDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	h := newHook(t)
	h.setStatus(func(*http.Request, int) int { return http.StatusBadRequest }) // permanent: dead-lettered at once
	args := b.runArgs("name=search,types=lesson.*,webhook="+h.URL+"/hooks/search", "name=audit,types=*,log=debug")

	r := start(t, args)
	base := r.metricsURL()
	for _, handler := range []string{"search", "audit"} {
		for _, outcome := range []string{"ok", "retried", "dead_lettered", "skipped_duplicate", "held"} {
			require.Zero(t, scrape(t, base, `pulsebus_consumer_events_handled_total{handler="`+handler+`",outcome="`+outcome+`"}`), handler+" "+outcome)
		}
		require.Zero(t, scrape(t, base, `pulsebus_consumer_retries_total{handler="`+handler+`"}`), handler)
		require.Zero(t, scrape(t, base, `pulsebus_consumer_dead_letters_total{handler="`+handler+`"}`), handler)
		require.Zero(t, scrape(t, base, `pulsebus_consumer_dead_letters_stored{group="svc",handler="`+handler+`"}`), handler)
		require.Zero(t, scrape(t, base, `pulsebus_consumer_dead_letter_oldest_age_seconds{group="svc",handler="`+handler+`"}`), handler)
		require.Zero(t, scrape(t, base, `pulsebus_consumer_held_events{group="svc",handler="`+handler+`"}`), handler)
	}
	require.Zero(t, scrape(t, base, `pulsebus_consumer_dead_letter_read_errors_total{group="svc"}`))

	b.produce(t, lessons(t, 1))
	// The stored gauge reads PostgreSQL at scrape time and sees the dead
	// letter once it commits; the counter follows from the hook called
	// after that: a scrape can fall in between, so wait for both.
	testpoll.Until(t, 60*time.Second, 50*time.Millisecond, "the dead letter in the stored gauge and the counter", func() bool {
		return scrape(t, base, `pulsebus_consumer_dead_letters_stored{group="svc",handler="search"}`) == 1 &&
			scrape(t, base, `pulsebus_consumer_dead_letters_total{handler="search"}`) == 1
	})
	require.Zero(t, scrape(t, base, `pulsebus_consumer_dead_letters_stored{group="svc",handler="audit"}`))
	require.NoError(t, r.stop())

	r = start(t, args)
	base = r.metricsURL()
	require.Equal(t, 1.0, scrape(t, base, `pulsebus_consumer_dead_letters_stored{group="svc",handler="search"}`),
		"the stored dead letter after a restart, from the first scrape")
	require.Greater(t, scrape(t, base, `pulsebus_consumer_dead_letter_oldest_age_seconds{group="svc",handler="search"}`), 0.0)
	require.Zero(t, scrape(t, base, `pulsebus_consumer_dead_letters_total{handler="search"}`), "the counter starts again at 0")
}
