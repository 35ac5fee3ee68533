package consumercmd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/examples/demo"
	"github.com/edupulse/pulsebus/internal/consumercmd"
	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// bundle is a test's PostgreSQL database, kfake cluster, topic and group.
type bundle struct {
	db    *testdb.DB
	kc    *testkafka.Cluster
	topic string
	group string
}

func setup(t *testing.T, partitions int) *bundle {
	t.Helper()
	b := &bundle{db: testdb.New(t), kc: testkafka.New(t), topic: "edupulse.events", group: "svc"}
	b.kc.CreateTopic(t, b.topic, partitions)
	return b
}

// admin are the flags every database + Kafka subcommand needs.
func (b *bundle) admin(args ...string) []string {
	return append([]string{"--database-url", b.db.URL, "--kafka-brokers", strings.Join(b.kc.Addrs, ","), "--group", b.group}, args...)
}

// dbOnly are the flags of the subcommands that need no Kafka.
func (b *bundle) dbOnly(args ...string) []string {
	return append([]string{"--database-url", b.db.URL, "--group", b.group}, args...)
}

// runArgs are the run flags with timings short enough for tests.
func (b *bundle) runArgs(handlers ...string) []string {
	args := append([]string{"run"}, b.admin(
		"--topics", b.topic,
		"--metrics-addr", "127.0.0.1:0",
		"--log-format", "json",
		"--log-level", "info",
		"--flush-interval", "50ms",
		"--session-timeout", "6s",
		"--retry-initial-interval", "5ms",
		"--retry-max-interval", "20ms",
		"--drain-timeout", "10s",
	)...)
	for _, h := range handlers {
		args = append(args, "--handler", h)
	}
	return args
}

// running is a consumer started with consumercmd.Run in the background.
type running struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	logs   *procharness.SyncBuffer
	once   sync.Once
	err    error
}

// start runs the command line in the background; t.Cleanup stops it.
func start(t *testing.T, args []string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, cancel: cancel, done: make(chan error, 1), logs: &procharness.SyncBuffer{}}
	go func() { r.done <- consumercmd.Run(ctx, args, io.Discard, r.logs) }()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop cancels the context (what SIGTERM does in main) and returns Run's
// error.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(60 * time.Second):
			r.t.Errorf("consumer did not stop within 60s")
		}
	})
	return r.err
}

// metricsURL waits for the log line of the metrics server and returns its
// base URL.
func (r *running) metricsURL() string {
	r.t.Helper()
	var addr string
	testpoll.Until(r.t, 30*time.Second, 25*time.Millisecond, "metrics server log line", func() bool {
		for _, l := range jsonLines(r.logs) {
			if l["msg"] == "serving /metrics, /healthz and /readyz" {
				addr, _ = l["addr"].(string)
				return true
			}
		}
		select {
		case err := <-r.done:
			r.t.Fatalf("consumer exited early: %v\n%s", err, r.logs.String())
		default:
		}
		return false
	})
	return "http://" + addr
}

// command runs a one-shot subcommand and returns its stdout and stderr.
func command(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := consumercmd.Run(ctx, args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// jsonLines decodes the JSON log lines in s.
func jsonLines(s fmt.Stringer) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// lessons builds n lesson.published envelopes.
func lessons(t *testing.T, n int) []envelope.Envelope {
	t.Helper()
	out := make([]envelope.Envelope, n)
	for i := range out {
		ev := demo.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New(), Title: fmt.Sprintf("Lesson %d", i),
			PublishedAt: time.Now().UTC().Truncate(time.Microsecond)}
		env, err := envelope.New("lessons-api", ev, envelope.WithKey(ev.PartitionKey()), envelope.WithMeta("tenant", "school-1"))
		require.NoError(t, err)
		out[i] = env
	}
	return out
}

// produce writes envs (and raw messages) to the topic with kafka-go.
func (b *bundle) produce(t *testing.T, envs []envelope.Envelope, raw ...kafka.Message) {
	t.Helper()
	msgs := append([]kafka.Message(nil), raw...)
	for _, e := range envs {
		m, err := envelope.ToMessage(e)
		require.NoError(t, err)
		msgs = append(msgs, m)
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(b.kc.Addrs...), Topic: b.topic, Balancer: &kafka.Hash{}, BatchTimeout: 2 * time.Millisecond,
		RequiredAcks: kafka.RequireAll, Transport: tr}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx, msgs...))
}

// hook is an httptest endpoint recording CloudEvents deliveries.
type hook struct {
	*httptest.Server
	mu     sync.Mutex
	got    []delivery
	status func(r *http.Request, n int) int // n counts requests for this ce-id, from 1
	header func(w http.ResponseWriter, r *http.Request)
}

type delivery struct {
	path   string
	header http.Header
	body   []byte
	status int
	at     time.Time // when the request arrived
}

func newHook(t *testing.T) *hook {
	t.Helper()
	h := &hook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		n := 1
		for _, d := range h.got {
			if d.header.Get("ce-id") == r.Header.Get("ce-id") {
				n++
			}
		}
		f, setHeader := h.status, h.header
		h.mu.Unlock()
		status := http.StatusOK
		if f != nil {
			status = f(r, n) // outside the lock: it may block
		}
		h.mu.Lock()
		h.got = append(h.got, delivery{path: r.URL.Path, header: r.Header.Clone(), body: body, status: status, at: at})
		h.mu.Unlock()
		if setHeader != nil {
			setHeader(w, r)
		}
		w.WriteHeader(status)
		if status >= 300 {
			fmt.Fprintf(w, "rejected with %d", status)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hook) setStatus(f func(r *http.Request, n int) int) {
	h.mu.Lock()
	h.status = f
	h.mu.Unlock()
}

// setHeader has f add response headers to every answer.
func (h *hook) setHeader(f func(w http.ResponseWriter, r *http.Request)) {
	h.mu.Lock()
	h.header = f
	h.mu.Unlock()
}

// delivered returns, per path, how often each event id was answered 2xx.
func (h *hook) delivered(path string) map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, d := range h.got {
		if d.path == path && d.status < 300 {
			out[d.header.Get("ce-id")]++
		}
	}
	return out
}

func (h *hook) requests() []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.got...)
}

// scrape returns the value of one series from /metrics, or -1 when absent.
func scrape(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			_, err := fmt.Sscan(rest, &v)
			require.NoError(t, err)
			return v
		}
	}
	return -1
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}
