package dispatch_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// LessonPublished is the payload of a lesson.published event.
type LessonPublished struct {
	Title string `json:"title"`
}

// EventType names the event type LessonPublished decodes.
func (LessonPublished) EventType() string { return "lesson.published" }

// A service's consumer: a transactional handler projecting lessons into a
// table, exactly once, and a plain one calling out, at least once, with
// the event id as its idempotency key. DATABASE_URL names a database with
// the pulsebus schema (pulsebus migrate), KAFKA_BROKERS the brokers.
func ExampleConsumer() {
	// A service runs until SIGTERM (signal.NotifyContext); this example
	// stops after its first event.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS lesson_index (id text PRIMARY KEY, title text NOT NULL)`); err != nil {
		log.Fatal(err)
	}
	c, err := dispatch.New(dispatch.Config{
		Brokers: strings.Split(os.Getenv("KAFKA_BROKERS"), ","),
		Group:   "search-indexer",
		Topics:  []string{"lessons"},
		Pool:    pool,
	})
	if err != nil {
		log.Fatal(err)
	}
	err = c.HandleTx("lesson-projection", []string{"lesson.*"},
		dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
			lesson, err := envelope.Decode[LessonPublished](env) // a wrong type is dead-lettered, not retried
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO lesson_index (id, title) VALUES ($1, $2)`, env.ID, lesson.Title)
			fmt.Println("indexed", lesson.Title)
			stop() // Run drains: this transaction still commits
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
	if err := c.Run(ctx); err != nil { // until ctx ends, then drains
		log.Fatal(err)
	}
	// Output: indexed Fractions
}
