package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

func TestIsTransient(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return fmt.Errorf("insert: %w", &pgconn.PgError{Code: code, Message: "m"}) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"marked", dispatch.Transient(errors.New("endpoint restarting")), true},
		{"marked with a pause", dispatch.TransientAfter(errors.New("429"), time.Second), true},
		{"permanent wins", dispatch.Permanent(dispatch.Transient(errors.New("x"))), false},
		{"invalid envelope", fmt.Errorf("decode: %w", envelope.ErrInvalid), false},
		{"plain error", errors.New("search index unavailable"), false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"unexpected EOF", fmt.Errorf("read body: %w", io.ErrUnexpectedEOF), true},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), true},
		{"serialization failure", pg("40001"), true},
		{"deadlock", pg("40P01"), true},
		{"connection exception", pg("08006"), true},
		{"admin shutdown", pg("57P01"), true},
		{"too many connections", pg("53300"), true},
		{"lock not available", pg("55P03"), true},
		{"unique violation: the handler's to decide", pg("23505"), false},
		{"syntax error", pg("42601"), false},
		{"nil", nil, false},
	} {
		require.Equal(t, tc.want, dispatch.IsTransient(tc.err), tc.name)
	}
}

// A transactional handler whose statements fail with serialization
// failures and deadlocks for longer than the attempt limit would allow
// (5 attempts 5-20 ms apart: about 50 ms) is held, not dead-lettered:
// every event takes effect once, in order. A unique violation of its own
// SQL is the handler's to classify; unmarked, it is dead-lettered after
// MaxAttempts.
func TestConsumer_TransientDatabaseErrorsHeld(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	_, err := b.db.Pool.Exec(context.Background(), `CREATE TABLE applied (seq bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE)`)
	require.NoError(t, err)
	envs := events(t, 20, "lesson.published")
	conflict := envs[len(envs)-1].ID
	produceToKafka(t, b.kc.Addrs, b.topic, envs)

	const window = 1500 * time.Millisecond
	var (
		mu        sync.Mutex
		firstFail time.Time
		failures  int
		conflicts int
	)
	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	require.NoError(t, c.HandleTx("apply", []string{"*"}, dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
		mu.Lock()
		if firstFail.IsZero() {
			firstFail = time.Now()
		}
		failing := time.Since(firstFail) < window
		if failing {
			failures++
		}
		code := []string{"40001", "40P01"}[failures%2]
		if env.ID == conflict && !failing {
			conflicts++
			code = "23505"
		}
		mu.Unlock()
		if failing || env.ID == conflict {
			// A real error from PostgreSQL, with the SQLSTATE under test.
			if _, err := tx.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '%s', MESSAGE = 'simulated'; END $$`, code)); err != nil {
				return err
			}
			return errors.New("the DO block raised nothing")
		}
		_, err := tx.Exec(ctx, `INSERT INTO applied (event_id) VALUES ($1)`, env.ID)
		return err
	})))
	start(t, c)

	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "every event applied or dead-lettered", func() bool {
		var n int
		require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM applied`).Scan(&n))
		return n+len(deadLetters(t, b.db.Pool, "svc")) == len(envs)
	})
	dls := deadLetters(t, b.db.Pool, "svc")
	require.Len(t, dls, 1, "only the unique violation is dead-lettered")
	require.Equal(t, conflict, *dls[0].EventID)
	require.Equal(t, dispatch.DefaultMaxAttempts, dls[0].Attempts)
	require.Contains(t, dls[0].Error, "SQLSTATE 23505")
	mu.Lock()
	require.Greater(t, failures, dispatch.DefaultMaxAttempts, "the transient errors outlasted the attempt limit")
	require.Equal(t, dispatch.DefaultMaxAttempts, conflicts)
	mu.Unlock()

	rows, err := b.db.Pool.Query(context.Background(), `SELECT event_id FROM applied ORDER BY seq`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	want := make([]string, 0, len(envs)-1)
	for _, e := range envs[:len(envs)-1] {
		want = append(want, e.ID)
	}
	require.Equal(t, want, ids, "each event applied once, in order")
}
