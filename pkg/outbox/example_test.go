package outbox_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// LessonPublished is an event of the lesson service.
type LessonPublished struct {
	LessonID string `json:"lesson_id"`
	Title    string `json:"title"`
}

// EventType names the event.
func (LessonPublished) EventType() string { return "lesson.published" }

// Write an event in the same transaction as the business change it
// reports: both commit, or neither does.
func ExampleInsertTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	env, err := envelope.New("lesson-service", LessonPublished{LessonID: "l-42", Title: "Fractions"},
		envelope.WithKey("l-42")) // events of one key keep their order
	if err != nil {
		log.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// ... the business change, e.g. UPDATE lessons SET published = true ...
		return outbox.InsertTx(ctx, tx, "lessons", env)
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("lesson.published is in the outbox")
	// Output: lesson.published is in the outbox
}

// Run a relay: it takes the leader lease and moves committed events to
// Kafka. Run one or more per outbox; only the leader publishes.
func ExampleRelay() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	published := make(chan string, 16)
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool:             pool,
		Brokers:          strings.Split(os.Getenv("KAFKA_BROKERS"), ","),
		AutoCreateTopics: true,
		Hooks: outbox.Hooks{
			OnPublished: func(topic string, n int) { published <- fmt.Sprintf("%d event(s) to %s", n, topic) },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() {
		// Stop finishes the batch in hand and releases the lease, so a
		// standby takes over at once.
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := relay.Stop(stopCtx); err != nil {
			log.Print(err)
		}
	}()

	env, err := envelope.New("lesson-service", LessonPublished{LessonID: "l-7", Title: "Decimals"})
	if err != nil {
		log.Fatal(err)
	}
	// A pool works too, outside a transaction of the caller's.
	if err := outbox.InsertTx(ctx, pool, "lesson-drafts", env); err != nil {
		log.Fatal(err)
	}
	for {
		select {
		case p := <-published:
			if strings.HasSuffix(p, " to lesson-drafts") {
				fmt.Println("published", p)
				return
			}
		case <-time.After(30 * time.Second):
			fmt.Println("nothing published")
			return
		}
	}
	// Output: published 1 event(s) to lesson-drafts
}
