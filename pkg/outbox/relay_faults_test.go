package outbox_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// stream writes events whose per-key sequence numbers continue across
// calls, so a test can check per-key order across a fault.
type stream struct {
	db    *testdb.DB
	topic string
	mu    sync.Mutex
	next  map[string]int
	n     int
}

func newStream(db *testdb.DB, topic string) *stream {
	return &stream{db: db, topic: topic, next: map[string]int{}}
}

// insertEvents writes l's events into the outbox, continuing each key's
// sequence.
func (s *stream) insertEvents(t testing.TB, l load) {
	t.Helper()
	producers, perProducer, keysPer, maxTx := l.Producers, l.PerProducer, l.KeysPerProducer, l.MaxPerTx
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), uint64(time.Now().UnixNano())))
			for done := 0; done < perProducer; {
				n := min(1+rng.IntN(maxTx), perProducer-done)
				envs := make([]envelope.Envelope, n)
				s.mu.Lock()
				for i := range envs {
					key := fmt.Sprintf("p%d-k%d", p, rng.IntN(keysPer))
					env, err := envelope.New("relay-test", testkafka.SeqEvent{Key: key, Seq: s.next[key]}, envelope.WithKey(key))
					if err != nil {
						s.mu.Unlock()
						errs <- err
						return
					}
					envs[i] = env
					s.next[key]++
				}
				s.mu.Unlock()
				// One producer per key set, so commit order per key is
				// sequence order.
				if err := pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
					return outbox.InsertTx(ctx, tx, s.topic, envs...)
				}); err != nil {
					errs <- err
					return
				}
				done += n
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	s.mu.Lock()
	s.n += producers * perProducer
	s.mu.Unlock()
}

func (s *stream) want() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := make(map[string]int, len(s.next))
	for k, v := range s.next {
		w[k] = v
	}
	return w
}

// relayPool is a pool of its own for a relay, named so a test can cut its
// connections with pg_terminate_backend.
func relayPool(t testing.TB, db *testdb.DB, appName string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["application_name"] = appName
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// terminate ends every backend of db named appName and returns how many.
func terminate(t testing.TB, db *testdb.DB, appName string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE datname = $1 AND application_name = $2`, db.Name, appName).Scan(&n))
	return n
}

func (h *recordingHooks) errorCount(reason outbox.Reason) int {
	return h.get(func(h *recordingHooks) int { return h.errors[reason] })
}

func (h *recordingHooks) publishedCount(topic string) int {
	return h.get(func(h *recordingHooks) int { return h.published[topic] })
}

// switchListener lets a test take a kfake broker off the network and bring
// it back without losing its data: while down, it closes every open
// connection and every new one it accepts.
type switchListener struct {
	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func (s *switchListener) listen(network, address string) (net.Listener, error) {
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &switchedListener{Listener: l, s: s}, nil
}

func (s *switchListener) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	if down {
		for c := range s.conns {
			_ = c.Close()
		}
		clear(s.conns)
	}
}

type switchedListener struct {
	net.Listener
	s *switchListener
}

func (l *switchedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.s.mu.Lock()
		if l.s.down {
			l.s.mu.Unlock()
			_ = c.Close()
			continue
		}
		if l.s.conns == nil {
			l.s.conns = map[net.Conn]bool{}
		}
		l.s.conns[c] = true
		l.s.mu.Unlock()
		return c, nil
	}
}

// TestRelay_BrokerOutage: while the broker is unreachable or answers with a
// retriable error, rows stay in the outbox with their attempts counted and
// the relay backs off; once it is back, every event is delivered in per-key
// order.
func TestRelay_BrokerOutage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		reason outbox.Reason
	}{
		{"unreachable", outbox.ReasonBrokerUnavailable},
		{"retriable error", outbox.ReasonBrokerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sw := &switchListener{}
			db := testdb.New(t)
			kc := testkafka.New(t, kfake.ListenFn(sw.listen))
			kc.CreateTopic(t, "lessons", 4)
			b := &relayBundle{db: db, kc: kc, hooks: newRecordingHooks()}
			startRelay(t, b, outbox.RelayConfig{BatchSize: 200})
			s := newStream(db, "lessons")

			s.insertEvents(t, load{Producers: 4, PerProducer: 250, KeysPerProducer: 8, MaxPerTx: 5})
			testpoll.Until(t, 20*time.Second, 10*time.Millisecond, "first events relayed", func() bool { return outboxCount(t, db) == 0 })

			var fault *kfake.FaultHandle
			if tc.reason == outbox.ReasonBrokerUnavailable {
				sw.setDown(true)
			} else {
				fault = kc.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: -1})
			}
			errsBefore := b.hooks.errorCount(tc.reason)
			s.insertEvents(t, load{Producers: 4, PerProducer: 250, KeysPerProducer: 8, MaxPerTx: 5})
			testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "publish errors", func() bool { return b.hooks.errorCount(tc.reason) >= errsBefore+3 })

			// Rows stay, with their failed attempts counted; the relay backs
			// off instead of spinning: 20 ms doubling to 200 ms allows about
			// ten attempts in 1.5 s, a tight loop hundreds.
			window := b.hooks.errorCount(tc.reason)
			time.Sleep(1500 * time.Millisecond) // measuring a rate over a fixed window
			window = b.hooks.errorCount(tc.reason) - window
			require.Less(t, window, 40, "publish errors in 1.5 s of outage: back-off")
			require.Equal(t, 1000, outboxCount(t, db), "rows stay in the outbox")
			var attempted int
			var lastErr string
			require.NoError(t, db.Pool.QueryRow(context.Background(),
				`SELECT count(*) FILTER (WHERE attempts > 0), max(last_error) FROM pulsebus.outbox`).Scan(&attempted, &lastErr))
			require.Positive(t, attempted, "attempts counted")
			require.Contains(t, lastErr, tc.reason)

			if fault != nil {
				fault.Remove()
			} else {
				sw.setDown(false)
			}
			testpoll.Until(t, 30*time.Second, 10*time.Millisecond, "backlog delivered after the outage", func() bool { return outboxCount(t, db) == 0 })
			dups := testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), s.want())
			require.LessOrEqual(t, dups, 200, "duplicates at most the batch in flight when the outage began")
		})
	}
}

// TestRelay_SlowBroker: produce requests answered late, some after the
// relay's WriteTimeout (so the broker appends what the relay counted as
// failed): nothing lost, first occurrences in per-key order.
func TestRelay_SlowBroker(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 3)
	var slow atomic.Int64
	kc.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		n := slow.Add(1)
		d := time.Duration(rand.IntN(60)) * time.Millisecond
		if n%7 == 0 {
			d = 400 * time.Millisecond // past WriteTimeout below
		}
		kc.SleepControl(func() { time.Sleep(d) })
		return nil, nil, false // then handled normally
	})
	b := &relayBundle{db: db, kc: kc, hooks: newRecordingHooks()}
	startRelay(t, b, outbox.RelayConfig{BatchSize: 100, WriteTimeout: 250 * time.Millisecond})
	s := newStream(db, "lessons")
	s.insertEvents(t, load{Producers: 4, PerProducer: 500, KeysPerProducer: 8, MaxPerTx: 10})
	testpoll.Until(t, 60*time.Second, 10*time.Millisecond, "outbox drained", func() bool { return outboxCount(t, db) == 0 })
	require.Positive(t, b.hooks.errorCount(outbox.ReasonBrokerUnavailable), "some requests timed out")
	dups := testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), s.want())
	t.Logf("%d produce requests, %d duplicates from timed-out requests", slow.Load(), dups)
}

// TestRelay_DatabaseConnectionLoss cuts every connection of the relay
// (claim, lease, LISTEN) several times during a stream: the relay
// reconnects, nothing is lost, duplicates stay within the batches in
// flight, and LISTEN comes back (with polling slowed to a minute, only a
// notification can wake the relay).
func TestRelay_DatabaseConnectionLoss(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 4)
	b := &relayBundle{db: db, kc: kc, hooks: newRecordingHooks()}
	const app = "relay-under-test"
	startRelay(t, b, outbox.RelayConfig{
		Pool: relayPool(t, db, app), BatchSize: 100, PollInterval: time.Minute,
		LeaseTTL: 5 * time.Second, WriteTimeout: 2 * time.Second,
	})
	s := newStream(db, "lessons")

	// LISTEN works: one event, relayed without a poll.
	s.insertEvents(t, load{Producers: 1, PerProducer: 1, KeysPerProducer: 1, MaxPerTx: 1})
	testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "event relayed on notification", func() bool { return outboxCount(t, db) == 0 })

	done := make(chan struct{})
	cuts := 0
	go func() {
		defer close(done)
		s.insertEvents(t, load{Producers: 4, PerProducer: 1000, KeysPerProducer: 8, MaxPerTx: 5})
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(300 * time.Millisecond):
			if terminate(t, db, app) > 0 {
				cuts++
			}
		}
	}
	require.GreaterOrEqual(t, cuts, 2, "connections cut during the stream")
	testpoll.Until(t, 60*time.Second, 10*time.Millisecond, "outbox drained", func() bool { return outboxCount(t, db) == 0 })
	require.Positive(t, b.hooks.errorCount(outbox.ReasonDatabase), "the cuts hit the relay")

	// LISTEN is back after the cuts.
	terminate(t, db, app)
	s.insertEvents(t, load{Producers: 1, PerProducer: 1, KeysPerProducer: 1, MaxPerTx: 1})
	testpoll.Until(t, 15*time.Second, 10*time.Millisecond, "event relayed on notification after reconnect", func() bool { return outboxCount(t, db) == 0 })

	dups := testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), s.want())
	require.LessOrEqual(t, dups, (cuts+1)*2*100, "duplicates at most the batches in flight at each cut")
	t.Logf("%d cuts, %d duplicates", cuts, dups)
}

// TestRelay_NoNotificationLost: with polling slowed to a minute, only
// notifications wake the relay; a stream of single-event transactions must
// be relayed to its last event, whether or not the pool lets the relay
// claim ahead (a pool of 2 connections never does).
func TestRelay_NoNotificationLost(t *testing.T) {
	t.Parallel()
	for _, conns := range []int32{2, 8} {
		t.Run(fmt.Sprintf("pool=%d", conns), func(t *testing.T) {
			t.Parallel()
			db := testdb.New(t)
			kc := testkafka.New(t)
			kc.CreateTopic(t, "lessons", 2)
			cfg, err := pgxpool.ParseConfig(db.URL)
			require.NoError(t, err)
			cfg.MaxConns = conns
			pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			b := &relayBundle{db: db, kc: kc, hooks: newRecordingHooks()}
			r := startRelay(t, b, outbox.RelayConfig{Pool: pool, PollInterval: time.Minute, BacklogInterval: -1})
			testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "leader", r.IsLeader)
			s := newStream(db, "lessons")
			for round := range 5 {
				s.insertEvents(t, load{Producers: 4, PerProducer: 50, KeysPerProducer: 4, MaxPerTx: 1})
				testpoll.Until(t, 10*time.Second, 10*time.Millisecond, fmt.Sprintf("round %d relayed to the last event", round),
					func() bool { return outboxCount(t, db) == 0 })
			}
			testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), s.want())
		})
	}
}
