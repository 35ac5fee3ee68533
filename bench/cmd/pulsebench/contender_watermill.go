package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The Watermill contenders use the adapters the watermill-sql documentation
// gives for PostgreSQL: DefaultPostgreSQLSchema (one table per topic,
// ordered by transaction id and offset) and DefaultPostgreSQLOffsetsAdapter
// (one offsets row per consumer group), with the default batch of 100.

func init() {
	registerContender("watermill-forwarder", runWatermillForwarder)
	registerContender("watermill-router", runWatermillRouter)
}

var (
	wmSchema  = wmsql.DefaultPostgreSQLSchema{}
	wmOffsets = wmsql.DefaultPostgreSQLOffsetsAdapter{}
)

// wmKeyMarshaler sends the "key" metadata entry as the Kafka message key, so
// events are partitioned by key like PulseBus's.
var wmKeyMarshaler = wmkafka.NewWithPartitioningMarshaler(func(_ string, msg *message.Message) (string, error) {
	return msg.Metadata.Get("key"), nil
})

// watermillSchemaQueries returns the statements that create the forwarder's
// SQL tables for fwdTopic.
func watermillSchemaQueries(fwdTopic string) ([]string, error) {
	var out []string
	qs, err := wmSchema.SchemaInitializingQueries(wmsql.SchemaInitializingQueriesParams{Topic: fwdTopic})
	if err != nil {
		return nil, err
	}
	for _, q := range qs {
		out = append(out, q.Query)
	}
	oqs, err := wmOffsets.SchemaInitializingQueries(wmsql.OffsetsSchemaInitializingQueriesParams{Topic: fwdTopic})
	if err != nil {
		return nil, err
	}
	for _, q := range oqs {
		out = append(out, q.Query)
	}
	return out, nil
}

// runWatermillForwarder runs Watermill's forwarder: the watermill-sql
// subscriber on the forwarder topic feeding the watermill-kafka publisher.
func runWatermillForwarder(ctx context.Context, spec Spec, ready func(), start <-chan struct{}, _ func(childMsg)) (map[string]float64, error) {
	pool, err := pgxpool.New(ctx, spec.DBURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	logger := watermill.NopLogger{}
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(pool), wmsql.SubscriberConfig{
		SchemaAdapter:  wmSchema,
		OffsetsAdapter: wmOffsets,
		PollInterval:   spec.PollInterval,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("watermill sql subscriber: %w", err)
	}
	pcfg := wmkafka.DefaultSaramaSyncPublisherConfig()
	pub, err := wmkafka.NewPublisher(wmkafka.PublisherConfig{
		Brokers:               spec.Brokers,
		Marshaler:             wmKeyMarshaler,
		OverwriteSaramaConfig: pcfg,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("watermill kafka publisher: %w", err)
	}
	fwd, err := forwarder.NewForwarder(sub, pub, logger, forwarder.Config{ForwarderTopic: spec.ForwarderTopic, CloseTimeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("watermill forwarder: %w", err)
	}
	ready()
	select {
	case <-start:
	case <-ctx.Done():
		_ = pub.Close()
		_ = sub.Close()
		return nil, nil
	}
	runErr := make(chan error, 1)
	go func() { runErr <- fwd.Run(context.Background()) }()
	var err2 error
	select {
	case <-ctx.Done():
	case err2 = <-runErr:
		runErr <- err2
	}
	_ = fwd.Close()
	if e := <-runErr; e != nil && err2 == nil {
		err2 = e
	}
	_ = pub.Close()
	_ = sub.Close()
	return nil, err2
}

// wmOffsetsTable holds the Watermill router's SQL offsets: the equivalent
// of PulseBus's handler_offsets for the transactional handler.
const wmOffsetsTable = `CREATE TABLE IF NOT EXISTS bench_wm_offsets (
	group_id    text    NOT NULL,
	topic       text    NOT NULL,
	partition   integer NOT NULL,
	next_offset bigint  NOT NULL,
	PRIMARY KEY (group_id, topic, partition)
)`

// runWatermillRouter consumes spec.Topic with a Watermill router and the
// watermill-kafka subscriber (consumer group spec.Group, from the oldest
// offset). Mode "plain" counts events; mode "tx" runs one transaction per
// event: the handler's insert plus an upsert of the SQL offset, the way a
// Watermill user gets effectively-once effects.
func runWatermillRouter(ctx context.Context, spec Spec, ready func(), start <-chan struct{}, done func(childMsg)) (map[string]float64, error) {
	if spec.Mode != modePlain && spec.Mode != modeTx {
		return nil, fmt.Errorf("watermill-router: mode %q not supported (plain, tx)", spec.Mode)
	}
	var pool *pgxpool.Pool
	if spec.Mode == modeTx {
		cfg, err := pgxpool.ParseConfig(spec.DBURL)
		if err != nil {
			return nil, err
		}
		cfg.MaxConns = int32(max(spec.Partitions, 4))
		if pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
		defer pool.Close()
	}
	logger := watermill.NopLogger{}
	scfg := wmkafka.DefaultSaramaSubscriberConfig()
	scfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	sub, err := wmkafka.NewSubscriber(wmkafka.SubscriberConfig{
		Brokers:               spec.Brokers,
		Unmarshaler:           wmkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: scfg,
		ConsumerGroup:         spec.Group,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("watermill kafka subscriber: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	if err != nil {
		return nil, err
	}
	tr := newSeqTracker(spec.Events, done)
	router.AddConsumerHandler("bench", spec.Topic, sub, func(msg *message.Message) error {
		seq, ok := payloadSeq(msg.Payload)
		if !ok {
			return errors.New("payload without seq")
		}
		if spec.Mode == modeTx {
			mctx := msg.Context()
			partition, _ := wmkafka.MessagePartitionFromCtx(mctx)
			offset, _ := wmkafka.MessagePartitionOffsetFromCtx(mctx)
			err := pgx.BeginFunc(mctx, pool, func(tx pgx.Tx) error {
				var next int64
				err := tx.QueryRow(mctx, `SELECT next_offset FROM bench_wm_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3 FOR UPDATE`,
					spec.Group, spec.Topic, partition).Scan(&next)
				if err == nil && offset < next {
					return nil // already handled
				} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return err
				}
				if _, err := tx.Exec(mctx, `INSERT INTO bench_handled (handler, event_id, seq) VALUES ($1, $2, $3)`,
					spec.Contender+"/"+spec.Mode, msg.Metadata.Get("ce_id"), seq); err != nil {
					return err
				}
				_, err = tx.Exec(mctx, `INSERT INTO bench_wm_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
					ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset`,
					spec.Group, spec.Topic, partition, offset+1)
				return err
			})
			if err != nil {
				return fmt.Errorf("handle %d: %w", seq, err)
			}
		}
		return tr.mark(seq)
	})
	ready()
	select {
	case <-start:
	case <-ctx.Done():
		_ = sub.Close()
		return nil, nil
	}
	tr.start()
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(context.Background()) }()
	var err2 error
	select {
	case <-ctx.Done():
	case err2 = <-runErr:
		runErr <- err2
	}
	_ = router.Close()
	if e := <-runErr; e != nil && err2 == nil {
		err2 = e
	}
	_ = sub.Close()
	return tr.stats(), err2
}
