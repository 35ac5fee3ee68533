package dispatch_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// A service's consumer: a transactional handler projecting lessons into a
// table (exactly once), and a plain one calling out (at least once, with
// the event id as idempotency key). It needs Kafka and PostgreSQL, so it is
// compiled, not run.
func ExampleConsumer() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	c, err := dispatch.New(dispatch.Config{
		Brokers: []string{"localhost:9092"},
		Group:   "search-indexer",
		Topics:  []string{"lessons"},
		Pool:    pool,
	})
	if err != nil {
		log.Fatal(err)
	}
	err = c.HandleTx("lesson-projection", []string{"lesson.*"},
		dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
			ev, err := envelope.Decode[lessonEvent](env) // a wrong type is parked, not retried
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO lesson_index (id, n) VALUES ($1, $2)`, env.ID, ev.N)
			return err
		}))
	if err != nil {
		log.Fatal(err)
	}
	err = c.Handle("notify", []string{"lesson.published"},
		dispatch.HandlerFunc(func(ctx context.Context, env envelope.Envelope) error {
			return nil // e.g. POST with Idempotency-Key: env.ID
		}),
		dispatch.WithRetry(dispatch.RetryPolicy{MaxAttempts: 10}))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx); err != nil { // until SIGTERM, then drains
		log.Fatal(err)
	}
}
