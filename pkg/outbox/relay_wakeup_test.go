package outbox_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// notifyLockHolder returns the pid of the backend holding
// outbox.NotifyLockKeyForTest in db, or 0.
func notifyLockHolder(t testing.TB, db *testdb.DB) int32 {
	t.Helper()
	var pid int32
	err := db.Pool.QueryRow(context.Background(), `
		SELECT pid FROM pg_locks
		 WHERE locktype = 'advisory' AND granted AND objsubid = 1
		   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		   AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid`, outbox.NotifyLockKeyForTest).Scan(&pid)
	if err == pgx.ErrNoRows {
		return 0
	}
	require.NoError(t, err)
	return pid
}

func backendPID(t testing.TB, tx pgx.Tx) int32 {
	t.Helper()
	var pid int32
	require.NoError(t, tx.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid))
	return pid
}

// TestRelay_WakeUp: how the relay finds committed rows when producers skip
// their notification, and how little it claims when nothing happens (see
// "Waking the relay" in the package documentation).
func TestRelay_WakeUp(t *testing.T) {
	t.Parallel()
	// The race the notify lock opens, built step by step: a skipper inserts while a notifier holds
	// the lock, so it does not notify; the notifier commits and its
	// notification makes the relay claim and publish its row; only then does
	// the skipper commit. No notification will ever come for the skipper's row,
	// and the relay polls once a minute: its follow-up claims must find the row.
	t.Run("a skipped notification committed late is published", func(t *testing.T) {
		t.Parallel()
		const pollInterval = time.Minute
		r, b := setupRelay(t, outbox.RelayConfig{PollInterval: pollInterval})
		b.kc.CreateTopic(t, "lessons", 1)
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "leader", r.IsLeader)
		ctx := context.Background()

		notifier, err := b.db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = notifier.Rollback(ctx) }() // a no-op after the commit
		require.NoError(t, outbox.InsertTx(ctx, notifier, "lessons", seqEnv(t, "notifier", 0)))
		skipper, err := b.db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = skipper.Rollback(ctx) }() // a no-op after the commit
		require.NoError(t, outbox.InsertTx(ctx, skipper, "lessons", seqEnv(t, "skipper", 0)))
		require.Equal(t, backendPID(t, notifier), notifyLockHolder(t, b.db), "the notifier holds the notify lock, so the skipper did not notify")

		require.NoError(t, notifier.Commit(ctx))
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "the notifier's event published on its notification",
			func() bool { return b.kc.RecordCount("lessons") == 1 })

		require.NoError(t, skipper.Commit(ctx))
		committed := time.Now()
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "the skipper's event published without a notification",
			func() bool { return b.kc.RecordCount("lessons") == 2 })
		took := time.Since(committed)
		t.Logf("the skipper's row was published %s after its commit (poll interval %s)", took, pollInterval)
		require.Less(t, took, 5*time.Second, "found by a follow-up claim, not by the poll")
		testkafka.CheckDelivery(t, b.kc.ReadAll(t, "lessons"), map[string]int{"notifier": 1, "skipper": 1})
		require.Zero(t, outboxCount(t, b.db))
	})
	// Producers committing
	// single-event transactions concurrently, through InsertTx and
	// pulsebus.publish, with a little work between the insert and the commit,
	// notify only some of the time, and some of them commit after the
	// notifier's notification woke the relay; with the poll slowed to a minute,
	// every row is still published within seconds of the last commit.
	t.Run("concurrent producers, some skipping the notification", func(t *testing.T) {
		t.Parallel()
		r, b := setupRelay(t, outbox.RelayConfig{PollInterval: time.Minute})
		b.kc.CreateTopic(t, "lessons", 2)
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "leader", r.IsLeader)
		ctx := context.Background()

		// Count the notifications the producers send.
		lctx, stopListening := context.WithCancel(ctx)
		listener, err := pgx.Connect(ctx, b.db.URL)
		require.NoError(t, err)
		_, err = listener.Exec(ctx, "LISTEN "+outbox.NotifyChannel)
		require.NoError(t, err)
		var notifications atomic.Int64
		marker := make(chan string, 1)
		listened := make(chan struct{})
		go func() {
			defer close(listened)
			for {
				n, err := listener.WaitForNotification(lctx)
				if err != nil {
					return
				}
				if n.Payload != "" {
					marker <- n.Payload
					continue
				}
				notifications.Add(1)
			}
		}()
		t.Cleanup(func() {
			stopListening()
			<-listened
			_ = listener.Close(context.Background())
		})

		const producers, perProducer, rounds = 8, 30, 3
		want := map[string]int{}
		for round := range rounds {
			var wg sync.WaitGroup
			errs := make(chan error, producers)
			for p := range producers {
				key := fmt.Sprintf("p%d", p)
				envs := make([]envelope.Envelope, perProducer)
				for i := range envs {
					envs[i] = seqEnv(t, key, want[key]+i)
				}
				want[key] += perProducer
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(p), uint64(round)))
					for i := range perProducer {
						err := pgx.BeginFunc(ctx, b.db.Pool, func(tx pgx.Tx) error {
							var err error
							if p%4 == 0 { // a producer in another language
								_, err = tx.Exec(ctx, `SELECT pulsebus.publish('lessons', $1, 'test.seq', $2::jsonb, '{}', 'relay-test')`,
									key, string(envs[i].Payload))
							} else {
								err = outbox.InsertTx(ctx, tx, "lessons", envs[i])
							}
							// The rest of the transaction's work.
							time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
							return err
						})
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			lastCommit := time.Now()
			testpoll.Until(t, 15*time.Second, 10*time.Millisecond, fmt.Sprintf("round %d: every row published", round),
				func() bool { return b.hooks.publishedCount("lessons") >= (round+1)*producers*perProducer })
			t.Logf("round %d: every row published %s after the last commit", round, time.Since(lastCommit))
		}
		require.Zero(t, outboxCount(t, b.db))
		testkafka.CheckDelivery(t, b.kc.ReadAll(t, "lessons"), want)

		// Every notification sent so far arrives before this marker.
		_, err = b.db.Pool.Exec(ctx, `SELECT pg_notify($1, 'marker')`, outbox.NotifyChannel)
		require.NoError(t, err)
		select {
		case <-marker:
		case <-time.After(10 * time.Second):
			t.Fatal("marker notification not received")
		}
		txs := int64(rounds * producers * perProducer)
		n := notifications.Load()
		t.Logf("%d of %d transactions notified", n, txs)
		require.Positive(t, n)
		require.Less(t, n, txs, "some transactions skipped their notification")
	})
	// after activity, the follow-up
	// claims back off to the poll interval; an idle relay claims about once a
	// PollInterval, not every NotifyDebounce.
	t.Run("idle: claims only every PollInterval", func(t *testing.T) {
		t.Parallel()
		const poll = 400 * time.Millisecond
		r, b := setupRelay(t, outbox.RelayConfig{PollInterval: poll})
		b.kc.CreateTopic(t, "lessons", 1)
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "leader", r.IsLeader)
		require.NoError(t, outbox.InsertTx(context.Background(), b.db.Pool, "lessons", seqEnv(t, "k", 0)))
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "published", func() bool { return b.kc.RecordCount("lessons") == 1 })

		// Let the follow-ups back off: NotifyDebounce doubling to 400ms takes
		// about a second. Then count the claims of an idle window.
		time.Sleep(1500 * time.Millisecond)
		before := outbox.ClaimsForTest(r)
		const window = 2 * time.Second
		time.Sleep(window)
		claims := outbox.ClaimsForTest(r) - before
		t.Logf("%d claims in %s idle", claims, window)
		require.Positive(t, claims, "the relay still polls")
		// Polls come every 0.8-1 PollInterval: at most 6 in the window.
		require.LessOrEqual(t, claims, int64(window/(poll*8/10))+1, "no fast polling while idle")
	})
}
