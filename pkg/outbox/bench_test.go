package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testdb"
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
		envelope.WithID(uuid.Must(uuid.NewV7())),
		envelope.WithTime(time.Now()),
		envelope.WithKey(fmt.Sprintf("course-%06d", i)),
		envelope.WithMeta("tenant", "acme"),
	)
	require.NoError(b, err)
	return env
}
