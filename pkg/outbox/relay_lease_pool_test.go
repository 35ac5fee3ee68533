package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// TestRelay_LeaseRenewedWhileThePoolIsExhausted: while every connection of
// the relay's pool is taken (by batches stuck on the database, here by the
// test) for twice the lease TTL, the relay still renews its lease on its
// own connection: it never steps down, and it relays again once the pool
// is free.
func TestRelay_LeaseRenewedWhileThePoolIsExhausted(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 2)
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	hooks := newRecordingHooks()
	b := &relayBundle{db: db, kc: kc, hooks: hooks}
	const ttl = 3 * time.Second
	r := startRelay(t, b, outbox.RelayConfig{Pool: pool, LeaseTTL: ttl, WriteTimeout: time.Second})
	testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "leader", r.IsLeader)
	s := newStream(db, "lessons")
	s.insertEvents(t, load{Producers: 1, PerProducer: 10, KeysPerProducer: 2, MaxPerTx: 1})
	testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "first events relayed", func() bool { return outboxCount(t, db) == 0 })

	// Take every connection the pool will give.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var held []*pgxpool.Conn
	release := func() {
		for _, c := range held {
			c.Release()
		}
		held = nil
	}
	t.Cleanup(release) // before the relay stops and the pool closes, also on failure
	for range pool.Config().MaxConns {
		c, err := pool.Acquire(ctx)
		require.NoError(t, err)
		held = append(held, c)
	}
	// Committed while the relay cannot get a pool connection to claim.
	s.insertEvents(t, load{Producers: 1, PerProducer: 10, KeysPerProducer: 2, MaxPerTx: 1})
	time.Sleep(2 * ttl) // the state under test is a duration: the pool exhausted for two lease lifetimes
	require.True(t, r.IsLeader(), "still leader with the pool exhausted for %s", 2*ttl)
	release()
	testpoll.Until(t, 20*time.Second, 10*time.Millisecond, "relayed once the pool is free", func() bool { return outboxCount(t, db) == 0 })
	require.Equal(t, []bool{true}, hooks.leaderChanges(), "never stepped down")
	require.Zero(t, testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), s.want()), "no duplicates")
}
