package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/internal/outboxrow"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

type lessonPublished struct {
	LessonID string `json:"lesson_id"`
	Title    string `json:"title"`
}

func (lessonPublished) EventType() string { return "lesson.published" }

func newEnv(t testing.TB, i int, opts ...envelope.Option) envelope.Envelope {
	t.Helper()
	id := fmt.Sprintf("lesson-%d", i)
	env, err := envelope.New("lesson-service", lessonPublished{LessonID: id, Title: "T"}, append([]envelope.Option{envelope.WithKey(id)}, opts...)...)
	require.NoError(t, err)
	return env
}

func readRows(t testing.TB, db outboxQuerier) []outbox.RowForTest {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT `+outboxrow.Columns+` FROM pulsebus.outbox ORDER BY id`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, outbox.ScanRowForTest)
	require.NoError(t, err)
	return out
}

type outboxQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// TestInsertTx_CommitsWithTheCallersTransaction: the events, and the
// relay's wake-up, exist only once the caller's transaction commits.
func TestInsertTx_CommitsWithTheCallersTransaction(t *testing.T) {
	t.Parallel()
	t.Run("visible after commit", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t)
		ctx := context.Background()
		envs := []envelope.Envelope{newEnv(t, 1, envelope.WithMeta("tenant", "acme")), newEnv(t, 2)}

		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, outbox.InsertTx(ctx, tx, "lessons", envs...))
		require.Empty(t, readRows(t, db.Pool), "rows must not be visible before commit")
		require.NoError(t, tx.Commit(ctx))

		rows := readRows(t, db.Pool)
		require.Len(t, rows, 2)
		for i, r := range rows {
			require.Equal(t, "lessons", r.Topic)
			require.Equal(t, envs[i], r.Envelope)
		}
	})
	t.Run("gone after rollback", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t)
		ctx := context.Background()
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, outbox.InsertTx(ctx, tx, "lessons", newEnv(t, 1)))
		require.NoError(t, tx.Rollback(ctx))
		require.Empty(t, readRows(t, db.Pool))
	})
	t.Run("notifies on commit only", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t)
		ctx := context.Background()
		listener, err := pgx.Connect(ctx, db.URL)
		require.NoError(t, err)
		defer listener.Close(ctx)
		_, err = listener.Exec(ctx, "LISTEN "+outbox.NotifyChannel)
		require.NoError(t, err)

		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, outbox.InsertTx(ctx, tx, "lessons", newEnv(t, 1)))
		require.NoError(t, tx.Rollback(ctx))
		require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", newEnv(t, 2)))

		n, err := listener.WaitForNotification(ctx)
		require.NoError(t, err)
		require.Equal(t, outbox.NotifyChannel, n.Channel)
		require.Len(t, readRows(t, db.Pool), 1, "only the committed insert is in the outbox")
	})
}

func TestInsertTx_TenThousandInOneCall(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	envs := make([]envelope.Envelope, 10_000)
	for i := range envs {
		envs[i] = newEnv(t, i)
	}
	require.NoError(t, pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		return outbox.InsertTx(ctx, tx, "lessons", envs...)
	}))
	rows := readRows(t, db.Pool)
	require.Len(t, rows, len(envs))
	for i, r := range rows {
		require.Equal(t, envs[i].ID, r.Envelope.ID, "row %d keeps the call's order", i)
	}
}

func TestInsertTx_RefusesInvalidBeforeTouchingDatabase(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	bad := newEnv(t, 2)
	bad.Type = ""
	err := outbox.InsertTx(ctx, db.Pool, "lessons", newEnv(t, 1), bad)
	require.ErrorIs(t, err, envelope.ErrInvalid)
	require.ErrorContains(t, err, "event 1 of 2")
	require.ErrorContains(t, err, "ce_type")

	err = outbox.InsertTx(ctx, db.Pool, "bad topic!", newEnv(t, 1))
	require.ErrorIs(t, err, outbox.ErrInvalidTopic)

	// Sizes are checked by the insert statement against pulsebus.limits
	// (see limits_test.go): the same typed error, and nothing written.
	big := newEnv(t, 3)
	big.Payload = make([]byte, envelope.DefaultMaxPayloadBytes+1)
	var limErr *envelope.LimitError
	require.ErrorAs(t, outbox.InsertTx(ctx, db.Pool, "lessons", big), &limErr)
	require.Equal(t, "payload", limErr.Field)

	require.Empty(t, readRows(t, db.Pool))
}

// TestPublishSQL: the SQL producer pulsebus.publish writes what InsertTx
// writes, and refuses what it refuses.
func TestPublishSQL(t *testing.T) {
	t.Parallel()
	t.Run("same envelope as Go", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t)
		ctx := context.Background()
		goEnv := newEnv(t, 7, envelope.WithMeta("tenant", "acme"), envelope.WithMeta("correlationid", "c-1"), envelope.WithSubject("lesson-7"))
		require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", goEnv))

		var sqlID string
		require.NoError(t, db.Pool.QueryRow(ctx,
			`SELECT pulsebus.publish('lessons', 'lesson-7', 'lesson.published', $1::jsonb, '{"tenant":"acme","correlationid":"c-1"}', 'lesson-service', 'lesson-7')`,
			string(goEnv.Payload)).Scan(&sqlID))

		rows := readRows(t, db.Pool)
		require.Len(t, rows, 2)
		fromGo, fromSQL := rows[0], rows[1]
		require.Equal(t, sqlID, fromSQL.Envelope.ID)
		require.Equal(t, uuid.Version(7), uuid.MustParse(fromSQL.Envelope.ID).Version(), "pulsebus.publish writes UUIDv7 ids")
		require.True(t, fromSQL.Envelope.ID > fromGo.Envelope.ID, "UUIDv7 ids are time-ordered")

		// Everything but the id, the time and the payload's JSON spelling is equal.
		a, b := fromGo.Envelope, fromSQL.Envelope
		require.JSONEq(t, string(a.Payload), string(b.Payload))
		a.ID, a.Time, a.Payload = b.ID, b.Time, b.Payload
		require.Equal(t, a, b)
		require.Equal(t, fromGo.Topic, fromSQL.Topic)

		// Both map to Kafka messages with the same header names in the same order.
		ma, err := envelope.ToMessage(fromGo.Envelope)
		require.NoError(t, err)
		mb, err := envelope.ToMessage(fromSQL.Envelope)
		require.NoError(t, err)
		require.Equal(t, headerKeys(ma.Headers), headerKeys(mb.Headers))
		require.Equal(t, ma.Key, mb.Key)
	})
	t.Run("refuses bad input", func(t *testing.T) {
		t.Parallel()
		db := testdb.New(t)
		ctx := context.Background()
		for name, query := range map[string]string{
			"empty topic":     `SELECT pulsebus.publish('', 'k', 't.x', '{}')`,
			"null type":       `SELECT pulsebus.publish('t', 'k', NULL, '{}')`,
			"null payload":    `SELECT pulsebus.publish('t', 'k', 't.x', NULL)`,
			"meta not object": `SELECT pulsebus.publish('t', 'k', 't.x', '{}', '[1]')`,
			"meta bad key":    `SELECT pulsebus.publish('t', 'k', 't.x', '{}', '{"Tenant":"a"}')`,
			"meta core attr":  `SELECT pulsebus.publish('t', 'k', 't.x', '{}', '{"id":"a"}')`,
			"meta non-string": `SELECT pulsebus.publish('t', 'k', 't.x', '{}', '{"tenant":1}')`,
		} {
			_, err := db.Pool.Exec(ctx, query)
			require.Error(t, err, name)
			require.ErrorContains(t, err, "pulsebus.publish", name)
		}
		require.Empty(t, readRows(t, db.Pool))
	})
}

func TestScanRow_BadMetaIsRowDecodeError(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO pulsebus.outbox (event_id, topic, type, source, event_time, meta, payload)
		VALUES (gen_random_uuid(), 't', 'x.y', 's', now(), '{"n": 1}', '')`)
	require.NoError(t, err)
	rows, err := db.Pool.Query(ctx, `SELECT `+outboxrow.Columns+` FROM pulsebus.outbox`)
	require.NoError(t, err)
	_, err = pgx.CollectRows(rows, outbox.ScanRowForTest)
	var rowErr *outbox.RowDecodeErrorForTest
	require.ErrorAs(t, err, &rowErr)
	require.Positive(t, rowErr.ID)
}

func headerKeys(hs []kafka.Header) []string {
	keys := make([]string, len(hs))
	for i, h := range hs {
		keys[i] = h.Key
	}
	return keys
}

// TestNotify_OnlyOneTransactionNotifiesAtATime: InsertTx and the SQL
// function pulsebus.publish skip the notification while another
// transaction holds outbox.NotifyLockKeyForTest, and notify otherwise, also in
// the transaction holding the lock.
func TestNotify_OnlyOneTransactionNotifiesAtATime(t *testing.T) {
	t.Parallel()
	for name, insert := range map[string]func(ctx context.Context, db outbox.Executor) error{
		"InsertTx": func(ctx context.Context, db outbox.Executor) error {
			return outbox.InsertTx(ctx, db, "lessons", newEnv(t, 1))
		},
		"pulsebus.publish": func(ctx context.Context, db outbox.Executor) error {
			_, err := db.Exec(ctx, `SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}')`)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := testdb.New(t) // advisory locks are per database
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			listener, err := pgx.Connect(ctx, db.URL)
			require.NoError(t, err)
			defer listener.Close(context.Background())
			_, err = listener.Exec(ctx, "LISTEN "+outbox.NotifyChannel)
			require.NoError(t, err)
			// next returns the payload of the next notification.
			next := func() string {
				t.Helper()
				n, err := listener.WaitForNotification(ctx)
				require.NoError(t, err)
				return n.Payload
			}
			// marker sends a notification no producer sends. Notifications
			// arrive in commit order, so whatever the listener gets before
			// it was sent before it.
			marker := func(payload string) {
				t.Helper()
				_, err := db.Pool.Exec(ctx, `SELECT pg_notify($1, $2)`, outbox.NotifyChannel, payload)
				require.NoError(t, err)
			}

			// Another transaction holds the lock: the insert commits
			// without a notification.
			holder, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			_, err = holder.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, outbox.NotifyLockKeyForTest)
			require.NoError(t, err)
			require.NoError(t, insert(ctx, db.Pool))
			marker("after-skipper")
			require.Equal(t, "after-skipper", next(), "the insert skipped its notification")
			require.Len(t, readRows(t, db.Pool), 1, "and committed")

			// The holder itself notifies: it holds the lock.
			require.NoError(t, insert(ctx, holder))
			require.NoError(t, holder.Commit(ctx))
			require.Equal(t, "", next(), "the lock holder notified")

			// Nobody holds the lock: every insert notifies.
			for i := range 3 {
				require.NoError(t, insert(ctx, db.Pool))
				require.Equal(t, "", next(), "insert %d notified", i)
			}
			marker("end")
			require.Equal(t, "end", next(), "one notification per insert, no more")
			require.Len(t, readRows(t, db.Pool), 5)
		})
	}
}

// InsertTx writes the caller's span context into each event as the
// traceparent extension; an event with a traceparent of its own keeps it,
// and without a span nothing is added.
func TestInsertTx_CarriesTheCallersTraceContext(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	traceID, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	spanID, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	spanCtx := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}))

	plain, err := envelope.New("s", lessonPublished{}, envelope.WithKey("a"))
	require.NoError(t, err)
	own, err := envelope.New("s", lessonPublished{}, envelope.WithKey("b"),
		envelope.WithMeta("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	require.NoError(t, err)
	untraced, err := envelope.New("s", lessonPublished{}, envelope.WithKey("c"))
	require.NoError(t, err)
	require.NoError(t, outbox.InsertTx(spanCtx, db.Pool, "lessons", plain, own))
	require.NoError(t, outbox.InsertTx(ctx, db.Pool, "lessons", untraced))
	require.Nil(t, plain.Meta, "the caller's envelope is not changed")

	rows := readRows(t, db.Pool)
	require.Len(t, rows, 3)
	require.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", rows[0].Envelope.Meta["traceparent"])
	require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", rows[1].Envelope.Meta["traceparent"])
	require.NotContains(t, rows[2].Envelope.Meta, "traceparent")
}
