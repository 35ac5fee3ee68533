package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

func seqEnv(t testing.TB, key string, seq int) envelope.Envelope {
	t.Helper()
	env, err := envelope.New("relay-test", testkafka.SeqEvent{Key: key, Seq: seq}, envelope.WithKey(key))
	require.NoError(t, err)
	return env
}

// hookRecorder is what the tests' hook recorders implement; hooksOf
// adapts one to outbox.Hooks.
type hookRecorder interface {
	Published(topic string, n int)
	PublishError(reason outbox.Reason)
	Batch(size int, publishDuration time.Duration)
	CommitToAck(d time.Duration)
	Backlog(rows int64, oldestAge time.Duration)
	Leader(isLeader bool)
	Parked(topic string, reason outbox.Reason)
}

func hooksOf(h hookRecorder) outbox.Hooks {
	return outbox.Hooks{
		OnPublished: h.Published, OnPublishFailed: h.PublishError, OnBatch: h.Batch, OnCommitToAck: h.CommitToAck,
		OnBacklog: h.Backlog, OnLeader: h.Leader, OnParked: h.Parked,
	}
}

// recordingHooks counts what the relay reports.
type recordingHooks struct {
	mu        sync.Mutex
	published map[string]int
	errors    map[outbox.Reason]int
	parked    map[outbox.Reason]int
	leader    []bool
	acks      int
	backlogs  int
}

func newRecordingHooks() *recordingHooks {
	return &recordingHooks{published: map[string]int{}, errors: map[outbox.Reason]int{}, parked: map[outbox.Reason]int{}}
}

func (h *recordingHooks) Published(topic string, n int) {
	h.mu.Lock()
	h.published[topic] += n
	h.mu.Unlock()
}
func (h *recordingHooks) PublishError(reason outbox.Reason) {
	h.mu.Lock()
	h.errors[reason]++
	h.mu.Unlock()
}
func (h *recordingHooks) Parked(_ string, reason outbox.Reason) {
	h.mu.Lock()
	h.parked[reason]++
	h.mu.Unlock()
}
func (h *recordingHooks) Leader(is bool) {
	h.mu.Lock()
	h.leader = append(h.leader, is)
	h.mu.Unlock()
}
func (h *recordingHooks) Batch(int, time.Duration) {}
func (h *recordingHooks) CommitToAck(time.Duration) {
	h.mu.Lock()
	h.acks++
	h.mu.Unlock()
}
func (h *recordingHooks) Backlog(int64, time.Duration) {
	h.mu.Lock()
	h.backlogs++
	h.mu.Unlock()
}

func (h *recordingHooks) get(f func(h *recordingHooks) int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return f(h)
}

type relayBundle struct {
	db    *testdb.DB
	kc    *testkafka.Cluster
	hooks *recordingHooks
}

func setupRelay(t *testing.T, cfg outbox.RelayConfig) (*outbox.Relay, *relayBundle) {
	t.Helper()
	b := &relayBundle{db: testdb.New(t), kc: testkafka.New(t), hooks: newRecordingHooks()}
	return startRelay(t, b, cfg), b
}

func startRelay(t *testing.T, b *relayBundle, cfg outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	if cfg.Pool == nil {
		cfg.Pool = b.db.Pool
	}
	cfg.Brokers = b.kc.Addrs
	if cfg.Hooks.OnPublished == nil {
		cfg.Hooks = hooksOf(b.hooks)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.BackoffInitial == 0 {
		cfg.BackoffInitial = 20 * time.Millisecond
		cfg.BackoffMax = 200 * time.Millisecond
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 3 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = min(2*time.Second, cfg.LeaseTTL/2)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	r, err := outbox.NewRelay(cfg)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, r.Stop(ctx))
	})
	return r
}

func kfakeMaxMessageBytes(n int) kfake.Opt {
	return kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(n)})
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func outboxCount(t testing.TB, db *testdb.DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pulsebus.outbox`).Scan(&n))
	return n
}

// load is how a test writes events: Producers goroutines at once, each
// writing PerProducer events over KeysPerProducer keys of its own (so
// commit order per key is sequence order), in transactions of 1 to
// MaxPerTx events.
type load struct {
	Producers, PerProducer, KeysPerProducer, MaxPerTx int
}

// insertEvents writes l's events for topic into the outbox, in sequence
// order per key, and returns the expected per-key counts.
func insertEvents(t testing.TB, db *testdb.DB, topic string, l load) map[string]int {
	t.Helper()
	producers, perProducer, keysPer, maxTx := l.Producers, l.PerProducer, l.KeysPerProducer, l.MaxPerTx
	ctx := context.Background()
	want := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 42))
			seq := map[string]int{}
			for done := 0; done < perProducer; {
				n := min(1+rng.IntN(maxTx), perProducer-done)
				envs := make([]envelope.Envelope, n)
				for i := range envs {
					key := fmt.Sprintf("p%d-k%d", p, rng.IntN(keysPer))
					envs[i] = seqEnv(t, key, seq[key])
					seq[key]++
				}
				if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
					return outbox.InsertTx(ctx, tx, topic, envs...)
				}); err != nil {
					errs <- err
					return
				}
				done += n
			}
			mu.Lock()
			for k, n := range seq {
				want[k] = n
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return want
}

func TestRelay_FiftyThousandFromEightProducers(t *testing.T) {
	t.Parallel()
	const total = 50_000
	_, b := setupRelay(t, outbox.RelayConfig{})
	b.kc.CreateTopic(t, "lessons", 4)

	start := time.Now()
	want := insertEvents(t, b.db, "lessons", load{Producers: 8, PerProducer: total / 8, KeysPerProducer: 16, MaxPerTx: 20})
	testpoll.Until(t, 60*time.Second, 10*time.Millisecond, "outbox drained", func() bool { return outboxCount(t, b.db) == 0 })
	t.Logf("50,000 events produced and relayed in %s", time.Since(start))

	dups := testkafka.CheckDelivery(t, b.kc.ReadAll(t, "lessons"), want)
	require.Zero(t, dups, "no crash, no duplicates")
	require.Equal(t, total, b.hooks.get(func(h *recordingHooks) int { return h.published["lessons"] }))
	require.Equal(t, total, b.hooks.get(func(h *recordingHooks) int { return h.acks }))
}

func TestRelay_LateCommitterIsPublished(t *testing.T) {
	t.Parallel()
	_, b := setupRelay(t, outbox.RelayConfig{})
	b.kc.CreateTopic(t, "lessons", 1)
	ctx := context.Background()

	// The late transaction takes the lowest id and commits last.
	late, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, outbox.InsertTx(ctx, late, "lessons", seqEnv(t, "late", 0)))
	require.NoError(t, outbox.InsertTx(ctx, b.db.Pool, "lessons", seqEnv(t, "early", 0), seqEnv(t, "early", 1)))
	testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "early events published", func() bool { return b.kc.RecordCount("lessons") == 2 })
	require.NoError(t, late.Commit(ctx))
	testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "late event published", func() bool { return b.kc.RecordCount("lessons") == 3 })

	recs := b.kc.ReadAll(t, "lessons")
	require.Equal(t, "late", string(recs[2].Key), "published after the early ones: commit order")
	testkafka.CheckDelivery(t, recs, map[string]int{"late": 1, "early": 2})
	require.Zero(t, outboxCount(t, b.db))
}

// refusedBatch inserts one batch into a cluster whose broker refuses
// messages over 20 kB: small events of keys k0, k1, k2 around a 50 kB
// event of k1, with two events of k1 before it and one after.
func refusedBatch(t *testing.T) (*relayBundle, envelope.Envelope) {
	t.Helper()
	db := testdb.New(t)
	kc := testkafka.New(t, kfakeMaxMessageBytes(20_000))
	kc.CreateTopic(t, "lessons", 2)
	b := &relayBundle{db: db, kc: kc, hooks: newRecordingHooks()}
	var envs []envelope.Envelope
	for i := range 10 {
		envs = append(envs, seqEnv(t, fmt.Sprintf("k%d", i%3), i/3))
	}
	big := seqEnv(t, "k1", 99)
	big.Payload = []byte(fmt.Sprintf(`{"key":"k1","seq":99,"pad":"%s"}`, string(make([]byte, 50_000))))
	for i := range big.Payload[30:50_030] {
		big.Payload[30+i] = 'x'
	}
	envs = append(envs[:5], append([]envelope.Envelope{big}, envs[5:]...)...)
	require.NoError(t, outbox.InsertTx(context.Background(), db.Pool, "lessons", envs...))
	return b, big
}

// TestRelay_ParksWhatTheBrokerRefuses: a row that can never be published
// is parked with its error and the stream flows on; OnRefused decides
// whether the rest of its key waits for it.
func TestRelay_ParksWhatTheBrokerRefuses(t *testing.T) {
	t.Parallel()
	// With OnRefusedPark, a message the broker refuses is parked and the rest
	// of the batch, its own key included, goes out in order.
	t.Run("park: the rest of the key flows", func(t *testing.T) {
		t.Parallel()
		b, big := refusedBatch(t)
		db, kc, ctx := b.db, b.kc, context.Background()
		startRelay(t, b, outbox.RelayConfig{OnRefused: outbox.OnRefusedPark})

		testpoll.Until(t, 20*time.Second, 10*time.Millisecond, "outbox drained", func() bool { return outboxCount(t, db) == 0 })
		var (
			parkedID    string
			parkedError string
			attempts    int
		)
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT event_id::text, error, attempts FROM pulsebus.outbox_parked`).Scan(&parkedID, &parkedError, &attempts))
		require.Equal(t, big.ID, parkedID)
		require.Contains(t, parkedError, "message_too_large")
		require.Equal(t, 1, attempts)
		require.Equal(t, 1, b.hooks.get(func(h *recordingHooks) int { return h.parked[outbox.ReasonMessageTooLarge] }))

		// The rest went through, in order, and later rows still flow.
		require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", seqEnv(t, "k1", 3)))
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "later event published", func() bool { return kc.RecordCount("lessons") == 11 })
		testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), map[string]int{"k0": 4, "k1": 4, "k2": 3})
	})
	// With OnRefusedHoldKey (the default), the broker's refusal of a message
	// holds the later messages of its key, in this batch and later claims,
	// while the other keys go out; deleting the parked row releases them, in
	// order.
	t.Run("hold-key: the rest of the key waits", func(t *testing.T) {
		t.Parallel()
		b, big := refusedBatch(t)
		db, kc, ctx := b.db, b.kc, context.Background()
		startRelay(t, b, outbox.RelayConfig{})

		testpoll.Until(t, 20*time.Second, 10*time.Millisecond, "k0 and k2 out, k1 up to the refused event, which is parked", func() bool {
			var parked int
			return kc.RecordCount("lessons") == 9 && db.Pool.QueryRow(ctx, `SELECT count(*) FROM pulsebus.outbox_parked`).Scan(&parked) == nil && parked == 1
		})
		var parkedID string
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT event_id::text FROM pulsebus.outbox_parked`).Scan(&parkedID))
		require.Equal(t, big.ID, parkedID)
		testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), map[string]int{"k0": 4, "k1": 2, "k2": 3})

		// A later event of k1 waits too; one of k0 flows.
		require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", seqEnv(t, "k1", 3), seqEnv(t, "k0", 4)))
		// Kafka has a batch's records before the relay commits their delete:
		// wait for both.
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "k0's later event out, k1's two waiting", func() bool {
			return kc.RecordCount("lessons") == 10 && outboxCount(t, db) == 2
		})
		// A claim after them: one more k0 event, inserted after k1's two,
		// is published only by a claim that passed over them.
		require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", seqEnv(t, "k0", 5)))
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "k0's last event out", func() bool {
			return kc.RecordCount("lessons") == 11 && outboxCount(t, db) == 2
		})
		var waiting int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pulsebus.outbox WHERE key = 'k1'`).Scan(&waiting))
		require.Equal(t, 2, waiting, "k1's two later events wait behind the parked one")

		_, err := db.Pool.Exec(ctx, `DELETE FROM pulsebus.outbox_parked`)
		require.NoError(t, err)
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "k1 released", func() bool { return kc.RecordCount("lessons") == 13 })
		testkafka.CheckDelivery(t, kc.ReadAll(t, "lessons"), map[string]int{"k0": 6, "k1": 4, "k2": 3})
	})
	t.Run("undecodable and invalid rows", func(t *testing.T) {
		t.Parallel()
		_, b := setupRelay(t, outbox.RelayConfig{})
		b.kc.CreateTopic(t, "lessons", 1)
		ctx := context.Background()
		require.NoError(t, outbox.InsertTx(ctx, b.db.Pool, "lessons", seqEnv(t, "k", 0)))
		_, err := b.db.Pool.Exec(ctx, `INSERT INTO pulsebus.outbox (event_id, topic, type, source, event_time, meta, payload)
			VALUES (gen_random_uuid(), 'lessons', 'x.y', 's', now(), '{"n": 1}', ''),
			       (gen_random_uuid(), 'lessons', 'x.y', 's', now(), '{"Bad Key": "v"}', '')`)
		require.NoError(t, err)
		require.NoError(t, outbox.InsertTx(ctx, b.db.Pool, "lessons", seqEnv(t, "k", 1)))

		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "outbox drained", func() bool { return outboxCount(t, b.db) == 0 })
		var parked int
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pulsebus.outbox_parked WHERE error LIKE '%invalid_envelope%'`).Scan(&parked))
		require.Equal(t, 2, parked)
		testkafka.CheckDelivery(t, b.kc.ReadAll(t, "lessons"), map[string]int{"k": 2})
	})
}

func TestRelay_MissingTopic(t *testing.T) {
	t.Parallel()
	t.Run("named in the error, rows stay", func(t *testing.T) {
		t.Parallel()
		_, b := setupRelay(t, outbox.RelayConfig{})
		ctx := context.Background()
		require.NoError(t, outbox.InsertTx(ctx, b.db.Pool, "nope", seqEnv(t, "k", 0)))
		testpoll.Until(t, 10*time.Second, 10*time.Millisecond, "unknown_topic errors", func() bool {
			return b.hooks.get(func(h *recordingHooks) int { return h.errors[outbox.ReasonUnknownTopic] }) >= 2
		})
		require.Equal(t, 1, outboxCount(t, b.db))
		var lastErr string
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT last_error FROM pulsebus.outbox`).Scan(&lastErr))
		require.Contains(t, lastErr, "nope")

		b.kc.CreateTopic(t, "nope", 1) // the operator fixes it
		testpoll.Until(t, 20*time.Second, 10*time.Millisecond, "published once the topic exists", func() bool { return outboxCount(t, b.db) == 0 })
	})
	t.Run("created when configured", func(t *testing.T) {
		t.Parallel()
		_, b := setupRelay(t, outbox.RelayConfig{AutoCreateTopics: true, TopicPartitions: 3})
		require.NoError(t, outbox.InsertTx(context.Background(), b.db.Pool, "fresh", seqEnv(t, "k", 0)))
		testpoll.Until(t, 20*time.Second, 10*time.Millisecond, "published", func() bool { return outboxCount(t, b.db) == 0 })
		require.Len(t, b.kc.EndOffsets(t, "fresh"), 3)
	})
}

func TestRelay_Compression(t *testing.T) {
	t.Parallel()
	for _, c := range []kafka.Compression{kafka.Gzip, kafka.Snappy, kafka.Lz4, kafka.Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			t.Parallel()
			_, b := setupRelay(t, outbox.RelayConfig{Compression: c})
			b.kc.CreateTopic(t, "lessons", 2)
			want := insertEvents(t, b.db, "lessons", load{Producers: 2, PerProducer: 100, KeysPerProducer: 4, MaxPerTx: 10})
			testpoll.Until(t, 20*time.Second, 10*time.Millisecond, "outbox drained", func() bool { return outboxCount(t, b.db) == 0 })
			require.Zero(t, testkafka.CheckDelivery(t, b.kc.ReadAll(t, "lessons"), want))
		})
	}
}

func TestNewRelay_ValidationNamesTheField(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ok := func() outbox.RelayConfig {
		return outbox.RelayConfig{Pool: db.Pool, Brokers: []string{"127.0.0.1:9092"}}
	}
	for _, tc := range []struct {
		field string
		mut   func(*outbox.RelayConfig)
	}{
		{"Pool", func(c *outbox.RelayConfig) { c.Pool = nil }},
		{"Brokers", func(c *outbox.RelayConfig) { c.Brokers = nil }},
		{"Brokers[1]", func(c *outbox.RelayConfig) { c.Brokers = []string{"a:1", ""} }},
		{"BatchSize", func(c *outbox.RelayConfig) { c.BatchSize = -1 }},
		{"LeaseTTL", func(c *outbox.RelayConfig) { c.LeaseTTL = time.Second }},
		{"WriteTimeout", func(c *outbox.RelayConfig) { c.LeaseTTL, c.WriteTimeout = 2*time.Second, 2*time.Second }},
		{"WriteTimeout", func(c *outbox.RelayConfig) { c.WriteTimeout = -time.Second }},
		{"PollInterval", func(c *outbox.RelayConfig) { c.PollInterval = -time.Second }},
		{"NotifyDebounce", func(c *outbox.RelayConfig) { c.NotifyDebounce = -time.Second }},
		{"BackoffMax", func(c *outbox.RelayConfig) { c.BackoffInitial, c.BackoffMax = time.Second, time.Millisecond }},
		{"MaxMessageBytes", func(c *outbox.RelayConfig) { c.MaxMessageBytes = 100 }},
		{"TopicPartitions", func(c *outbox.RelayConfig) { c.TopicPartitions = -2 }},
		{"TopicReplicationFactor", func(c *outbox.RelayConfig) { c.TopicReplicationFactor = -1 }},
	} {
		cfg := ok()
		tc.mut(&cfg)
		_, err := outbox.NewRelay(cfg)
		require.ErrorContains(t, err, "RelayConfig."+tc.field, tc.field)
	}
	r, err := outbox.NewRelay(ok())
	require.NoError(t, err)
	require.Equal(t, outbox.DefaultLeaseTTL, r.Config().LeaseTTL)

	t.Run("Config gives the defaults it filled in, as a copy", func(t *testing.T) {
		cfg := ok()
		cfg.LeaseTTL = 4 * time.Second
		short, err := outbox.NewRelay(cfg)
		require.NoError(t, err)
		got := short.Config()
		require.Equal(t, 2*time.Second, got.WriteTimeout, "min(DefaultWriteTimeout, LeaseTTL/2)")
		require.Equal(t, outbox.DefaultBatchSize, got.BatchSize)
		require.Equal(t, short.ID(), got.ID)
		got.Limits.MaxPayloadBytes = 1
		got.Brokers[0] = "changed:1"
		require.NotEqual(t, 1, short.Config().Limits.MaxPayloadBytes, "the caller's copy does not reach the relay")
		require.Equal(t, []string{"127.0.0.1:9092"}, short.Config().Brokers, "the caller's copy does not reach the relay")
	})

	t.Run("reports every problem", func(t *testing.T) {
		_, err := outbox.NewRelay(outbox.RelayConfig{BatchSize: -1, LeaseTTL: time.Second, MaxMessageBytes: 100})
		for _, field := range []string{"Pool", "Brokers", "BatchSize", "LeaseTTL", "MaxMessageBytes"} {
			require.ErrorContains(t, err, "outbox: RelayConfig."+field, field)
		}
	})
}
