package dispatch_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// logCapture is a slog handler keeping the records at or above a level.
type logCapture struct {
	mu      sync.Mutex
	records []slog.Record
	min     slog.Level
}

func (l *logCapture) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= l.min }
func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logCapture) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCapture) WithGroup(string) slog.Handler      { return l }

// find returns the text of the first record with msg containing what and an
// attribute containing attr, or "".
func (l *logCapture) find(lvl slog.Level, what, attr string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if r.Level != lvl || !strings.Contains(r.Message, what) {
			continue
		}
		var sb strings.Builder
		sb.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { sb.WriteString(" " + a.String()); return true })
		if strings.Contains(sb.String(), attr) {
			return sb.String()
		}
	}
	return ""
}

// A worker whose offset writes fail while events wait is reported: the
// lag grows with what waits, the stall hook fires with the cause, an error
// is logged, Stalled names it; all of it clears once the writes work again.
func TestConsumer_StalledWorkerIsReported(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 5, "lesson.published"))
	hooks := newHookRecorder()
	logs := &logCapture{min: slog.LevelInfo}
	cfg := b.config("svc")
	cfg.Hooks = hooks.hooks()
	cfg.Logger = slog.New(logs)
	cfg.StallTimeout = 2 * time.Second
	c, err := dispatch.New(cfg)
	require.NoError(t, err)
	rec := newRecorder()
	require.NoError(t, c.HandleTx("tx", []string{"*"}, countTx("tx")))
	require.NoError(t, c.Handle("plain", []string{"*"}, rec))
	start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "caught up", func() bool {
		l1, ok1 := hooks.lagOf("tx", b.topic, 0)
		l2, ok2 := hooks.lagOf("plain", b.topic, 0)
		return ok1 && ok2 && l1 == 0 && l2 == 0
	})
	require.NoError(t, c.Stalled())

	ctx := context.Background()
	_, err = b.db.Pool.Exec(ctx, `CREATE FUNCTION freeze_offsets() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'offsets frozen by the test'; END $$;
		CREATE TRIGGER freeze_offsets BEFORE UPDATE ON pulsebus.handler_offsets FOR EACH ROW EXECUTE FUNCTION freeze_offsets()`)
	require.NoError(t, err)
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 7, "lesson.published"))

	testpoll.Until(t, 30*time.Second, 50*time.Millisecond, "both workers reported stalled", func() bool {
		return hooks.isStalled("tx", b.topic, 0) && hooks.isStalled("plain", b.topic, 0)
	})
	for _, h := range []string{"tx", "plain"} {
		lag, _ := hooks.lagOf(h, b.topic, 0)
		require.Equal(t, int64(7), lag, "%s: the lag counts what waits", h)
		require.Contains(t, hooks.stallCause(h, b.topic, 0), "offsets frozen by the test", h)
		require.NotEmpty(t, logs.find(slog.LevelError, "stalled", "offsets frozen by the test"), "an error log with the cause")
	}
	err = c.Stalled()
	require.ErrorContains(t, err, "tx on events/0")
	require.ErrorContains(t, err, "plain on events/0")
	require.ErrorContains(t, err, "offsets frozen by the test")

	_, err = b.db.Pool.Exec(ctx, `DROP TRIGGER freeze_offsets ON pulsebus.handler_offsets`)
	require.NoError(t, err)
	testpoll.Until(t, 30*time.Second, 50*time.Millisecond, "both workers advance again", func() bool {
		return !hooks.isStalled("tx", b.topic, 0) && !hooks.isStalled("plain", b.topic, 0) && c.Stalled() == nil
	})
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "lag back to 0", func() bool {
		l1, _ := hooks.lagOf("tx", b.topic, 0)
		l2, _ := hooks.lagOf("plain", b.topic, 0)
		return l1 == 0 && l2 == 0
	})
	n, _ := countHandled(t, b.db.Pool, "tx")
	require.Equal(t, 12, n)
}

// A handler offset beyond the partition's end (a recreated topic, an old
// replay) is not waited on: it is logged at error, reported, and the
// handler resumes from the partition's low watermark.
func TestConsumer_OffsetBeyondTheEndResumesFromTheStart(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 3, "lesson.published"))
	_, err := b.db.Pool.Exec(context.Background(), `INSERT INTO pulsebus.handler_offsets (group_id, handler, topic, partition, next_offset)
		VALUES ('svc', 'tx', $1, 0, 1000)`, b.topic)
	require.NoError(t, err)
	hooks := newHookRecorder()
	logs := &logCapture{min: slog.LevelError}
	cfg := b.config("svc")
	cfg.Hooks = hooks.hooks()
	cfg.Logger = slog.New(logs)
	c, err := dispatch.New(cfg)
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("tx", []string{"*"}, countTx("tx")))
	start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the partition's events handled", func() bool {
		n, _ := countHandled(t, b.db.Pool, "tx")
		return n == 3
	})
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 2, "lesson.published"))
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "later events handled", func() bool {
		n, _ := countHandled(t, b.db.Pool, "tx")
		return n == 5
	})
	require.Equal(t, []dispatch.OffsetResetEvent{{Handler: "tx", Topic: b.topic, Partition: 0, Saved: 1000, Low: 0, High: 3}},
		hooks.offsetResets())
	require.NotEmpty(t, logs.find(slog.LevelError, "beyond the partition's end", "1000"))
}
