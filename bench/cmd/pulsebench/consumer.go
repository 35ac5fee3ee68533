package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// produceEvents writes events 0..n-1 to topic as PulseBus envelopes
// (CloudEvents binary mode, keyed, murmur2-partitioned like the relay's),
// with franz-go from the parent.
func produceEvents(ctx context.Context, brokers []string, topic string, n int64, payloadSize int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(50_000),
		kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return fmt.Errorf("producer client: %w", err)
	}
	defer cl.Close()
	var (
		mu       sync.Mutex
		firstErr error
	)
	for seq := range n {
		msg, err := envelope.ToMessage(benchEnvelope(seq, payloadSize))
		if err != nil {
			return fmt.Errorf("envelope %d: %w", seq, err)
		}
		rec := &kgo.Record{Key: msg.Key, Value: msg.Value, Headers: make([]kgo.RecordHeader, len(msg.Headers))}
		for i, h := range msg.Headers {
			rec.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("produce to %s: %w", topic, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return fmt.Errorf("produce to %s: %w", topic, firstErr)
	}
	return nil
}

// consumerCases are the consumer scenario's runs, in order.
var consumerCases = []struct {
	cse, contender, mode string
	perEventTx           bool // uses the --tx-events topic
	skipped              string
}{
	{"plain", "pulsebus-dispatch", modePlain, false, ""},
	{"plain", "watermill-router", modePlain, false, ""},
	{"tx-per-event", "pulsebus-dispatch", modeTx, true, ""},
	{"tx-per-event", "watermill-router", modeTx, true, ""},
	{"tx-batched", "pulsebus-dispatch", modeTxBatch, false, ""},
	{"tx-batched", "watermill-router", "", false, "Watermill has no batched transactional handler; compare with its tx-per-event row"},
}

// runConsumer measures consumers on pre-produced topics.
func (b *bench) runConsumer(ctx context.Context) error {
	db, err := newScratchDB(ctx, 4)
	if err != nil {
		return err
	}
	defer dropScratchDB(db)
	for _, q := range []string{handledTable, wmOffsetsTable} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("create bench tables: %w", err)
		}
	}
	full := "consumer-" + randomHex(3)
	txEvents := min(b.txEvents, b.events)
	txTopic := full
	topics := []struct {
		name string
		n    int64
	}{{full, b.events}}
	if txEvents < b.events {
		txTopic = "consumer-tx-" + randomHex(3)
		topics = append(topics, struct {
			name string
			n    int64
		}{txTopic, txEvents})
	}
	for _, tp := range topics {
		t := time.Now()
		if err := b.kc.CreateTopicErr(ctx, tp.name, b.partitions); err != nil {
			return err
		}
		defer func() { _ = b.kc.DeleteTopic(tp.name) }()
		if err := produceEvents(ctx, b.brokers, tp.name, tp.n, b.payloadSize); err != nil {
			return err
		}
		logf("consumer: produced %d events to %s in %s", tp.n, tp.name, time.Since(t).Round(time.Millisecond))
	}
	for _, cc := range consumerCases {
		if !b.want(cc.contender) {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		topic, n := full, b.events
		if cc.perEventTx {
			topic, n = txTopic, txEvents
		}
		res := Result{Scenario: "consumer", Case: cc.cse, Contender: cc.contender, Events: n}
		if cc.skipped != "" {
			res.Skipped = cc.skipped
			b.add(res)
			continue
		}
		if n < b.events {
			res.Note = fmt.Sprintf("%d events (--tx-events) for the one-transaction-per-event cases", n)
		}
		if _, err := db.Pool.Exec(ctx, `TRUNCATE bench_handled, bench_wm_offsets`); err != nil {
			return fmt.Errorf("reset bench tables: %w", err)
		}
		spec := Spec{Contender: cc.contender, Mode: cc.mode, DBURL: contenderURL(db.URL), Brokers: b.brokers, Topic: topic,
			Partitions: b.partitions, Events: n, Group: "bench-" + cc.contender + "-" + cc.mode + "-" + randomHex(3),
			CPUProfile: b.profilePath("consumer", cc.cse+"-"+cc.contender)}
		b.consumeOne(ctx, db, spec, &res)
		b.add(res)
	}
	return nil
}

func (b *bench) consumeOne(ctx context.Context, db *testdb.DB, spec Spec, res *Result) {
	c, err := startChild(ctx, spec)
	if err != nil {
		res.Error = err.Error()
		return
	}
	meter := startCPUMeter(ctx, db)
	c.Start()
	m, err := c.next(ctx, b.timeoutFor(spec.Events))
	if err == nil && m.Event != "done" {
		err = fmt.Errorf("contender ended before handling every event: %s", m.Error)
	}
	if err != nil {
		res.Error = err.Error()
	}
	pgCPU, parentCPU := meter.stop(ctx)
	cres, usage, serr := c.Stop()
	if serr != nil && res.Error == "" {
		res.Error = serr.Error()
	}
	res.Stats = cres.Stats
	res.setUsage(usage, spec.Events)
	res.setSideCPU(pgCPU, parentCPU, spec.Events)
	if res.Error == "" {
		res.Distinct = m.Distinct
		res.Dups = m.Handled - m.Distinct
		res.StartupSec = m.FirstSec
		res.Seconds = m.LastSec - m.FirstSec
		if res.Seconds > 0 {
			res.Rate = float64(spec.Events) / res.Seconds
		}
	}
	if spec.Mode == modeTx || spec.Mode == modeTxBatch {
		// Exactly-once effects: every event's row is there, once.
		var rows, distinct int64
		err := db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq) FROM bench_handled WHERE handler = $1`,
			spec.Contender+"/"+spec.Mode).Scan(&rows, &distinct)
		switch {
		case err != nil:
			if res.Error == "" {
				res.Error = "verify bench_handled: " + err.Error()
			}
		case distinct != spec.Events && res.Error == "":
			res.Error = fmt.Sprintf("LOST EVENTS: %d of %d events in bench_handled", distinct, spec.Events)
		case rows != distinct && res.Error == "":
			res.Error = fmt.Sprintf("DUPLICATE EFFECTS: %d rows for %d events in bench_handled", rows, distinct)
		}
		res.Dups = rows - distinct
	} else if res.Distinct != spec.Events && res.Error == "" {
		res.Error = fmt.Sprintf("LOST EVENTS: %d of %d handled", res.Distinct, spec.Events)
	}
	logf("consumer: %s: %s: %d events in %.2fs = %.0f/s (after %.2fs to the first event), CPU %.2fs, RSS %.1f MiB %s",
		res.Case, spec.Contender, spec.Events, res.Seconds, res.Rate, res.StartupSec, res.CPUSeconds, res.MaxRSSMiB, res.Error)
}
