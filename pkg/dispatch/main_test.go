package dispatch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	closeExampleEnv, err := exampleEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "example environment:", err)
		os.Exit(1)
	}
	code := m.Run()
	closeExampleEnv()
	closeBenchFixture()
	testdb.DropTemplate()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// exampleEnv gives the examples what a service has: DATABASE_URL names a
// migrated database, KAFKA_BROKERS a kfake cluster whose topic lessons
// holds one lesson.published event ("Fractions").
func exampleEnv() (closeEnv func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := testdb.Create(ctx, "pulsebus_example_", 4)
	if err != nil {
		return nil, err
	}
	kc, err := testkafka.Start()
	if err != nil {
		return nil, err
	}
	closeEnv = func() {
		kc.Close()
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = db.Drop(dctx)
	}
	if err := seedLessons(ctx, kc); err != nil {
		closeEnv()
		return nil, err
	}
	os.Setenv("DATABASE_URL", db.URL)
	os.Setenv("KAFKA_BROKERS", strings.Join(kc.Addrs, ","))
	return closeEnv, nil
}

// seedLessons creates the topic lessons with one lesson.published event.
func seedLessons(ctx context.Context, kc *testkafka.Cluster) error {
	if err := kc.CreateTopicErr(ctx, "lessons", 1); err != nil {
		return err
	}
	payload, _ := json.Marshal(LessonPublished{Title: "Fractions"})
	msg, err := envelope.ToMessage(envelope.Envelope{ID: "0190b3c2-6f1e-7c4a-9b1e-3f2d4c5b6a70", Type: "lesson.published",
		Source: "example", Time: time.Now().UTC(), ContentType: envelope.ContentTypeJSON, Payload: payload})
	if err != nil {
		return err
	}
	return produceToKafkaErr(ctx, kc.Addrs, "lessons", []kafka.Message{msg})
}
