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
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
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
	// kfake's default minimum session timeout is 6 s; 3 s makes the tests
	// that kill members faster.
	b := &bundle{db: testdb.New(t), kc: testkafka.New(t, kfake.GroupMinSessionTimeout(time.Second)), topic: "events"}
	b.kc.CreateTopic(t, b.topic, partitions)
	_, err := b.db.Pool.Exec(context.Background(), `CREATE TABLE handled (
		handler text NOT NULL, event_id uuid NOT NULL, n int NOT NULL DEFAULT 1, PRIMARY KEY (handler, event_id))`)
	require.NoError(t, err)
	return b
}

// config is a consumer config with short timings for kfake.
func (b *bundle) config(group string) dispatch.Config {
	return childConfig(b.kc.Addrs, group, b.topic, b.db.Pool)
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
		out[i] = envelope.Envelope{ID: uuid.Must(uuid.NewV7()).String(), Type: typ, Source: "test", Time: time.Now().UTC().Truncate(time.Microsecond),
			Key: fmt.Sprintf("k%d", i%16), ContentType: envelope.ContentTypeJSON, Payload: payload}
	}
	return out
}

// produceToKafka writes envs to topic with kafka-go.
func produceToKafka(t testing.TB, addrs []string, topic string, envs []envelope.Envelope) {
	t.Helper()
	msgs := make([]kafka.Message, len(envs))
	for i, e := range envs {
		m, err := envelope.ToMessage(e)
		require.NoError(t, err)
		msgs[i] = m
	}
	produceRawToKafka(t, addrs, topic, msgs)
}

// produceRawToKafka writes msgs to topic with kafka-go.
func produceRawToKafka(t testing.TB, addrs []string, topic string, msgs []kafka.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, produceToKafkaErr(ctx, addrs, topic, msgs))
}

// produceToKafkaErr writes msgs to topic with kafka-go, hashing keys to
// partitions.
func produceToKafkaErr(ctx context.Context, addrs []string, topic string, msgs []kafka.Message) error {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(addrs...), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: 2 * time.Millisecond,
		BatchSize: 1000, RequiredAcks: kafka.RequireAll, Transport: tr}
	defer w.Close()
	for len(msgs) > 0 {
		n := min(len(msgs), 5000)
		if err := w.WriteMessages(ctx, msgs[:n]...); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
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
	seen map[string]int
	fail func(env envelope.Envelope) error
}

func newRecorder() *recorder { return &recorder{seen: map[string]int{}} }

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

func countHandled(t *testing.T, pool *pgxpool.Pool, handler string) (distinct, total int) {
	t.Helper()
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT count(*), coalesce(sum(n), 0) FROM handled WHERE handler = $1`, handler).Scan(&distinct, &total))
	return distinct, total
}

func offsetsOf(t *testing.T, pool *pgxpool.Pool, group, handler string) map[int]int64 {
	t.Helper()
	offs, err := (&dispatch.Admin{Pool: pool}).ListOffsets(context.Background(), group)
	require.NoError(t, err)
	out := map[int]int64{}
	for _, o := range offs {
		if o.Handler == handler {
			out[o.Partition] = o.NextOffset
		}
	}
	return out
}

// producer writes events in the background until stopped.
type producer struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	ids    []string
	err    error
	t      *testing.T
}

// startProducer writes n events every interval to b's topic until stop.
func startProducer(t *testing.T, b *bundle, n int, every time.Duration) *producer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &producer{cancel: cancel, done: make(chan struct{}), t: t}
	tr := &kafka.Transport{}
	w := &kafka.Writer{Addr: kafka.TCP(b.kc.Addrs...), Topic: b.topic, Balancer: &kafka.Hash{}, BatchTimeout: 2 * time.Millisecond,
		BatchSize: 1000, RequiredAcks: kafka.RequireAll, Transport: tr}
	go func() {
		defer close(p.done)
		defer tr.CloseIdleConnections()
		defer w.Close()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			envs := events(t, n, "lesson.published")
			msgs := make([]kafka.Message, len(envs))
			for i, e := range envs {
				m, err := envelope.ToMessage(e)
				if err != nil {
					p.fail(err)
					return
				}
				msgs[i] = m
			}
			wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := w.WriteMessages(wctx, msgs...)
			wcancel()
			if err != nil {
				p.fail(err)
				return
			}
			p.mu.Lock()
			for _, e := range envs {
				p.ids = append(p.ids, e.ID)
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

func (p *producer) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// stop ends production and returns the ids of every event written.
func (p *producer) stop() []string {
	p.t.Helper()
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		p.t.Fatalf("producer: %v", p.err)
	}
	return p.ids
}

// hookRecorder keeps what the consumer reported through its hooks.
type hookRecorder struct {
	mu         sync.Mutex
	handled    []dispatch.HandledEvent
	retries    map[string]int
	dead       []dispatch.DeadLetterEvent
	rebalances []map[string][]int
	lag        map[lagKey]int64               // the last reported
	stalls     map[lagKey]dispatch.StallEvent // the last reported
	resets     []dispatch.OffsetResetEvent
}

// lagKey names the lag of one handler on one partition.
type lagKey struct {
	handler, topic string
	partition      int
}

func newHookRecorder() *hookRecorder {
	return &hookRecorder{retries: map[string]int{}, lag: map[lagKey]int64{}, stalls: map[lagKey]dispatch.StallEvent{}}
}

// hooks returns the consumer hooks that feed h.
func (h *hookRecorder) hooks() dispatch.Hooks {
	return dispatch.Hooks{OnHandled: h.OnHandled, OnRetry: h.OnRetry, OnDeadLetter: h.OnDeadLetter,
		OnRebalance: h.OnRebalance, OnLag: h.OnLag, OnStall: h.OnStall, OnOffsetReset: h.OnOffsetReset}
}

func (h *hookRecorder) OnStall(e dispatch.StallEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stalls[lagKey{e.Handler, e.Topic, e.Partition}] = e
}

func (h *hookRecorder) OnOffsetReset(e dispatch.OffsetResetEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resets = append(h.resets, e)
}

// isStalled reports whether the last stall report for handler on
// topic/partition said stalled.
func (h *hookRecorder) isStalled(handler, topic string, partition int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stalls[lagKey{handler, topic, partition}].Stalled
}

// stallCause is the cause of the last stall report, "" without one.
func (h *hookRecorder) stallCause(handler, topic string, partition int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.stalls[lagKey{handler, topic, partition}]; e.Cause != nil {
		return e.Cause.Error()
	}
	return ""
}

func (h *hookRecorder) offsetResets() []dispatch.OffsetResetEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]dispatch.OffsetResetEvent(nil), h.resets...)
}

func (h *hookRecorder) OnHandled(e dispatch.HandledEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.handled = append(h.handled, e)
}

func (h *hookRecorder) OnRetry(handler string, attempt int, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retries[handler]++
}

func (h *hookRecorder) OnDeadLetter(e dispatch.DeadLetterEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dead = append(h.dead, e)
}

func (h *hookRecorder) OnRebalance(assigned map[string][]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rebalances = append(h.rebalances, assigned)
}

func (h *hookRecorder) OnLag(handler, topic string, partition int, lag int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lag[lagKey{handler, topic, partition}] = lag
}

// lagOf returns the last lag reported for handler on topic/partition, and
// whether any was.
func (h *hookRecorder) lagOf(handler, topic string, partition int) (int64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	lag, ok := h.lag[lagKey{handler, topic, partition}]
	return lag, ok
}

// outcomes counts a handler's reported outcomes.
func (h *hookRecorder) outcomes(handler string) map[dispatch.Outcome]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[dispatch.Outcome]int{}
	for _, e := range h.handled {
		if e.Handler == handler {
			out[e.Outcome]++
		}
	}
	return out
}

func (h *hookRecorder) retriesOf(handler string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.retries[handler]
}

func (h *hookRecorder) deadLetters() []dispatch.DeadLetterEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]dispatch.DeadLetterEvent(nil), h.dead...)
}

// deadLetters lists the group's dead letters.
func deadLetters(t *testing.T, pool *pgxpool.Pool, group string) []dispatch.DeadLetter {
	t.Helper()
	dls, err := (&dispatch.Admin{Pool: pool}).ListDeadLetters(context.Background(), dispatch.DeadLetterFilter{Group: group, Limit: 1000})
	require.NoError(t, err)
	return dls
}

// countsByEvent returns how often handler counted each event.
func countsByEvent(t *testing.T, pool *pgxpool.Pool, handler string) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_id::text, n FROM handled WHERE handler = $1`, handler)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		require.NoError(t, rows.Scan(&id, &n))
		out[id] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// requireOffsetsAtEnd checks that handler's offsets are at the topic's high
// watermarks.
func requireOffsetsAtEnd(t *testing.T, b *bundle, group, handler string) {
	t.Helper()
	ends := b.kc.EndOffsets(t, b.topic)
	offs := offsetsOf(t, b.db.Pool, group, handler)
	for p, end := range ends {
		require.Equal(t, end, offs[int(p)], "handler %s partition %d", handler, p)
	}
}

// offsetsAtEnd reports whether handler's offsets are at the topic's high
// watermarks.
func offsetsAtEnd(t *testing.T, b *bundle, group, handler string) bool {
	t.Helper()
	offs := offsetsOf(t, b.db.Pool, group, handler)
	for p, end := range b.kc.EndOffsets(t, b.topic) {
		if offs[int(p)] != end {
			return false
		}
	}
	return true
}
