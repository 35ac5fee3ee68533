package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// Both handler kinds see every event once, in one run, and their offsets
// end at the high watermarks.
func TestConsumer_TxAndPlainHandlers(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	envs := events(t, 600, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, envs)

	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	rec := newRecorder()
	require.NoError(t, c.HandleTx("counter", []string{"lesson.*"}, countTx("counter")))
	require.NoError(t, c.Handle("plain", []string{"lesson.published"}, rec))
	require.NoError(t, c.HandleTx("other", []string{"quiz.submitted"}, countTx("other")))
	stop := start(t, c)

	testpoll.Until(t, 60*time.Second, 20*time.Millisecond, "all events counted", func() bool {
		d, _ := countHandled(t, b.db.Pool, "counter")
		n, _ := rec.total()
		return d == len(envs) && n == len(envs)
	})
	stop()
	d, total := countHandled(t, b.db.Pool, "counter")
	require.Equal(t, len(envs), d)
	require.Equal(t, len(envs), total, "a transactional handler ran an event twice")
	d, calls := rec.total()
	require.Equal(t, len(envs), d)
	require.Equal(t, len(envs), calls)
	other, _ := countHandled(t, b.db.Pool, "other")
	require.Zero(t, other)
	for _, h := range []string{"counter", "plain", "other"} {
		requireOffsetsAtEnd(t, b, "svc", h)
	}
}

// A failing handler is retried (its attempts counted) and then dead-lettered,
// while another handler on the same partition and events finishes all of
// them during those retries, each exactly once.
func TestConsumer_FailingHandlerRetriesAndDeadLetters_OtherHandlerNotBlocked(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	envs := events(t, 30, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, envs)
	poison := envs[0].ID

	hooks := newHookRecorder()
	cfg := b.config("svc")
	cfg.Hooks = hooks.hooks()
	c, err := dispatch.New(cfg)
	require.NoError(t, err)

	goodDone := make(chan struct{})
	var goodSeen atomic.Int32
	good := countTx("good")
	const maxAttempts = 4
	var attempts atomic.Int32
	var blocked atomic.Bool
	bad := newRecorder()
	bad.fail = func(env envelope.Envelope) error {
		if env.ID != poison {
			return nil
		}
		if attempts.Add(1) == maxAttempts {
			// The last attempt: the other handler must have finished
			// every event while this one was retrying the first.
			select {
			case <-goodDone:
			case <-time.After(30 * time.Second):
				blocked.Store(true)
			}
		}
		return errors.New("search index unavailable")
	}
	require.NoError(t, c.HandleTx("good", []string{"lesson.*"}, good))
	require.NoError(t, c.Handle("bad", []string{"lesson.*"}, bad,
		dispatch.WithRetry(dispatch.RetryPolicy{MaxAttempts: maxAttempts, InitialInterval: 50 * time.Millisecond, MaxInterval: 100 * time.Millisecond})))
	stop := start(t, c)

	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the good handler finishes", func() bool {
		d, _ := countHandled(t, b.db.Pool, "good")
		if d == len(envs) && goodSeen.CompareAndSwap(0, 1) {
			close(goodDone)
		}
		return d == len(envs)
	})
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the bad handler parks the poison event and handles the rest", func() bool {
		n, _ := bad.total()
		return len(deadLetters(t, b.db.Pool, "svc")) == 1 && n == len(envs)-1
	})
	stop()
	require.False(t, blocked.Load(), "the good handler did not finish while the bad one was retrying")

	require.Equal(t, int32(maxAttempts), attempts.Load(), "attempts on the poison event")
	require.Equal(t, maxAttempts-1, hooks.retriesOf("bad"))
	require.Zero(t, hooks.retriesOf("good"))
	dls := deadLetters(t, b.db.Pool, "svc")
	require.Len(t, dls, 1)
	require.Equal(t, "bad", dls[0].Handler)
	require.Equal(t, int64(0), dls[0].Offset)
	require.Equal(t, maxAttempts, dls[0].Attempts)
	require.Contains(t, dls[0].Error, "search index unavailable")
	require.Equal(t, poison, *dls[0].EventID)
	require.Equal(t, "lesson.published", *dls[0].EventType)
	require.Len(t, hooks.deadLetters(), 1)

	for id, n := range countsByEvent(t, b.db.Pool, "good") {
		require.Equal(t, 1, n, "good handler ran %s %d times", id, n)
	}
	distinct, calls := bad.total()
	require.Equal(t, len(envs)-1, distinct)
	require.Equal(t, len(envs)-1, calls, "the bad handler repeated events")
	require.Equal(t, map[dispatch.Outcome]int{dispatch.OutcomeOK: len(envs)}, hooks.outcomes("good"))
	require.Equal(t, map[dispatch.Outcome]int{dispatch.OutcomeOK: len(envs) - 1, dispatch.OutcomeDeadLettered: 1}, hooks.outcomes("bad"))
	requireOffsetsAtEnd(t, b, "svc", "good")
	requireOffsetsAtEnd(t, b, "svc", "bad")
}

// commitGroupOffset sets the Kafka group's committed offset of partition
// 0, as `kafka-consumer-groups --reset-offsets` would.
func commitGroupOffset(t *testing.T, b *bundle, group string, offset int64) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(b.kc.Addrs...), Timeout: 10 * time.Second, Transport: tr}
	resp, err := cl.OffsetCommit(context.Background(), &kafka.OffsetCommitRequest{
		GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{b.topic: {{Partition: 0, Offset: offset}}},
	})
	require.NoError(t, err)
	for _, ps := range resp.Topics {
		for _, p := range ps {
			require.NoError(t, p.Error)
		}
	}
}

// An older event delivered again after newer ones is not run again: not
// when the relay republishes it (same ce_id at a later offset, found in
// the dedupe window, also after a restart rebuilt the window from Kafka),
// and not when the Kafka group offset is reset to the start (the handler
// offsets, not the group offset, say where each handler is).
func TestConsumer_OlderEventRedeliveredIsNotRunAgain(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	envs := events(t, 20, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, envs)

	run := func(hooks *hookRecorder, rec *recorder) func() {
		cfg := b.config("svc")
		cfg.Hooks = hooks.hooks()
		c, err := dispatch.New(cfg)
		require.NoError(t, err)
		require.NoError(t, c.HandleTx("tx", []string{"lesson.*"}, countTx("tx")))
		require.NoError(t, c.Handle("plain", []string{"lesson.*"}, rec))
		return start(t, c)
	}
	rec := newRecorder()
	hooks := newHookRecorder()
	stop := run(hooks, rec)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the first events", func() bool {
		d, _ := countHandled(t, b.db.Pool, "tx")
		n, _ := rec.total()
		return d == 20 && n == 20
	})
	// The relay republishes two older events after the newer ones, then
	// new events follow.
	more := events(t, 5, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, []envelope.Envelope{envs[3], envs[7]})
	produceToKafka(t, b.kc.Addrs, b.topic, more)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the new events", func() bool {
		d, _ := countHandled(t, b.db.Pool, "tx")
		n, _ := rec.total()
		return d == 25 && n == 25
	})
	stop()
	for _, h := range []string{"tx", "plain"} {
		require.Equal(t, 2, hooks.outcomes(h)[dispatch.OutcomeSkippedDuplicate], "handler %s", h)
		requireOffsetsAtEnd(t, b, "svc", h)
	}

	// After a restart, with the group offset reset to 0 and an older event
	// republished once more.
	commitGroupOffset(t, b, "svc", 0)
	produceToKafka(t, b.kc.Addrs, b.topic, []envelope.Envelope{envs[11], more[2]})
	last := events(t, 3, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, last)
	hooks2 := newHookRecorder()
	stop = run(hooks2, rec)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the last events", func() bool {
		d, _ := countHandled(t, b.db.Pool, "tx")
		n, _ := rec.total()
		return d == 28 && n == 28
	})
	stop()
	for _, h := range []string{"tx", "plain"} {
		require.Equal(t, map[dispatch.Outcome]int{dispatch.OutcomeOK: 3, dispatch.OutcomeSkippedDuplicate: 2}, hooks2.outcomes(h), "handler %s", h)
		requireOffsetsAtEnd(t, b, "svc", h)
	}
	for id, n := range countsByEvent(t, b.db.Pool, "tx") {
		require.Equal(t, 1, n, "event %s", id)
	}
	distinct, calls := rec.total()
	require.Equal(t, 28, distinct)
	require.Equal(t, 28, calls)
}

// Replaying one handler from earliest re-delivers all its events, live
// (even right after the notification connection was lost), while the
// other handler sees none of them again.
func TestConsumer_ReplayOneHandlerLive(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	envs := events(t, 40, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, envs)
	hooks := newHookRecorder()
	cfg := b.config("svc")
	cfg.Hooks = hooks.hooks()
	c, err := dispatch.New(cfg)
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("a", []string{"lesson.*"}, countTx("a")))
	require.NoError(t, c.HandleTx("b", []string{"lesson.*"}, countTx("b")))
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "both handlers done", func() bool {
		a, _ := countHandled(t, b.db.Pool, "a")
		bb, _ := countHandled(t, b.db.Pool, "b")
		return a == len(envs) && bb == len(envs)
	})

	// The notification connection dies first: the consumer listens again
	// and does not miss the replay.
	var killed bool
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN '||$1`, dispatch.NotifyChannelForTest).Scan(&killed))
	require.True(t, killed)
	admin := &dispatch.Admin{Pool: b.db.Pool, Brokers: b.kc.Addrs}
	rows, err := admin.Replay(context.Background(), dispatch.ReplayParams{
		Group: "svc", Handler: "a", Partition: -1, To: dispatch.ReplayTarget{Kind: "earliest"}})
	require.NoError(t, err)
	require.Len(t, rows, 2)
	for _, r := range rows {
		require.Zero(t, r.NextOffset)
	}
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "handler a re-handles every event", func() bool {
		_, total := countHandled(t, b.db.Pool, "a")
		return total == 2*len(envs)
	})
	// Handler b's reader is unaffected: give a wrong re-delivery the time
	// a's took, then check.
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 2, "lesson.published"))
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "a later event reaches both", func() bool {
		a, _ := countHandled(t, b.db.Pool, "a")
		bb, _ := countHandled(t, b.db.Pool, "b")
		return a == len(envs)+2 && bb == len(envs)+2
	})
	stop()
	for id, n := range countsByEvent(t, b.db.Pool, "b") {
		require.Equal(t, 1, n, "handler b re-ran %s", id)
	}
	a := countsByEvent(t, b.db.Pool, "a")
	for _, e := range envs {
		require.Equal(t, 2, a[e.ID], "handler a, event %s", e.ID)
	}
	require.Equal(t, len(envs)+2, hooks.outcomes("b")[dispatch.OutcomeOK])
	require.Equal(t, 2*len(envs)+2, hooks.outcomes("a")[dispatch.OutcomeOK])
	require.Len(t, hooks.rebalances, 1, "the replay needed no rebalance")

	// A replay to an offset on one partition.
	_, err = admin.Replay(context.Background(), dispatch.ReplayParams{
		Group: "svc", Handler: "b", Topic: b.topic, Partition: 0, To: dispatch.ReplayTarget{Kind: "offset", Offset: 3}})
	require.NoError(t, err)
	require.Equal(t, int64(3), offsetsOf(t, b.db.Pool, "svc", "b")[0])
	_, err = admin.Replay(context.Background(), dispatch.ReplayParams{Group: "svc", Handler: "nobody", Partition: -1,
		To: dispatch.ReplayTarget{Kind: "earliest"}})
	require.ErrorContains(t, err, "group svc has no handler nobody (its handlers: a, b)")
}

// typedLesson decodes with envelope.Decode, as a typed handler does.
func typedLesson(name string) dispatch.TxHandlerFunc {
	return func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
		if _, err := envelope.Decode[lessonEvent](env); err != nil {
			return err
		}
		return countTx(name)(ctx, tx, env)
	}
}

// Malformed messages end in the dead letters with their reasons, for every
// handler that would have wanted them; the consumer neither crashes nor
// stalls, and later messages are handled.
func TestConsumer_MalformedMessagesDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	valid := func(typ string) kafka.Message {
		m, err := envelope.ToMessage(events(t, 1, typ)[0])
		require.NoError(t, err)
		return m
	}
	garbage := kafka.Message{Value: []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01}}
	truncated := valid("lesson.published")
	truncated.Headers = truncated.Headers[:2] // ce_specversion, ce_id: the rest was cut off
	badTime := valid("lesson.published")
	for i, h := range badTime.Headers {
		if h.Key == envelope.HeaderTime {
			badTime.Headers[i].Value = []byte("yesterday")
		}
	}
	dupType := valid("lesson.published")
	dupType.Headers = append(dupType.Headers, kafka.Header{Key: "CE_TYPE", Value: []byte("lesson.published")})
	wrongType := valid("quiz.submitted")
	badJSON := valid("lesson.published")
	badJSON.Value = []byte(`{"n": 1`)
	msgs := []kafka.Message{valid("lesson.published"), garbage, truncated, badTime, dupType, wrongType, badJSON, valid("lesson.published")}
	produceRawToKafka(t, b.kc.Addrs, b.topic, msgs)

	hooks := newHookRecorder()
	cfg := b.config("svc")
	cfg.Hooks = hooks.hooks()
	c, err := dispatch.New(cfg)
	require.NoError(t, err)
	rec := newRecorder()
	require.NoError(t, c.HandleTx("typed", []string{"*"}, typedLesson("typed")))
	require.NoError(t, c.Handle("plain", []string{"lesson.*"}, rec))
	stop := start(t, c)

	want := map[string]string{ // handler@offset → reason
		"typed@1": "ce_specversion: missing", "plain@1": "ce_specversion: missing",
		"typed@2": "ce_type: missing", "plain@2": "ce_type: missing",
		"typed@3": `ce_time: "yesterday" is not an RFC 3339 time`, "plain@3": `ce_time: "yesterday" is not an RFC 3339 time`,
		"typed@4": "ce_type: header appears more than once", "plain@4": "ce_type: header appears more than once",
		"typed@5": `event type "quiz.submitted" cannot decode into`,
		"typed@6": "payload: decode lesson.published",
	}
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the bad messages dead-lettered", func() bool {
		return len(deadLetters(t, b.db.Pool, "svc")) == len(want)
	})
	// A message after the bad ones is handled by both.
	later := events(t, 1, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, later)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "a later message handled", func() bool {
		n, _ := countHandled(t, b.db.Pool, "typed")
		d, _ := rec.total()
		return n == 3 && d == 4 // typed: 2 valid + later; plain also the bad-JSON one
	})
	stop()

	got := map[string]string{}
	for _, d := range deadLetters(t, b.db.Pool, "svc") {
		got[fmt.Sprintf("%s@%d", d.Handler, d.Offset)] = d.Error
		wantAttempts := 0 // not a valid envelope: the handler never ran
		if d.Offset >= 5 {
			wantAttempts = 1 // the handler's decode failed: permanent, not retried
		}
		require.Equal(t, wantAttempts, d.Attempts, "%s@%d", d.Handler, d.Offset)
		require.Equal(t, msgs[d.Offset].Value, d.Value, "the raw value is kept")
		require.Len(t, d.Headers, len(msgs[d.Offset].Headers), "the raw headers are kept")
	}
	require.Len(t, got, len(want))
	for k, reason := range want {
		require.Contains(t, got[k], reason, k)
	}
	require.Zero(t, hooks.retriesOf("typed"))
	require.Zero(t, hooks.retriesOf("plain"))
	requireOffsetsAtEnd(t, b, "svc", "typed")
	requireOffsetsAtEnd(t, b, "svc", "plain")
}

// A poison event in a batch is isolated: the batch is retried one event at
// a time, the poison event alone is dead-lettered, every other event commits
// once.
func TestConsumer_BatchPoisonIsolated(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	envs := events(t, 100, "lesson.published")
	envs[37].Payload = []byte(`{"poison": true}`)
	produceToKafka(t, b.kc.Addrs, b.topic, envs)

	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	var mu sync.Mutex
	var sizes []int
	poisonCalls := 0
	h := dispatch.BatchTxHandlerFunc(func(ctx context.Context, tx pgx.Tx, batch []envelope.Envelope) error {
		mu.Lock()
		sizes = append(sizes, len(batch))
		for _, e := range batch {
			if strings.Contains(string(e.Payload), "poison") {
				poisonCalls++
				mu.Unlock()
				return errors.New("poison pill")
			}
		}
		mu.Unlock()
		return countBatchTx("batch")(ctx, tx, batch)
	})
	require.NoError(t, c.HandleBatchTx("batch", []string{"lesson.*"}, h, dispatch.WithBatchSize(20),
		dispatch.WithRetry(dispatch.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond})))
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "all but the poison event counted and the poison dead-lettered", func() bool {
		d, _ := countHandled(t, b.db.Pool, "batch")
		return d == len(envs)-1 && len(deadLetters(t, b.db.Pool, "svc")) == 1
	})
	stop()
	counts := countsByEvent(t, b.db.Pool, "batch")
	require.Len(t, counts, len(envs)-1)
	for _, e := range envs {
		if e.ID == envs[37].ID {
			require.NotContains(t, counts, e.ID)
			continue
		}
		require.Equal(t, 1, counts[e.ID], "event %s", e.ID)
	}
	dls := deadLetters(t, b.db.Pool, "svc")
	require.Equal(t, int64(37), dls[0].Offset)
	require.Equal(t, 2, dls[0].Attempts)
	require.Contains(t, dls[0].Error, "poison pill")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 3, poisonCalls, "once in its batch, then two attempts alone")
	batched := 0
	for _, n := range sizes {
		if n > 1 {
			batched++
		}
	}
	require.Positive(t, batched, "events were handled in batches: %v", sizes)
	requireOffsetsAtEnd(t, b, "svc", "batch")
}

// Redrive runs the handler again on dead-lettered events and deletes them on
// success; a failure keeps the row with one more attempt; concurrent
// redrives of a row run the handler once.
func TestConsumer_Redrive(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	envs := events(t, 6, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, envs)
	var broken atomic.Bool
	broken.Store(true)
	failFor := map[string]bool{envs[1].ID: true, envs[2].ID: true, envs[4].ID: true}
	var slow atomic.Bool
	txh := dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
		if broken.Load() && failFor[env.ID] || env.ID == envs[4].ID {
			return dispatch.Permanent(errors.New("not yet"))
		}
		if slow.Load() {
			time.Sleep(200 * time.Millisecond) // holds the row while a concurrent redrive tries it
		}
		return countTx("tx")(ctx, tx, env)
	})
	rec := newRecorder()
	rec.fail = func(env envelope.Envelope) error {
		if broken.Load() && env.ID == envs[3].ID {
			return dispatch.Permanent(errors.New("webhook said 400"))
		}
		return nil
	}
	newConsumer := func() *dispatch.Consumer {
		c, err := dispatch.New(b.config("svc"))
		require.NoError(t, err)
		require.NoError(t, c.HandleTx("tx", []string{"lesson.*"}, txh))
		require.NoError(t, c.Handle("plain", []string{"lesson.*"}, rec))
		return c
	}
	c := newConsumer()
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "four dead letters", func() bool { return len(deadLetters(t, b.db.Pool, "svc")) == 4 })
	stop()

	broken.Store(false)
	ctx := context.Background()
	c = newConsumer() // redrive does not need Run
	_, err := (&dispatch.Admin{Pool: b.db.Pool, Consumer: c}).Redrive(ctx, dispatch.DeadLetterFilter{})
	require.Error(t, err)
	dls := deadLetters(t, b.db.Pool, "svc")
	byEvent := map[string]dispatch.DeadLetter{}
	for _, d := range dls {
		byEvent[*d.EventID] = d
	}

	// Two concurrent redrives of one row: the handler runs once.
	slow.Store(true)
	var wg sync.WaitGroup
	results := make([]dispatch.RedriveResult, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := (&dispatch.Admin{Pool: b.db.Pool, Consumer: c}).Redrive(ctx, dispatch.DeadLetterFilter{ID: byEvent[envs[1].ID].ID})
			if err == nil || strings.Contains(err.Error(), "no dead letter") {
				results[i] = res
			}
		}()
	}
	wg.Wait()
	slow.Store(false)
	require.Equal(t, 1, results[0].Redriven+results[1].Redriven, "%+v", results)
	require.Equal(t, 1, countsByEvent(t, b.db.Pool, "tx")[envs[1].ID])

	// The rest of tx's: one succeeds, one still fails.
	res, err := (&dispatch.Admin{Pool: b.db.Pool, Consumer: c}).Redrive(ctx, dispatch.DeadLetterFilter{Handler: "tx"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Redriven)
	require.Equal(t, 1, res.Failed)
	require.Len(t, res.Errors, 1)
	require.Contains(t, res.Errors[0], "not yet")
	require.Equal(t, 1, countsByEvent(t, b.db.Pool, "tx")[envs[2].ID])
	left, err := (&dispatch.Admin{Pool: b.db.Pool}).ListDeadLetters(ctx, dispatch.DeadLetterFilter{Group: "svc", Handler: "tx"})
	require.NoError(t, err)
	require.Len(t, left, 1)
	require.Equal(t, envs[4].ID, *left[0].EventID)
	require.Equal(t, byEvent[envs[4].ID].Attempts+1, left[0].Attempts)

	// A consumer without the plain handler reports its row as failed and
	// leaves it as it was.
	onlyTx, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	require.NoError(t, onlyTx.HandleTx("tx", []string{"lesson.*"}, txh))
	res, err = (&dispatch.Admin{Pool: b.db.Pool, Consumer: onlyTx}).Redrive(ctx, dispatch.DeadLetterFilter{ID: byEvent[envs[3].ID].ID})
	require.NoError(t, err)
	require.Equal(t, 1, res.Failed)
	require.Len(t, res.Errors, 1)
	require.Contains(t, res.Errors[0], "plain: handler is not registered")
	kept, err := (&dispatch.Admin{Pool: b.db.Pool}).ListDeadLetters(ctx, dispatch.DeadLetterFilter{Group: "svc", Handler: "plain"})
	require.NoError(t, err)
	require.Len(t, kept, 1)
	require.Equal(t, byEvent[envs[3].ID].Error, kept[0].Error)
	require.Equal(t, byEvent[envs[3].ID].Attempts, kept[0].Attempts)

	// The plain handler's, by id.
	res, err = (&dispatch.Admin{Pool: b.db.Pool, Consumer: c}).Redrive(ctx, dispatch.DeadLetterFilter{ID: byEvent[envs[3].ID].ID})
	require.NoError(t, err)
	require.Equal(t, 1, res.Redriven)
	distinct, _ := rec.total()
	require.Equal(t, len(envs), distinct)
	_, err = (&dispatch.Admin{Pool: b.db.Pool, Consumer: c}).Redrive(ctx, dispatch.DeadLetterFilter{ID: byEvent[envs[3].ID].ID})
	require.ErrorContains(t, err, "no dead letter")
	require.Len(t, deadLetters(t, b.db.Pool, "svc"), 1)
}

// The lag reaches 0 once a handler caught up, and is reported where no
// fetch returns a high watermark: a topic nobody wrote to yet, and a
// restart with nothing new (and no dedupe window to rebuild).
func TestConsumer_LagReported(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	b.kc.CreateTopic(t, "quiet", 1)
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 30, "lesson.published"))
	run := func(hooks *hookRecorder, dedupeWindow int) (stop func()) {
		cfg := b.config("svc")
		cfg.Topics = append(cfg.Topics, "quiet")
		cfg.Hooks = hooks.hooks()
		cfg.DedupeWindow = dedupeWindow
		c, err := dispatch.New(cfg)
		require.NoError(t, err)
		require.NoError(t, c.HandleTx("tx", []string{"lesson.*"}, countTx("tx")))
		return start(t, c)
	}
	caughtUp := func(hooks *hookRecorder) func() bool {
		return func() bool {
			for _, tp := range []struct {
				topic     string
				partition int
			}{{b.topic, 0}, {b.topic, 1}, {"quiet", 0}} {
				if lag, ok := hooks.lagOf("tx", tp.topic, tp.partition); !ok || lag != 0 {
					return false
				}
			}
			return true
		}
	}
	first := newHookRecorder()
	stop := run(first, 0)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "lag 0 on every partition", caughtUp(first))
	stop()
	d, _ := countHandled(t, b.db.Pool, "tx")
	require.Equal(t, 30, d)

	again := newHookRecorder()
	stop = run(again, -1)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "lag 0 after a restart with nothing new", caughtUp(again))
	stop()
}

// Middleware wraps plain and per-event transactional handlers, consumer-wide
// first, and sees the transaction and the Kafka message.
func TestConsumer_Middleware(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	envs := events(t, 3, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, envs)
	var mu sync.Mutex
	var trace []string
	mw := func(name string) dispatch.Middleware {
		return func(next dispatch.Handler) dispatch.Handler {
			return dispatch.HandlerFunc(func(ctx context.Context, env envelope.Envelope) error {
				m, ok := dispatch.MessageFromContext(ctx)
				mu.Lock()
				trace = append(trace, fmt.Sprintf("%s tx=%t msg=%t@%d", name, dispatch.TxFromContext(ctx) != nil, ok, m.Offset))
				mu.Unlock()
				return next.Handle(ctx, env)
			})
		}
	}
	cfg := b.config("svc")
	cfg.Middleware = []dispatch.Middleware{mw("global")}
	c, err := dispatch.New(cfg)
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("tx", []string{"lesson.*"}, countTx("tx"), dispatch.WithMiddleware(mw("tx-own"))))
	require.NoError(t, c.Handle("plain", []string{"lesson.*"}, dispatch.HandlerFunc(func(ctx context.Context, env envelope.Envelope) error {
		mu.Lock()
		trace = append(trace, "plain handler")
		mu.Unlock()
		return nil
	})))
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "all handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(trace) == 3*4
	})
	stop()
	var txTrace, plainTrace []string
	for _, s := range trace {
		if strings.Contains(s, "tx=true") || strings.HasPrefix(s, "tx-own") {
			txTrace = append(txTrace, s)
		} else {
			plainTrace = append(plainTrace, s)
		}
	}
	require.Equal(t, []string{
		"global tx=true msg=true@0", "tx-own tx=true msg=true@0",
		"global tx=true msg=true@1", "tx-own tx=true msg=true@1",
		"global tx=true msg=true@2", "tx-own tx=true msg=true@2",
	}, txTrace)
	require.Equal(t, []string{
		"global tx=false msg=true@0", "plain handler",
		"global tx=false msg=true@1", "plain handler",
		"global tx=false msg=true@2", "plain handler",
	}, plainTrace)
}

// Handlers get the types they registered: exact names, prefix.* and *.
func TestConsumer_TypeMatching(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	types := []string{"lesson.published", "lesson.archived", "lessons.created", "lesson", "quiz.submitted", "quiz.created", "lesson.video.added"}
	var envs []envelope.Envelope
	for _, typ := range types {
		envs = append(envs, events(t, 1, typ)...)
	}
	produceToKafka(t, b.kc.Addrs, b.topic, envs)
	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	seen := map[string]*[]string{}
	var mu sync.Mutex
	register := func(name string, types ...string) {
		got := &[]string{}
		seen[name] = got
		require.NoError(t, c.Handle(name, types, dispatch.HandlerFunc(func(ctx context.Context, env envelope.Envelope) error {
			mu.Lock()
			*got = append(*got, env.Type)
			mu.Unlock()
			return nil
		})))
	}
	register("prefix", "lesson.*", "quiz.submitted")
	register("all", "*")
	register("exact", "lesson")
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "all handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(*seen["all"]) == len(types) && len(*seen["prefix"]) == 4 && len(*seen["exact"]) == 1
	})
	stop()
	requireOffsetsAtEnd(t, b, "svc", "prefix")
	requireOffsetsAtEnd(t, b, "svc", "exact")
	require.Equal(t, []string{"lesson.published", "lesson.archived", "quiz.submitted", "lesson.video.added"}, *seen["prefix"])
	require.Equal(t, types, *seen["all"])
	require.Equal(t, []string{"lesson"}, *seen["exact"])
}

// A handler without an offset row starts at the group's committed offset;
// without one, at Config.StartOffset.
func TestConsumer_StartOffsets(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	first := events(t, 10, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, first)

	// Group svc, handler a: from the first offset (default StartOffset).
	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("a", []string{"*"}, countTx("a")))
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "a handles the first events", func() bool {
		n, _ := countHandled(t, b.db.Pool, "a")
		return n == 10
	})
	stop() // commits the group offset, 10

	// A new handler b in group svc starts at the group's offset; handler
	// c of a new group with StartOffset LastOffset at the end.
	c, err = dispatch.New(b.config("svc"))
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("a", []string{"*"}, countTx("a")))
	require.NoError(t, c.HandleTx("b", []string{"*"}, countTx("b")))
	stop = start(t, c)
	cfg := b.config("fresh")
	cfg.StartOffset = kafka.LastOffset
	c2, err := dispatch.New(cfg)
	require.NoError(t, err)
	require.NoError(t, c2.HandleTx("c", []string{"*"}, countTx("c")))
	stop2 := start(t, c2)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the new handlers have offset rows", func() bool {
		return len(offsetsOf(t, b.db.Pool, "svc", "b")) == 1 && len(offsetsOf(t, b.db.Pool, "fresh", "c")) == 1
	})
	require.Equal(t, int64(10), offsetsOf(t, b.db.Pool, "svc", "b")[0])
	require.Equal(t, int64(10), offsetsOf(t, b.db.Pool, "fresh", "c")[0])
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 5, "lesson.published"))
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "everyone handles the new events", func() bool {
		a, _ := countHandled(t, b.db.Pool, "a")
		bn, _ := countHandled(t, b.db.Pool, "b")
		cn, _ := countHandled(t, b.db.Pool, "c")
		return a == 15 && bn == 5 && cn == 5
	})
	stop()
	stop2()
	_, total := countHandled(t, b.db.Pool, "a")
	require.Equal(t, 15, total)
}

// Stopping drains: a handler in flight when the context ends finishes and
// its progress is saved; one that outlives Config.DrainTimeout has its
// context cancelled and is neither dead-lettered nor counted as done.
func TestConsumer_Drain(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	envs := events(t, 3, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, envs)
	cfg := b.config("svc")
	cfg.DrainTimeout = 300 * time.Millisecond
	c, err := dispatch.New(cfg)
	require.NoError(t, err)
	slowIn, stuckIn := make(chan struct{}), make(chan struct{})
	var slowOnce, stuckOnce sync.Once
	var cancelled atomic.Bool
	require.NoError(t, c.HandleTx("slow", []string{"*"}, dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
		if env.ID == envs[0].ID {
			slowOnce.Do(func() { close(slowIn) })
			<-stuckIn
			time.Sleep(150 * time.Millisecond) // finishes within the drain timeout
		}
		return countTx("slow")(ctx, tx, env)
	})))
	require.NoError(t, c.HandleTx("stuck", []string{"*"}, dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
		if env.ID == envs[0].ID {
			stuckOnce.Do(func() { close(stuckIn) })
			<-ctx.Done() // never finishes by itself
			cancelled.Store(true)
			return ctx.Err()
		}
		return countTx("stuck")(ctx, tx, env)
	})))
	stop := start(t, c)
	<-slowIn
	<-stuckIn
	t0 := time.Now()
	stop()
	require.Less(t, time.Since(t0), 5*time.Second)
	require.True(t, cancelled.Load(), "the stuck handler's context was cancelled")
	n, _ := countHandled(t, b.db.Pool, "slow")
	require.Positive(t, n, "the in-flight event finished")
	require.GreaterOrEqual(t, offsetsOf(t, b.db.Pool, "svc", "slow")[0], int64(n), "and its progress was saved")
	require.Equal(t, int64(0), offsetsOf(t, b.db.Pool, "svc", "stuck")[0], "the cancelled event is not done")
	require.Empty(t, deadLetters(t, b.db.Pool, "svc"), "shutdown parks nothing")
}

func TestNew_Validation(t *testing.T) {
	t.Parallel()
	t.Run("every missing required field is reported", func(t *testing.T) {
		_, err := dispatch.New(dispatch.Config{})
		require.Error(t, err)
		for _, want := range []string{"Config.Brokers", "Config.Group", "Config.Topics", "Config.Pool"} {
			require.ErrorContains(t, err, want)
		}
	})
	base := func() dispatch.Config {
		return dispatch.Config{Brokers: []string{"127.0.0.1:1"}, Group: "g", Topics: []string{"t"}}
	}
	cases := map[string]func(*dispatch.Config){
		"Config.Topics[0]":          func(c *dispatch.Config) { c.Topics = []string{"bad topic"} },
		"Config.Group":              func(c *dispatch.Config) { c.Group = "g\x00" },
		"Config.FlushInterval":      func(c *dispatch.Config) { c.FlushInterval = -time.Second },
		"Config.QueueCapacity":      func(c *dispatch.Config) { c.QueueCapacity = -1 },
		"Config.DedupeWindow":       func(c *dispatch.Config) { c.DedupeWindow = -2 },
		"Config.HeartbeatInterval":  func(c *dispatch.Config) { c.SessionTimeout = time.Second },
		"Config.Retry.MaxAttempts":  func(c *dispatch.Config) { c.Retry.MaxAttempts = -1 },
		"Config.StartOffset":        func(c *dispatch.Config) { c.StartOffset = 5 },
		"Config.Retry.MaxInterval":  func(c *dispatch.Config) { c.Retry.MaxInterval = -1 },
		"Config.DrainTimeout":       func(c *dispatch.Config) { c.DrainTimeout = -1 },
		"Config.FetchMaxBytes":      func(c *dispatch.Config) { c.FetchMaxBytes = -1 },
		"Config.Retry.MaxElapsed":   func(c *dispatch.Config) { c.Retry.MaxElapsed = -1 },
		"Config.Retry.InitialInter": func(c *dispatch.Config) { c.Retry.InitialInterval = -1 },
	}
	for field, mutate := range cases {
		t.Run(field, func(t *testing.T) {
			cfg := base()
			mutate(&cfg)
			_, err := dispatch.New(cfg)
			require.ErrorContains(t, err, field)
		})
	}
}

// unconnectedPool is a pool that never connects: pgxpool dials lazily, so
// validation tests need neither PostgreSQL nor Kafka.
func unconnectedPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://unused@127.0.0.1:1/unused")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

func TestConsumer_RegistrationErrors(t *testing.T) {
	t.Parallel()
	cfg := dispatch.Config{Brokers: []string{"127.0.0.1:1"}, Group: "svc", Topics: []string{"events"}, Pool: unconnectedPool(t)}
	c, err := dispatch.New(cfg)
	require.NoError(t, err)
	noop := dispatch.HandlerFunc(func(context.Context, envelope.Envelope) error { return nil })
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"empty name", c.Handle("", []string{"*"}, noop), "non-empty"},
		{"name with a space", c.Handle("a b", []string{"*"}, noop), "without spaces"},
		{"no types", c.Handle("h", nil, noop), "no event types"},
		{"star without a dot", c.Handle("h", []string{"lesson*"}, noop), "prefix.*"},
		{"empty prefix", c.Handle("h", []string{".*"}, noop), "prefix.*"},
		{"nil handler", c.Handle("h", []string{"*"}, nil), "is nil"},
		{"nil tx handler", c.HandleTx("h", []string{"*"}, nil), "is nil"},
		{"negative batch size", c.Handle("h", []string{"*"}, noop, dispatch.WithBatchSize(-1)), "WithBatchSize"},
		{"negative retry", c.Handle("h", []string{"*"}, noop, dispatch.WithRetry(dispatch.RetryPolicy{MaxAttempts: -1})),
			"WithRetry.MaxAttempts"},
	} {
		t.Run(tc.name, func(t *testing.T) { require.ErrorContains(t, tc.err, tc.want) })
	}
	t.Run("a name registers once", func(t *testing.T) {
		require.NoError(t, c.Handle("h", []string{"*"}, noop))
		require.ErrorContains(t, c.Handle("h", []string{"*"}, noop), "registered twice")
	})
	t.Run("Run needs a handler", func(t *testing.T) {
		empty, err := dispatch.New(cfg)
		require.NoError(t, err)
		require.ErrorContains(t, empty.Run(context.Background()), "no handlers")
	})
}

// Each Admin operation says which field it lacks before it touches
// anything.
func TestAdmin_MissingFields(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pgOnly := &dispatch.Admin{Pool: unconnectedPool(t)}
	_, err := (&dispatch.Admin{}).ListOffsets(ctx, "g")
	require.EqualError(t, err, "dispatch: Admin.ListOffsets needs Admin.Pool")
	_, err = (&dispatch.Admin{}).ListDeadLetters(ctx, dispatch.DeadLetterFilter{Group: "g"})
	require.EqualError(t, err, "dispatch: Admin.ListDeadLetters needs Admin.Pool")
	_, err = pgOnly.Lag(ctx, "g")
	require.EqualError(t, err, "dispatch: Admin.Lag reads Kafka: it needs Admin.Brokers")
	_, err = pgOnly.Replay(ctx, dispatch.ReplayParams{Group: "g", Handler: "h", Partition: -1, To: dispatch.ReplayTarget{Kind: "latest"}})
	require.EqualError(t, err, "dispatch: Admin.Replay reads Kafka: it needs Admin.Brokers")
	_, err = pgOnly.Redrive(ctx, dispatch.DeadLetterFilter{Handler: "h"})
	require.EqualError(t, err, "dispatch: Admin.Redrive runs the handlers of a consumer: it needs Admin.Consumer")
}

func TestParseReplayTarget(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]dispatch.ReplayTarget{
		"earliest":             {Kind: "earliest"},
		"latest":               {Kind: "latest"},
		"42":                   {Kind: "offset", Offset: 42},
		"2026-01-02T03:04:05Z": {Kind: "time", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
	} {
		t.Run(in, func(t *testing.T) {
			got, err := dispatch.ParseReplayTarget(in)
			require.NoError(t, err)
			require.True(t, got.Time.Equal(want.Time))
			got.Time, want.Time = time.Time{}, time.Time{}
			require.Equal(t, want, got)
		})
	}
	for _, bad := range []string{"", "-1", "soon", "2026-01-02"} {
		t.Run("bad "+bad, func(t *testing.T) {
			_, err := dispatch.ParseReplayTarget(bad)
			require.Error(t, err)
		})
	}
}

// A topic created after the consumer started, and partitions added to it
// later, are consumed: the member notices and rejoins, and the rebalance
// assigns them.
func TestConsumer_NewTopicsAndPartitions(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	b.topic = "later"
	hooks := newHookRecorder()
	cfg := b.config("svc")
	cfg.Hooks = hooks.hooks()
	cfg.PartitionWatchInterval = 200 * time.Millisecond
	c, err := dispatch.New(cfg)
	require.NoError(t, err)
	rec := newRecorder()
	require.NoError(t, c.Handle("plain", []string{"*"}, rec))
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "a first, empty, generation", func() bool {
		hooks.mu.Lock()
		defer hooks.mu.Unlock()
		return len(hooks.rebalances) == 1
	})

	b.kc.CreateTopic(t, b.topic, 1)
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 10, "lesson.published"))
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the new topic consumed", func() bool { n, _ := rec.total(); return n == 10 })

	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	cl := &kafka.Client{Addr: kafka.TCP(b.kc.Addrs...), Timeout: 10 * time.Second, Transport: tr}
	resp, err := cl.CreatePartitions(context.Background(), &kafka.CreatePartitionsRequest{
		Topics: []kafka.TopicPartitionsConfig{{Name: b.topic, Count: 3}}})
	require.NoError(t, err)
	for _, e := range resp.Errors {
		require.NoError(t, e)
	}
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 30, "lesson.published"))
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the new partitions consumed", func() bool { n, _ := rec.total(); return n == 40 })
	stop()
	require.Len(t, b.kc.EndOffsets(t, b.topic), 3)
	requireOffsetsAtEnd(t, b, "svc", "plain")
	hooks.mu.Lock()
	defer hooks.mu.Unlock()
	require.Equal(t, map[string][]int{b.topic: {0, 1, 2}}, hooks.rebalances[len(hooks.rebalances)-1])
	require.LessOrEqual(t, len(hooks.rebalances), 5, "no rebalance storm: %v", hooks.rebalances)
}
