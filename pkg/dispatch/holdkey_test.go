package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// keyedEvents builds one event per key in keys, in that order, with ids
// that name the key and the event's position ("K-1").
func keyedEvents(keys ...string) []envelope.Envelope {
	out := make([]envelope.Envelope, len(keys))
	for i, k := range keys {
		out[i] = envelope.Envelope{ID: fmt.Sprintf("%s-%d", k, i+1), Type: "lesson.published", Source: "test",
			Time: time.Now().UTC().Truncate(time.Microsecond), Key: k, ContentType: envelope.ContentTypeJSON,
			Payload: []byte(`{}`)}
	}
	return out
}

// applied returns the event ids handler applied, in the order it applied
// them (the applied table's sequence).
func applied(t *testing.T, pool *pgxpool.Pool, handler string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_id FROM applied WHERE handler = $1 ORDER BY seq`, handler)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

// onlyKey keeps the ids of key k ("k-N"), in order.
func onlyKey(ids []string, k string) []string {
	var out []string
	for _, id := range ids {
		if len(id) > len(k) && id[:len(k)+1] == k+"-" {
			out = append(out, id)
		}
	}
	return out
}

// With WithKeyOrder, a key's events wait behind its dead letter while the
// other keys go on; a successful redrive runs the head and then the held
// events in Kafka order, and deleting a head releases its events without
// it. Each event is applied exactly once by a transactional handler and
// seen in order by a plain one.
func TestConsumer_WithKeyOrderHoldsTheKeyBehindItsDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	_, err := b.db.Pool.Exec(ctx, `CREATE TABLE applied (seq bigserial PRIMARY KEY, handler text NOT NULL, event_id text NOT NULL)`)
	require.NoError(t, err)
	var failing atomic.Bool // while set, K-1 and M-5 fail for good
	failing.Store(true)
	fail := func(env envelope.Envelope) error {
		if failing.Load() && (env.ID == "K-1" || env.ID == "M-5") {
			return dispatch.Permanent(fmt.Errorf("refused %s", env.ID))
		}
		return nil
	}
	var mu sync.Mutex
	var seen []string
	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("tx", []string{"*"}, dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
		if err := fail(env); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO applied (handler, event_id) VALUES ('tx', $1)`, env.ID)
		return err
	}), dispatch.WithKeyOrder()))
	require.NoError(t, c.Handle("plain", []string{"*"}, dispatch.HandlerFunc(func(ctx context.Context, env envelope.Envelope) error {
		if err := fail(env); err != nil {
			return err
		}
		mu.Lock()
		seen = append(seen, env.ID)
		mu.Unlock()
		return nil
	}), dispatch.WithKeyOrder()))
	plainSeen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
	// K-1 fails; K-2, K-3 wait behind it; L goes on; M-5 fails, M-6 waits;
	// the unkeyed event is never held.
	evs := keyedEvents("K", "K", "L", "K", "M", "M", "")
	evs[6].ID = "none-7"
	produceToKafka(t, b.kc.Addrs, b.topic, evs)
	stop := start(t, c)

	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the other keys handled, K and M held", func() bool {
		return len(applied(t, b.db.Pool, "tx")) == 2 && len(plainSeen()) == 2
	})
	require.Equal(t, []string{"L-3", "none-7"}, applied(t, b.db.Pool, "tx"))
	require.Equal(t, []string{"L-3", "none-7"}, plainSeen())
	heads := map[string]dispatch.DeadLetter{}
	for _, d := range deadLetters(t, b.db.Pool, "svc") {
		require.True(t, d.HoldsKey, "%s@%d", d.Handler, d.Offset)
		heads[d.Handler+"/"+*d.EventID] = d
	}
	require.Len(t, heads, 4)
	require.EqualValues(t, 2, heads["tx/K-1"].Held)
	require.EqualValues(t, 1, heads["tx/M-5"].Held)
	require.EqualValues(t, 2, heads["plain/K-1"].Held)
	held, err := (&dispatch.Admin{Pool: b.db.Pool}).ListHeldEvents(ctx, dispatch.DeadLetterFilter{Group: "svc", Handler: "tx"})
	require.NoError(t, err)
	require.Len(t, held, 3)
	for _, h := range held {
		require.NotNil(t, h.HeadID)
		require.Equal(t, heads["tx/"+string(h.Key)+"-"+map[string]string{"K": "1", "M": "5"}[string(h.Key)]].ID, *h.HeadID)
	}
	behindK, err := (&dispatch.Admin{Pool: b.db.Pool}).ListHeldEvents(ctx, dispatch.DeadLetterFilter{Group: "svc", ID: heads["tx/K-1"].ID})
	require.NoError(t, err)
	require.Len(t, behindK, 2, "the filter's ID selects the events held behind that dead letter")
	requireOffsetsAtEnd(t, b, "svc", "tx")

	// The sink recovers: a redrive of the heads of K runs K-1, then the
	// consumer runs K-2 and K-3. A later K event follows them.
	failing.Store(false)
	for _, h := range []string{"tx", "plain"} {
		res, err := (&dispatch.Admin{Pool: b.db.Pool, Consumer: c}).Redrive(ctx, dispatch.DeadLetterFilter{ID: heads[h+"/K-1"].ID})
		require.NoError(t, err)
		require.Equal(t, 1, res.Redriven, "%+v", res)
	}
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "K's held events run", func() bool {
		return len(onlyKey(applied(t, b.db.Pool, "tx"), "K")) == 3 && len(onlyKey(plainSeen(), "K")) == 3
	})
	later := keyedEvents("K", "K", "K", "K", "K", "K", "K", "K")[7:]
	later[0].ID = "K-8"
	produceToKafka(t, b.kc.Addrs, b.topic, later)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "K-8 handled", func() bool {
		return len(onlyKey(applied(t, b.db.Pool, "tx"), "K")) == 4 && len(onlyKey(plainSeen(), "K")) == 4
	})
	require.Equal(t, []string{"K-1", "K-2", "K-4", "K-8"}, onlyKey(applied(t, b.db.Pool, "tx"), "K"))
	require.Equal(t, []string{"K-1", "K-2", "K-4", "K-8"}, onlyKey(plainSeen(), "K"))

	// Deleting M's heads releases M-6 without M-5.
	gone, err := (&dispatch.Admin{Pool: b.db.Pool}).DeleteDeadLetters(ctx, dispatch.DeadLetterFilter{Group: "svc", Handler: "tx"})
	require.NoError(t, err)
	require.Len(t, gone, 1)
	require.EqualValues(t, 1, gone[0].Held)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "M-6 runs", func() bool {
		return len(onlyKey(applied(t, b.db.Pool, "tx"), "M")) == 1
	})
	require.Equal(t, []string{"M-6"}, onlyKey(applied(t, b.db.Pool, "tx"), "M"))
	stop()
	held, err = (&dispatch.Admin{Pool: b.db.Pool}).ListHeldEvents(ctx, dispatch.DeadLetterFilter{Group: "svc", Handler: "tx"})
	require.NoError(t, err)
	require.Empty(t, held)
	require.Len(t, applied(t, b.db.Pool, "tx"), 7, "each event applied once: %v", applied(t, b.db.Pool, "tx"))
}

// The must-show of exactly-once through a held key: a transactional
// handler with WithKeyOrder in a child process refuses the first event of
// key "hot" for good; the child is SIGKILLed while it holds hot's later
// events and goes on with the other keys, and again while it runs the held
// events after a redrive of the head. Every event is then applied exactly
// once, and each key's events in Kafka order, hot's head first.
func TestConsumer_SIGKILL_HeldKeyExactlyOnceInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	_, err := b.db.Pool.Exec(ctx, `CREATE TABLE refused (event_id text PRIMARY KEY);
		CREATE TABLE ordered_log (seq bigserial PRIMARY KEY, event_id text NOT NULL, key text NOT NULL)`)
	require.NoError(t, err)
	const hotEvents, others = 1500, 3000
	var envs []envelope.Envelope
	for i, e := range events(t, hotEvents+others, "lesson.published") {
		if i%3 == 0 && i/3 < hotEvents {
			e.Key = "hot"
		} else {
			e.Key = fmt.Sprintf("k%d", i%7)
		}
		envs = append(envs, e)
	}
	position := map[string]int{}
	var hot []string
	for i, e := range envs {
		position[e.ID] = i
		if e.Key == "hot" {
			hot = append(hot, e.ID)
		}
	}
	require.Len(t, hot, hotEvents)
	_, err = b.db.Pool.Exec(ctx, `INSERT INTO refused VALUES ($1)`, hot[0])
	require.NoError(t, err)
	produceToKafka(t, b.kc.Addrs, b.topic, envs)

	count := func(q string, args ...any) int {
		var n int
		require.NoError(t, b.db.Pool.QueryRow(ctx, q, args...).Scan(&n))
		return n
	}
	heldNow := func() int { return count(`SELECT count(*) FROM pulsebus.held_events WHERE handler = 'ordered'`) }
	appliedHot := func() int { return count(`SELECT count(*) FROM ordered_log WHERE key = 'hot'`) }
	appliedAll := func() int { return count(`SELECT count(*) FROM ordered_log`) }

	// Killed while it holds hot's events.
	c := startChild(t, b, "held", "m1", "NO_COUNT=1", "ORDERED=1")
	testpoll.Until(t, 90*time.Second, 10*time.Millisecond, "some of hot's events held", func() bool { return heldNow() >= 100 })
	c.kill()
	require.Less(t, heldNow(), hotEvents-1, "killed after every hot event was held")
	require.Zero(t, appliedHot())

	c = startChild(t, b, "held", "m2", "NO_COUNT=1", "ORDERED=1")
	testpoll.Until(t, 120*time.Second, 20*time.Millisecond, "the other keys applied, hot held", func() bool {
		return appliedAll() == others && heldNow() == hotEvents-1
	})
	require.Zero(t, appliedHot())

	// The head is fixed and redriven (by another process: the test's);
	// the child runs the held events and is killed while it does.
	_, err = b.db.Pool.Exec(ctx, `DELETE FROM refused`)
	require.NoError(t, err)
	redriver, err := dispatch.New(b.config("held"))
	require.NoError(t, err)
	require.NoError(t, redriver.HandleTx("ordered", []string{"*"}, orderedTx, dispatch.WithKeyOrder()))
	res, err := (&dispatch.Admin{Pool: b.db.Pool, Consumer: redriver}).Redrive(ctx, dispatch.DeadLetterFilter{Handler: "ordered"})
	require.NoError(t, err)
	require.Equal(t, dispatch.RedriveResult{Redriven: 1, Released: 1}, res)
	testpoll.Until(t, 90*time.Second, 5*time.Millisecond, "the held events running", func() bool { return appliedHot() >= 200 })
	c.kill()
	require.Less(t, appliedHot(), hotEvents, "killed after every held event ran")

	c = startChild(t, b, "held", "m3", "NO_COUNT=1", "ORDERED=1")
	testpoll.Until(t, 120*time.Second, 20*time.Millisecond, "every event applied", func() bool {
		return appliedAll() == len(envs)
	})
	c.stop(30 * time.Second)

	require.Zero(t, heldNow())
	require.Empty(t, deadLetters(t, b.db.Pool, "held"))
	rows, err := b.db.Pool.Query(ctx, `SELECT event_id, key FROM ordered_log ORDER BY seq`)
	require.NoError(t, err)
	times := map[string]int{}
	last := map[string]int{}
	var hotOrder []string
	for rows.Next() {
		var id, key string
		require.NoError(t, rows.Scan(&id, &key))
		times[id]++
		p, ok := position[id]
		require.True(t, ok, "unknown event %s", id)
		if prev, seen := last[key]; seen {
			require.Greater(t, p, prev, "key %s: event at %d applied after the one at %d", key, p, prev)
		}
		last[key] = p
		if key == "hot" {
			hotOrder = append(hotOrder, id)
		}
	}
	require.NoError(t, rows.Err())
	for id, n := range times {
		require.Equal(t, 1, n, "event %s applied %d times", id, n)
	}
	require.Len(t, times, len(envs))
	require.Equal(t, hot, hotOrder)
}

// A replay leaves a held key as it is: the replayed events before the head
// run again, the head's own message is skipped, the held one is not stored
// twice; the redrive then runs the head and the held event, in order.
func TestConsumer_ReplayOfAHeldKey(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	_, err := b.db.Pool.Exec(ctx, `CREATE TABLE applied (seq bigserial PRIMARY KEY, handler text NOT NULL, event_id text NOT NULL)`)
	require.NoError(t, err)
	var failing atomic.Bool
	failing.Store(true)
	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("tx", []string{"*"}, dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
		if failing.Load() && env.ID == "K-2" {
			return dispatch.Permanent(errors.New("refused K-2"))
		}
		_, err := tx.Exec(ctx, `INSERT INTO applied (handler, event_id) VALUES ('tx', $1)`, env.ID)
		return err
	}), dispatch.WithKeyOrder()))
	produceToKafka(t, b.kc.Addrs, b.topic, keyedEvents("K", "K", "K", "L"))
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "K-1 and L-4 applied", func() bool {
		return len(applied(t, b.db.Pool, "tx")) == 2
	})
	requireOffsetsAtEnd(t, b, "svc", "tx")
	admin := &dispatch.Admin{Pool: b.db.Pool, Brokers: b.kc.Addrs}
	_, err = admin.Replay(ctx, dispatch.ReplayParams{Group: "svc", Handler: "tx", Partition: -1, To: dispatch.ReplayTarget{Kind: "earliest"}})
	require.NoError(t, err)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "K-1 and L-4 applied again", func() bool {
		return len(applied(t, b.db.Pool, "tx")) == 4
	})
	requireOffsetsAtEnd(t, b, "svc", "tx")
	require.Equal(t, []string{"K-1", "L-4", "K-1", "L-4"}, applied(t, b.db.Pool, "tx"))
	held, err := (&dispatch.Admin{Pool: b.db.Pool}).ListHeldEvents(ctx, dispatch.DeadLetterFilter{Group: "svc"})
	require.NoError(t, err)
	require.Len(t, held, 1)
	require.EqualValues(t, 2, held[0].Offset)
	dls := deadLetters(t, b.db.Pool, "svc")
	require.Len(t, dls, 1)
	require.Equal(t, "K-2", *dls[0].EventID)
	require.Zero(t, dls[0].Attempts-1, "the head was not run again by the replay")

	failing.Store(false)
	res, err := (&dispatch.Admin{Pool: b.db.Pool, Consumer: c}).Redrive(ctx, dispatch.DeadLetterFilter{Handler: "tx"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Released)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "K-2 and K-3 applied", func() bool {
		return len(applied(t, b.db.Pool, "tx")) == 6
	})
	stop()
	require.Equal(t, []string{"K-1", "L-4", "K-1", "L-4", "K-2", "K-3"}, applied(t, b.db.Pool, "tx"))
}

// A handler switched back from WithKeyOrder to the default runs what it
// held at its next start, and its dead letters hold nothing any more.
func TestConsumer_WithoutKeyOrderReleasesWhatItHeld(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	_, err := b.db.Pool.Exec(ctx, `CREATE TABLE applied (seq bigserial PRIMARY KEY, handler text NOT NULL, event_id text NOT NULL)`)
	require.NoError(t, err)
	handler := dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
		if env.ID == "K-1" {
			return dispatch.Permanent(errors.New("refused K-1"))
		}
		_, err := tx.Exec(ctx, `INSERT INTO applied (handler, event_id) VALUES ('tx', $1)`, env.ID)
		return err
	})
	produceToKafka(t, b.kc.Addrs, b.topic, keyedEvents("K", "K", "L"))
	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("tx", []string{"*"}, handler, dispatch.WithKeyOrder()))
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "L-3 applied, K-2 held", func() bool {
		held, err := (&dispatch.Admin{Pool: b.db.Pool}).ListHeldEvents(ctx, dispatch.DeadLetterFilter{Group: "svc"})
		require.NoError(t, err)
		return len(applied(t, b.db.Pool, "tx")) == 1 && len(held) == 1
	})
	stop()

	c, err = dispatch.New(b.config("svc"))
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("tx", []string{"*"}, handler))
	stop = start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "K-2 applied", func() bool {
		return len(applied(t, b.db.Pool, "tx")) == 2
	})
	stop()
	require.Equal(t, []string{"L-3", "K-2"}, applied(t, b.db.Pool, "tx"))
	dls := deadLetters(t, b.db.Pool, "svc")
	require.Len(t, dls, 1)
	require.False(t, dls[0].HoldsKey)
	held, err := (&dispatch.Admin{Pool: b.db.Pool}).ListHeldEvents(ctx, dispatch.DeadLetterFilter{Group: "svc"})
	require.NoError(t, err)
	require.Empty(t, held)
}
