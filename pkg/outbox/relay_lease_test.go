package outbox_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// holdProduce makes the next produce request the cluster receives wait
// until release is called; entered is closed when it arrives.
func holdProduce(kc *testkafka.Cluster) (entered <-chan struct{}, release func()) {
	in, out := make(chan struct{}), make(chan struct{})
	var once, armed sync.Once
	kc.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		held := false
		armed.Do(func() { held = true })
		if held {
			close(in)
			kc.SleepControl(func() { <-out })
		}
		return nil, nil, false
	})
	return in, func() { once.Do(func() { close(out) }) }
}

// partitionablePool is a relay's pool that a test can cut off from
// PostgreSQL for good, as a crash or a network partition would: existing
// connections are terminated and new ones refused.
type partitionablePool struct {
	*pgxpool.Pool
	app string
	cut atomic.Bool
}

func newPartitionablePool(t testing.TB, db *testdb.DB, app string) *partitionablePool {
	t.Helper()
	p := &partitionablePool{app: app}
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	cfg.BeforeConnect = func(context.Context, *pgx.ConnConfig) error {
		if p.cut.Load() {
			return errors.New("test: network partition")
		}
		return nil
	}
	p.Pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(p.Pool.Close)
	return p
}

func (p *partitionablePool) partition(t testing.TB, db *testdb.DB) {
	p.cut.Store(true)
	terminate(t, db, p.app)
}

// TestRelay_TwoRelays: two relays with one name; only the leader publishes.
// When the leader is cut off from PostgreSQL without releasing its lease
// (a crash or a partition), the other takes over within LeaseTTL plus one
// poll, and per-key order holds across the handover.
func TestRelay_TwoRelays(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 4)
	const ttl, poll = 3 * time.Second, 200 * time.Millisecond
	type member struct {
		pool  *partitionablePool
		hooks *recordingHooks
		relay *outbox.Relay
	}
	var members [2]*member
	for i, id := range []string{"relay-a", "relay-b"} {
		m := &member{pool: newPartitionablePool(t, db, id), hooks: newRecordingHooks()}
		b := &relayBundle{db: db, kc: kc, hooks: m.hooks}
		m.relay = startRelay(t, b, outbox.RelayConfig{Pool: m.pool.Pool, ID: id, BatchSize: 100, LeaseTTL: ttl, PollInterval: poll})
		members[i] = m
	}
	testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "a leader", func() bool { return members[0].relay.IsLeader() || members[1].relay.IsLeader() })
	leader, follower := members[0], members[1]
	if follower.relay.IsLeader() {
		leader, follower = follower, leader
	}

	// Never two leaders at once, as each relay sees it.
	var both atomic.Int64
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(2 * time.Millisecond):
				if members[0].relay.IsLeader() && members[1].relay.IsLeader() {
					both.Add(1)
				}
			}
		}
	}()
	defer func() { close(stopWatch); <-watchDone }()

	s := newStream(db, "lessons")
	s.insertEvents(t, load{Producers: 4, PerProducer: 500, KeysPerProducer: 8, MaxPerTx: 5})
	// The hooks hear of a batch after its commit: wait for them too.
	testpoll.Until(t, 30*time.Second, 10*time.Millisecond, "first events relayed", func() bool {
		return outboxCount(t, db) == 0 && leader.hooks.publishedCount("lessons")+follower.hooks.publishedCount("lessons") >= 2000
	})
	require.Zero(t, follower.hooks.publishedCount("lessons"), "the follower publishes nothing")
	require.Equal(t, 2000, leader.hooks.publishedCount("lessons"))

	// Cut the leader off in the middle of a stream.
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		s.insertEvents(t, load{Producers: 4, PerProducer: 500, KeysPerProducer: 8, MaxPerTx: 5})
	}()
	testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "the stream under way", func() bool { return leader.hooks.publishedCount("lessons") > 2100 })
	cutAt := time.Now()
	leader.pool.partition(t, db)
	testpoll.Until(t, 2*ttl, 10*time.Millisecond, "the follower takes over", follower.relay.IsLeader)
	takeover := time.Since(cutAt)
	<-produced
	testpoll.Until(t, 30*time.Second, 10*time.Millisecond, "everything relayed", func() bool { return outboxCount(t, db) == 0 })
	require.Positive(t, follower.hooks.publishedCount("lessons"))
	// The old leader renewed at most ttl/3 before the cut; the follower
	// tries every poll (jittered down); allow for a loaded machine.
	require.Less(t, takeover, ttl+poll+time.Second, "takeover within LeaseTTL plus one poll")

	dups := testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), s.want())
	require.LessOrEqual(t, dups, 2*100, "duplicates at most the old leader's batches in flight")
	require.Zero(t, both.Load(), "two relays saw themselves leader at once")
	t.Logf("takeover after %s, %d duplicates", takeover, dups)
}

// TestRelay_FencedWhenTermEnds: a relay whose term was ended in the
// database while its batch was being produced cannot delete the batch,
// even though the broker acknowledged it: the commit's fence rolls it back
// and the next leader publishes the rows again.
func TestRelay_FencedWhenTermEnds(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 1)
	ctx := context.Background()
	entered, release := holdProduce(kc)
	defer release()
	hooksA := newRecordingHooks()
	a := startRelay(t, &relayBundle{db: db, kc: kc, hooks: hooksA}, outbox.RelayConfig{ID: "relay-a"})

	var envs []envelope.Envelope
	for i := range 10 {
		envs = append(envs, seqEnv(t, "k", i))
	}
	require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", envs...))
	<-entered // relay-a holds the claim and its produce request is at the broker

	// A new term begins in the database. The claim's FOR KEY SHARE does
	// not block this UPDATE: only the fence at commit can catch it.
	uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := db.Pool.Exec(uctx, `UPDATE pulsebus.relay_leader
		SET leader_id = 'relay-b', term = term + 1, expires_at = clock_timestamp() + interval '1 second'`)
	cancel()
	require.NoError(t, err)
	release()

	testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "the commit fenced", func() bool { return hooksA.errorCount(outbox.ReasonLeaseLost) > 0 })
	require.EqualValues(t, 10, kc.RecordCount("lessons"), "the broker has the batch")
	require.Equal(t, 10, outboxCount(t, db), "but the batch was not deleted")
	stopCtx, cancelStop := context.WithTimeout(ctx, 10*time.Second)
	require.NoError(t, a.Stop(stopCtx))
	cancelStop()
	require.Equal(t, 10, outboxCount(t, db))

	// The next leader publishes the rows again.
	startRelay(t, &relayBundle{db: db, kc: kc, hooks: newRecordingHooks()}, outbox.RelayConfig{ID: "relay-b"})
	testpoll.Until(t, 15*time.Second, 10*time.Millisecond, "republished", func() bool { return outboxCount(t, db) == 0 })
	dups := testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), map[string]int{"k": 10})
	require.Equal(t, 10, dups)
}

// TestRelay_Stop covers shutdown: idempotence, finishing the batch in
// hand, and abandoning it when the context ends first.
func TestRelay_Stop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("idempotent", func(t *testing.T) {
		t.Parallel()
		r, _ := setupRelay(t, outbox.RelayConfig{})
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "leader", r.IsLeader)
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() { defer wg.Done(); require.NoError(t, r.Stop(ctx)) }()
		}
		wg.Wait()
		<-r.Stopped()
		require.False(t, r.IsLeader())
		require.Error(t, r.Start(ctx), "a stopped relay does not start again")

		unstarted, err := outbox.NewRelay(outbox.RelayConfig{Pool: testdb.New(t).Pool, Brokers: []string{"127.0.0.1:1"}})
		require.NoError(t, err)
		require.NoError(t, unstarted.Stop(ctx))
		require.NoError(t, unstarted.Stop(ctx))
		<-unstarted.Stopped()
		require.Error(t, unstarted.Start(ctx))
	})

	t.Run("finishes the batch in hand and releases the lease", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t)
		kc := testkafka.New(t)
		kc.CreateTopic(t, "lessons", 1)
		entered, release := holdProduce(kc)
		defer release()
		r := startRelay(t, &relayBundle{db: db, kc: kc, hooks: newRecordingHooks()}, outbox.RelayConfig{})
		require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", seqEnv(t, "k", 0), seqEnv(t, "k", 1)))
		<-entered
		stopped := make(chan error, 1)
		go func() { stopped <- r.Stop(ctx) }()
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned %v with a produce request in flight", err)
		case <-time.After(100 * time.Millisecond): // Stop is waiting, as it should
		}
		release()
		require.NoError(t, <-stopped)
		require.Zero(t, outboxCount(t, db), "the batch in hand was finished")
		testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), map[string]int{"k": 2})
		var released bool
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT expires_at <= clock_timestamp() FROM pulsebus.relay_leader`).Scan(&released))
		require.True(t, released, "lease released")
	})

	t.Run("abandons the rest when the context ends", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t)
		kc := testkafka.New(t)
		kc.CreateTopic(t, "lessons", 1)
		entered, release := holdProduce(kc)
		defer release()
		hooks := newRecordingHooks()
		// Small requests: the batch of 12 takes several, one at a time. A
		// long lease: were it not released, the next relay would wait 30 s.
		r := startRelay(t, &relayBundle{db: db, kc: kc, hooks: hooks}, outbox.RelayConfig{MaxMessageBytes: 1500, LeaseTTL: 30 * time.Second})
		var envs []envelope.Envelope
		for i := range 12 {
			envs = append(envs, seqEnv(t, "k", i))
		}
		require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", envs...))
		<-entered
		stopCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- r.Stop(stopCtx) }()
		<-stopCtx.Done()
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned %v before the request in flight was answered", err)
		case <-time.After(100 * time.Millisecond):
		}
		release() // the request in flight is answered: its rows are deleted
		err := <-stopped
		require.ErrorIs(t, err, context.DeadlineExceeded)

		published := int(kc.RecordCount("lessons"))
		require.Positive(t, published)
		require.Less(t, published, 12, "the rest was not sent")
		require.Equal(t, 12-published, outboxCount(t, db), "acknowledged rows deleted, the rest stays")
		var attempted int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pulsebus.outbox WHERE attempts > 0`).Scan(&attempted))
		require.Zero(t, attempted, "abandoning is not a failed attempt")

		// Claimed by no one and the lease released: a new relay takes
		// over at once and publishes the rest.
		start := time.Now()
		startRelay(t, &relayBundle{db: db, kc: kc, hooks: newRecordingHooks()}, outbox.RelayConfig{})
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "rest published", func() bool { return outboxCount(t, db) == 0 })
		require.Less(t, time.Since(start), 15*time.Second, "no wait for the 30 s lease to expire")
		require.Zero(t, testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), map[string]int{"k": 12}))
	})
}
