package outbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/edupulse/pulsebus/internal/testdb"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

func BenchmarkZZInsertCheckAB(b *testing.B) {
	for _, n := range []int{1, 100} {
		for _, v := range []struct {
			name string
			f    func(context.Context, outbox.Executor, string, ...envelope.Envelope) error
		}{{"old", outbox.InsertOldForTest}, {"checked", outbox.InsertTx}, {"old2", outbox.InsertOldForTest}, {"checked2", outbox.InsertTx}} {
			b.Run(fmt.Sprintf("events=%d/%s", n, v.name), func(b *testing.B) {
				db := testdb.New(b)
				ctx := context.Background()
				envs := make([]envelope.Envelope, n)
				for i := range envs {
					envs[i] = benchEnvelope(b, i)
				}
				for b.Loop() {
					tx, _ := db.Pool.Begin(ctx)
					if err := v.f(ctx, tx, "lessons", envs...); err != nil {
						b.Fatal(err)
					}
					_ = tx.Commit(ctx)
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
