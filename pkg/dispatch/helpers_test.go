package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testdb"
	"github.com/edupulse/pulsebus/internal/testkafka"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// bundle is what a test needs around a consumer.
type bundle struct {
	db    *testdb.DB
	kc    *testkafka.Cluster
	topic string
}

func setup(t *testing.T, partitions int) *bundle {
	t.Helper()
	b := &bundle{db: testdb.New(t), kc: testkafka.New(t), topic: "events"}
	b.kc.CreateTopic(t, b.topic, partitions)
	_, err := b.db.Pool.Exec(context.Background(), `CREATE TABLE handled (
		handler text NOT NULL, event_id uuid NOT NULL, n int NOT NULL DEFAULT 1, PRIMARY KEY (handler, event_id))`)
	require.NoError(t, err)
	return b
}

// config is a consumer config with short timings for kfake.
func (b *bundle) config(group string) dispatch.Config {
	return dispatch.Config{
		Brokers:           b.kc.Addrs,
		Group:             group,
		Topics:            []string{b.topic},
		Pool:              b.db.Pool,
		Logger:            testLogger(),
		SessionTimeout:    6 * time.Second,
		RebalanceTimeout:  6 * time.Second,
		HeartbeatInterval: 300 * time.Millisecond,
		FlushInterval:     50 * time.Millisecond,
		CommitInterval:    200 * time.Millisecond,
		FetchMaxWait:      100 * time.Millisecond,
		JoinGroupBackoff:  200 * time.Millisecond,
		Retry:             dispatch.RetryPolicy{InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
	}
}

func testLogger() *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("DISPATCH_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

type lessonEvent struct {
	N int `json:"n"`
}

func (lessonEvent) EventType() string { return "lesson.published" }

// events builds n envelopes of type typ with keys spread over 16 values.
func events(t testing.TB, n int, typ string) []envelope.Envelope {
	t.Helper()
	out := make([]envelope.Envelope, n)
	for i := range out {
		payload, _ := json.Marshal(lessonEvent{N: i})
		out[i] = envelope.Envelope{ID: uuid.Must(uuid.NewV7()), Type: typ, Source: "test", Time: time.Now().UTC().Truncate(time.Microsecond),
			Key: fmt.Sprintf("k%d", i%16), ContentType: envelope.ContentTypeJSON, Payload: payload}
	}
	return out
}

// produce writes envs to topic with kafka-go.
func produce(t testing.TB, addrs []string, topic string, envs []envelope.Envelope) {
	t.Helper()
	msgs := make([]kafka.Message, len(envs))
	for i, e := range envs {
		m, err := envelope.ToMessage(e)
		require.NoError(t, err)
		msgs[i] = m
	}
	produceRaw(t, addrs, topic, msgs)
}

func produceRaw(t testing.TB, addrs []string, topic string, msgs []kafka.Message) {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(addrs...), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: 2 * time.Millisecond,
		BatchSize: 1000, RequiredAcks: kafka.RequireAll, Transport: tr}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for len(msgs) > 0 {
		n := min(len(msgs), 5000)
		require.NoError(t, w.WriteMessages(ctx, msgs[:n]...))
		msgs = msgs[n:]
	}
}

// countTx is a transactional handler counting events into the handled table.
func countTx(name string) dispatch.TxHandlerFunc {
	return func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
		_, err := tx.Exec(ctx, `INSERT INTO handled (handler, event_id) VALUES ($1, $2)
			ON CONFLICT (handler, event_id) DO UPDATE SET n = handled.n + 1`, name, env.ID)
		return err
	}
}

// recorder is a plain handler remembering how often it saw each event.
type recorder struct {
	mu   sync.Mutex
	seen map[uuid.UUID]int
	fail func(env envelope.Envelope) error
}

func newRecorder() *recorder { return &recorder{seen: map[uuid.UUID]int{}} }

func (r *recorder) Handle(ctx context.Context, env envelope.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(env); err != nil {
			return err
		}
	}
	r.seen[env.ID]++
	return nil
}

func (r *recorder) total() (distinct, calls int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.seen {
		calls += n
	}
	return len(r.seen), calls
}

// start runs c in the background; the returned stop cancels it and checks
// Run returned nil.
func start(t *testing.T, c *dispatch.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Fatal("consumer did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countHandled(t *testing.T, pool *pgxpool.Pool, handler string) (distinct, total int) {
	t.Helper()
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT count(*), coalesce(sum(n), 0) FROM handled WHERE handler = $1`, handler).Scan(&distinct, &total))
	return distinct, total
}

func offsetsOf(t *testing.T, pool *pgxpool.Pool, group, handler string) map[int]int64 {
	t.Helper()
	offs, err := dispatch.ListOffsets(context.Background(), pool, group)
	require.NoError(t, err)
	out := map[int]int64{}
	for _, o := range offs {
		if o.Handler == handler {
			out[o.Partition] = o.NextOffset
		}
	}
	return out
}
