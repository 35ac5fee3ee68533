package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// BenchmarkInsertTx measures producer throughput: one transaction per
// iteration (BEGIN, one InsertTx call, COMMIT) with 1, 10 or 100 events of
// about 100 payload bytes and one meta entry, into a fresh outbox on
// testdb. It reports events/s; compare events/s of the 100-event case with
// the raw multi-row INSERT rate from scripts/pgbench-outbox (see
// docs/foundation.md).
func BenchmarkInsertTx(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			db := testdb.New(b)
			ctx := context.Background()
			envs := make([]envelope.Envelope, n)
			for i := range envs {
				envs[i] = benchEnvelope(b, i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for i := range envs { // new ids: the outbox refuses an id it holds
					envs[i].ID = uuid.Must(uuid.NewV7()).String()
				}
				tx, err := db.Pool.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := outbox.InsertTx(ctx, tx, "lessons", envs...); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// benchEnvelope is the event the pgbench script inserts too: same sizes,
// same kind of values.
func benchEnvelope(b *testing.B, i int) envelope.Envelope {
	b.Helper()
	env, err := envelope.New("lesson-service",
		lessonPublished{LessonID: fmt.Sprintf("lesson-%06d", i), Title: "Fractions and decimals: a first look at place value (part 1)"},
		envelope.WithID(uuid.Must(uuid.NewV7()).String()),
		envelope.WithTime(time.Now()),
		envelope.WithKey(fmt.Sprintf("course-%06d", i)),
		envelope.WithMeta("tenant", "acme"),
	)
	require.NoError(b, err)
	return env
}

// BenchmarkInsertTx_Concurrent measures what notifying costs concurrent
// producers: PULSEBUS_BENCH_PRODUCERS goroutines (default 16) each commit
// single-event transactions (BEGIN, one insert, COMMIT) as fast as they
// can, for PULSEBUS_BENCH_SECONDS (default 3) per variant and iteration:
//
//	insert_tx      outbox.InsertTx
//	notify_always  the same statement notifying in every transaction
//	no_notify      the same statement without any notification
//
// The variants alternate within every iteration on the same database, so
// run it with -benchtime Nx for N rounds; it reports each variant's
// commits/s and their ratios to no_notify. PostgreSQL serializes the
// commits of notifying transactions, which is what the ratios show.
//
//	go test -run '^$' -bench InsertTx_Concurrent -benchtime 3x ./pkg/outbox
func BenchmarkInsertTx_Concurrent(b *testing.B) {
	producers := envInt(b, "PULSEBUS_BENCH_PRODUCERS", 16)
	seconds := envInt(b, "PULSEBUS_BENCH_SECONDS", 3)
	db := testdb.New(b)
	ctx := context.Background()
	pcfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(b, err)
	pcfg.MaxConns = int32(producers)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(b, err)
	defer pool.Close()
	type insertFunc func(context.Context, outbox.Executor, string, ...envelope.Envelope) error
	variants := []struct {
		name   string
		insert insertFunc
	}{
		{"insert_tx", outbox.InsertTx},
		{"notify_always", outbox.InsertAlwaysNotifyForTest},
		{"no_notify", outbox.InsertNoNotifyForTest},
	}
	commits := make([]int64, len(variants))
	var elapsed time.Duration
	envs := make([]envelope.Envelope, producers)
	for p := range envs {
		envs[p] = benchEnvelope(b, p)
	}
	// One round: every producer commits with insert until the deadline.
	round := func(insert insertFunc) int64 {
		var n atomic.Int64
		deadline := time.Now().Add(time.Duration(seconds) * time.Second)
		var wg sync.WaitGroup
		errs := make(chan error, producers)
		for p := range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				env := envs[p]
				for time.Now().Before(deadline) {
					env.ID = uuid.Must(uuid.NewV7()).String()
					if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
						return insert(ctx, tx, "lessons", env)
					}); err != nil {
						errs <- err
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		return n.Load()
	}
	// Warm the pool's connections and their statement caches.
	round(outbox.InsertNoNotifyForTest)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range variants {
			// Rotate the order, so no variant always follows another.
			k := (i + j) % len(variants)
			b.StopTimer()
			_, err := pool.Exec(ctx, `TRUNCATE pulsebus.outbox`)
			require.NoError(b, err)
			b.StartTimer()
			commits[k] += round(variants[k].insert)
		}
		elapsed += time.Duration(seconds) * time.Second
	}
	rate := func(k int) float64 { return float64(commits[k]) / elapsed.Seconds() }
	for k, v := range variants {
		b.ReportMetric(rate(k), v.name+"_tx/s")
	}
	b.ReportMetric(rate(0)/rate(2), "insert_tx/no_notify")
	b.ReportMetric(rate(1)/rate(2), "notify_always/no_notify")
	b.ReportMetric(0, "ns/op")
}
