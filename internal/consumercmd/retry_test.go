package consumercmd_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/examples/demo"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// defaultRetryArgs are the run flags of these tests: short timings where
// they do not matter, and the retry policy left at the binary's defaults,
// which is what these tests are about.
func (b *bundle) defaultRetryArgs(handlers ...string) []string {
	args := append([]string{"run"}, b.admin(
		"--topics", b.topic,
		"--metrics-addr", "127.0.0.1:0",
		"--log-format", "json",
		"--log-level", "info",
		"--flush-interval", "50ms",
		"--session-timeout", "6s",
		"--drain-timeout", "10s",
	)...)
	for _, h := range handlers {
		args = append(args, "--handler", h)
	}
	return args
}

// keyedLessons builds n lesson.published envelopes spread over keys keys,
// so that the per-key order of deliveries can be checked.
func keyedLessons(t *testing.T, n, keys int) []envelope.Envelope {
	t.Helper()
	out := make([]envelope.Envelope, n)
	for i := range out {
		ev := demo.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New(), Title: fmt.Sprintf("Lesson %d", i),
			PublishedAt: time.Now().UTC().Truncate(time.Microsecond)}
		env, err := envelope.New("lessons-api", ev, envelope.WithKey(fmt.Sprintf("key-%d", i%keys)))
		require.NoError(t, err)
		out[i] = env
	}
	return out
}

// deadLetters returns the dead letters of the test's group by handler:
// event id → attempts.
func (b *bundle) deadLetters(t *testing.T, handler string) map[string]int {
	t.Helper()
	rows, err := b.db.Pool.Query(context.Background(),
		`SELECT coalesce(event_id::text, ''), attempts FROM pulsebus.dead_letters WHERE group_id = $1 AND handler = $2`, b.group, handler)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var attempts int
		require.NoError(t, rows.Scan(&id, &attempts))
		out[id] = attempts
	}
	require.NoError(t, rows.Err())
	return out
}

// With the default retry policy, a webhook that answers 503 for a while (a
// deploy, a short outage) gets every event afterwards, in per-key order,
// and nothing is dead-lettered. The window is 6 s: the old defaults (5
// attempts from 100 ms, 1.5× back-off) gave up on an event after about
// 1.2 s of failures, so every event of the first batches was dead-lettered
// within it.
func TestRun_WebhookOutageDeadLettersNothing(t *testing.T) {
	t.Parallel()
	const window = 6 * time.Second
	b := setup(t, 3)
	h := newHook(t)
	envs := keyedLessons(t, 150, 6)
	var (
		mu         sync.Mutex
		firstSeen  time.Time
		rejections int
	)
	h.setStatus(func(*http.Request, int) int {
		mu.Lock()
		defer mu.Unlock()
		if firstSeen.IsZero() {
			firstSeen = time.Now()
		}
		if time.Since(firstSeen) < window {
			rejections++
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	b.produce(t, envs)
	r := start(t, b.defaultRetryArgs("name=hook,types=*,webhook="+h.URL+"/hook"))
	base := r.metricsURL()

	testpoll.Until(t, 90*time.Second, 50*time.Millisecond, "every event delivered, or some dead-lettered", func() bool {
		return len(h.delivered("/hook")) == len(envs) || scrape(t, base, `pulsebus_consumer_dead_letters_total{handler="hook"}`) > 0
	})
	require.Empty(t, b.deadLetters(t, "hook"), "dead letters after a %s outage", window)
	mu.Lock()
	require.Greater(t, rejections, 3, "the outage was seen")
	mu.Unlock()

	// Per key, the events arrived (first 2xx of each) in the order they
	// were produced.
	wantOrder := map[string][]string{}
	keyOf := map[string]string{} // the webhook does not send the Kafka key
	for _, e := range envs {
		wantOrder[e.Key] = append(wantOrder[e.Key], e.ID)
		keyOf[e.ID] = e.Key
	}
	gotOrder := map[string][]string{}
	seen := map[string]bool{}
	for _, d := range h.requests() {
		id := d.header.Get("ce-id")
		if d.status >= 300 || seen[id] {
			continue
		}
		seen[id] = true
		gotOrder[keyOf[id]] = append(gotOrder[keyOf[id]], id)
	}
	require.Equal(t, wantOrder, gotOrder)
	require.NoError(t, r.stop())
}

// The status policy of a webhook handler with the default retry policy: a
// 400 is dead-lettered at its first attempt and the partition flows on; a
// 429 with Retry-After is retried no sooner than the endpoint asked.
func TestRun_WebhookStatusPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	h := newHook(t)
	envs := keyedLessons(t, 3, 1)
	refused, throttled, fine := envs[0].ID, envs[1].ID, envs[2].ID
	h.setHeader(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("ce-id") == throttled {
			w.Header().Set("Retry-After", "2")
		}
	})
	h.setStatus(func(r *http.Request, n int) int {
		switch r.Header.Get("ce-id") {
		case refused:
			return http.StatusBadRequest
		case throttled:
			if n == 1 {
				return http.StatusTooManyRequests
			}
		}
		return http.StatusOK
	})
	b.produce(t, envs)
	r := start(t, b.defaultRetryArgs("name=hook,types=*,webhook="+h.URL+"/hook"))
	testpoll.Until(t, 60*time.Second, 25*time.Millisecond, "the last event delivered", func() bool { return h.delivered("/hook")[fine] == 1 })

	require.Equal(t, map[string]int{refused: 1}, b.deadLetters(t, "hook"), "the 400 dead-lettered at its first attempt, nothing else")
	var times []time.Time
	for _, d := range h.requests() {
		if d.header.Get("ce-id") == throttled {
			times = append(times, d.at)
		}
	}
	require.Len(t, times, 2, "the 429 retried once")
	require.GreaterOrEqual(t, times[1].Sub(times[0]), 1900*time.Millisecond, "Retry-After: 2 honoured")
	require.Equal(t, 1, h.delivered("/hook")[throttled])
	require.NoError(t, r.stop())
}

// A handler held in retries by an endpoint that keeps failing saves the
// progress made before the held event (what a crash would re-deliver stays
// bounded by the flush interval), and stops at once when the consumer is
// stopped, without dead-lettering the event; a handler whose retry-for
// budget is spent dead-letters it.
func TestRun_HeldRetryStopsOnShutdownAndBudgetDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	h := newHook(t)
	envs := keyedLessons(t, 3, 1)
	delivered, first := envs[0].ID, envs[1].ID
	h.setStatus(func(r *http.Request, _ int) int {
		if r.Header.Get("ce-id") == delivered {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	b.produce(t, envs)
	r := start(t, b.defaultRetryArgs(
		"name=held,types=*,webhook="+h.URL+"/held",
		"name=budget,types=*,webhook="+h.URL+"/budget,retry-for=3s",
	))
	savedOffset := func() int64 {
		var next int64
		err := b.db.Pool.QueryRow(context.Background(),
			`SELECT next_offset FROM pulsebus.handler_offsets WHERE group_id = $1 AND handler = 'held'`, b.group).Scan(&next)
		if err != nil {
			return -1
		}
		return next
	}
	attempts := func(path string) int {
		n := 0
		for _, d := range h.requests() {
			if d.path == path && d.header.Get("ce-id") == first {
				n++
			}
		}
		return n
	}
	// More attempts than the old default allowed (5): the event is held.
	testpoll.Until(t, 30*time.Second, 25*time.Millisecond, "the second event retried past 5 attempts", func() bool { return attempts("/held") >= 7 })
	testpoll.Until(t, 5*time.Second, 25*time.Millisecond, "the delivered event's progress saved while the next is held", func() bool { return savedOffset() == 1 })
	testpoll.Until(t, 30*time.Second, 25*time.Millisecond, "the budget handler dead-letters", func() bool { return len(b.deadLetters(t, "budget")) > 0 })
	var first0, last time.Time
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		`SELECT first_failed_at, last_failed_at, attempts FROM pulsebus.dead_letters WHERE handler = 'budget' AND event_id = $1`, first).
		Scan(&first0, &last, &n))
	// The last retry starts within the budget; with jitter, the pause it
	// would need next can end the budget a second or more early.
	require.GreaterOrEqual(t, last.Sub(first0), time.Second, "retried past the old policy's 1.2 s")
	require.LessOrEqual(t, last.Sub(first0), 3*time.Second+time.Second, "not past its 3 s budget (and an attempt)")
	require.Greater(t, n, 5)
	require.Empty(t, b.deadLetters(t, "held"))

	stopped := time.Now()
	require.NoError(t, r.stop())
	require.Less(t, time.Since(stopped), 5*time.Second, "a held retry stops promptly")
	require.Empty(t, b.deadLetters(t, "held"), "the held event is not dead-lettered on shutdown")
	require.Equal(t, int64(1), savedOffset(), "the held event is handled again by the next run")
}
