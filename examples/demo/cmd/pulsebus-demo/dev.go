package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/edupulse/pulsebus/internal/redact"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/migrate"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// devGroup is the consumer group of dev mode's built-in consumer.
const devGroup = "pulsebus-dev"

// runDev is dev mode (--dev): the embedded broker (or --brokers), a migrated
// database, the relay and a consumer whose one handler prints every event
// of the demo topic, and no load. It prints ready-to-paste commands to
// publish with psql and to run the consumer binary against the same broker
// and database, then runs until ctx is done.
func runDev(ctx context.Context, cfg config, stdout io.Writer, log *slog.Logger) error {
	serverURL, stopPG, err := reachServer(ctx, cfg.databaseURL, log)
	if err != nil {
		return err
	}
	defer stopPG()
	pool, err := recreateDatabase(ctx, serverURL, cfg.database, 8)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool); err != nil {
		return err
	}

	brokers := cfg.brokers
	if len(brokers) == 0 {
		// Topics a publish names are created on first use, as on a
		// development Kafka with auto.create.topics.enable.
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(cfg.partitions), demoTopic), kfake.AllowAutoTopicCreation())
		if err != nil {
			return fmt.Errorf("start the embedded broker: %w", err)
		}
		defer kc.Close()
		brokers = kc.ListenAddrs()
	} else if err := ensureTopic(ctx, brokers, demoTopic, cfg.partitions); err != nil {
		return err
	}

	stopRelay, err := startRelay(ctx, outbox.RelayConfig{
		Pool: pool, Brokers: brokers, Name: relayName, Logger: log,
		AutoCreateTopics: true, TopicPartitions: cfg.partitions,
	})
	if err != nil {
		return err
	}
	defer stopRelay()

	consumer, err := dispatch.New(dispatch.Config{
		Brokers: brokers, Group: devGroup, Topics: []string{demoTopic}, Pool: pool, Logger: log,
		StartOffset: kafka.FirstOffset, FetchMaxWait: 50 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	var out sync.Mutex
	err = consumer.Handle("print", []string{"*"}, dispatch.HandlerFunc(func(_ context.Context, env envelope.Envelope) error {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(stdout, "handled %s key=%q id=%s from %s: %s\n", env.Type, env.Key, env.ID, env.Source, env.Payload)
		return nil
	}))
	if err != nil {
		return err
	}
	consumerDone := make(chan error, 1)
	go func() { consumerDone <- consumer.Run(ctx) }()

	dbURL := withDatabase(serverURL, cfg.database)
	out.Lock()
	writeDevIntro(stdout, dbURL, cfg.database, strings.Join(brokers, ","))
	out.Unlock()

	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "\nstopping")
		return <-consumerDone
	case err := <-consumerDone:
		return fmt.Errorf("consumer stopped: %w", err)
	}
}

// writeDevIntro prints where dev mode runs and the commands to try it.
func writeDevIntro(w io.Writer, dbURL, database, brokers string) {
	shown := redact.DSN(dbURL)
	if shown != dbURL {
		fmt.Fprintln(w, "(the password in the URLs below is hidden: put yours back in before pasting)")
	}
	fmt.Fprintf(w, `PulseBus dev mode: relay and consumer running, nothing is produced until you publish.
  PostgreSQL  %s
  Kafka       %s (topics are created on first use)
  consumer    group %s, handler "print" on topic %s prints each event below

Publish an event (any language can: it is one SQL call in your transaction):
  psql '%s' -c "SELECT pulsebus.publish('%s', 'learner-1', 'lesson.published', '{\"title\": \"Fractions\"}')"

Run the consumer binary beside it, with a handler of your own:
  go run ./cmd/consumer run --database-url '%s' --kafka-brokers %s \
    --group my-service --topics %s --handler 'name=mine,types=lesson.*,log=info'

Inspect: go run ./cmd/relay status --database-url '%s'
Ctrl-C stops (the database %s stays for you to look at).

`, shown, brokers, devGroup, demoTopic, shown, demoTopic, shown, brokers, demoTopic, shown, database)
}

// withDatabase returns the connection string serverURL with its database
// replaced by name.
func withDatabase(serverURL, name string) string {
	if !strings.Contains(serverURL, "://") {
		return serverURL + " dbname=" + name
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return serverURL
	}
	u.Path = "/" + name
	return u.String()
}
