package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
)

// fillChunk is how many rows one INSERT ... SELECT generate_series writes;
// each chunk is its own transaction (so Watermill sees many transaction ids,
// as it would in production).
const fillChunk = 10_000

// benchKeys is the number of distinct partition keys the events use.
const benchKeys = 1000

// payloadSQL builds the same payload as makePayload, from the series value s.
func payloadSQL(size int) string {
	return fmt.Sprintf(`('{"seq":' || s || ',"pad":"' || repeat('x', greatest(0, %d - 2 - length('{"seq":' || s || ',"pad":"'))) || '"}')`, size)
}

// fillOutbox writes events 0..n-1 into pulsebus.outbox for topic, as
// producers would have (same columns InsertTx writes), then vacuums and
// analyses the table.
func fillOutbox(ctx context.Context, db *testdb.DB, topic string, n int64, payloadSize int) error {
	if _, err := db.Pool.Exec(ctx, `TRUNCATE pulsebus.outbox`); err != nil {
		return fmt.Errorf("truncate outbox: %w", err)
	}
	q := `INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, event_time, content_type, payload)
		SELECT pulsebus.uuid_v7(), $1, 'k' || (s % ` + fmt.Sprint(benchKeys) + `), 'bench.event', 'pulsebench',
		       date_trunc('microseconds', clock_timestamp()), 'application/json', convert_to(` + payloadSQL(payloadSize) + `, 'UTF8')
		  FROM generate_series($2::bigint, $3::bigint) AS s`
	for lo := int64(0); lo < n; lo += fillChunk {
		hi := min(lo+fillChunk, n) - 1
		if _, err := db.Pool.Exec(ctx, q, topic, lo, hi); err != nil {
			return fmt.Errorf("fill outbox: %w", err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE pulsebus.outbox`); err != nil {
		return fmt.Errorf("vacuum outbox: %w", err)
	}
	return nil
}

// wmTable returns the quoted message and offsets table names of a Watermill
// forwarder topic.
func wmTables(fwdTopic string) (messages, offsets string) {
	return wmSchema.MessagesTable(fwdTopic), wmOffsets.MessagesOffsetsTable(fwdTopic)
}

// setupWatermill creates the forwarder's tables.
func setupWatermill(ctx context.Context, db *testdb.DB, fwdTopic string) error {
	qs, err := watermillSchemaQueries(fwdTopic)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if strings.Contains(q, "pg_advisory_xact_lock") {
			continue
		}
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("watermill schema: %w", err)
		}
	}
	return nil
}

// fillWatermill writes events 0..n-1 into the forwarder's table exactly as
// forwarder.Publisher over the watermill-sql publisher would: a forwarder
// envelope (destination topic, uuid, base64 payload, metadata) as JSON.
func fillWatermill(ctx context.Context, db *testdb.DB, fwdTopic, destTopic string, n int64, payloadSize int) error {
	msgs, offs := wmTables(fwdTopic)
	if _, err := db.Pool.Exec(ctx, `TRUNCATE `+msgs+`, `+offs); err != nil {
		return fmt.Errorf("truncate watermill tables: %w", err)
	}
	q := `INSERT INTO ` + msgs + ` (uuid, payload, metadata, transaction_id)
		SELECT gen_random_uuid()::text,
		       json_build_object('destination_topic', $1::text, 'uuid', gen_random_uuid()::text,
		                         'payload', translate(encode(convert_to(` + payloadSQL(payloadSize) + `, 'UTF8'), 'base64'), E'\n', ''),
		                         'metadata', json_build_object('key', 'k' || (s % ` + fmt.Sprint(benchKeys) + `), 'ce_type', 'bench.event', 'ce_source', 'pulsebench')),
		       '{}'::json, pg_current_xact_id()
		  FROM generate_series($2::bigint, $3::bigint) AS s`
	for lo := int64(0); lo < n; lo += fillChunk {
		hi := min(lo+fillChunk, n) - 1
		if _, err := db.Pool.Exec(ctx, q, destTopic, lo, hi); err != nil {
			return fmt.Errorf("fill watermill table: %w", err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE `+msgs); err != nil {
		return fmt.Errorf("vacuum watermill table: %w", err)
	}
	return nil
}

// runDrain measures draining a pre-filled backlog.
func (b *bench) runDrain(ctx context.Context) error {
	db, err := newScratchDB(ctx, 4)
	if err != nil {
		return err
	}
	defer dropScratchDB(db)
	const fwdTopic = "pulsebench_drain"
	if err := setupWatermill(ctx, db, fwdTopic); err != nil {
		return err
	}
	for _, name := range []string{"sql-claim-delete", "pulsebus-relay", "watermill-forwarder"} {
		if !b.want(name) {
			continue
		}
		res := Result{Scenario: "drain", Case: "backlog", Contender: name, Events: b.events}
		topic := "drain-" + name + "-" + randomHex(3)
		spec := Spec{Contender: name, DBURL: contenderURL(db.URL), Brokers: b.brokers, Topic: topic, Partitions: b.partitions,
			Batch: b.batch, ForwarderTopic: fwdTopic, PollInterval: 100 * time.Millisecond, CPUProfile: b.profilePath("drain", name)}
		n := b.events
		t := time.Now()
		switch name {
		case "watermill-forwarder":
			n = min(b.events, b.wmEvents)
			res.Events = n
			if n < b.events {
				res.Note = fmt.Sprintf("Watermill drained %d of the %d events (--watermill-events) to keep the run short; the rate is per second", n, b.events)
			}
			err = fillWatermill(ctx, db, fwdTopic, topic, n, b.payloadSize)
		default:
			err = fillOutbox(ctx, db, topic, n, b.payloadSize)
		}
		if err != nil {
			return err
		}
		logf("drain: %s: filled %d events in %s", name, n, time.Since(t).Round(time.Millisecond))
		spec.Events = n
		if name != "sql-claim-delete" {
			if err := b.kc.CreateTopicErr(ctx, topic, b.partitions); err != nil {
				return err
			}
		}
		b.drainOne(ctx, db, spec, &res)
		b.add(res)
		if name != "sql-claim-delete" {
			_ = b.kc.DeleteTopic(topic) // free the broker's memory
		}
	}
	return nil
}

func (b *bench) drainOne(ctx context.Context, db *testdb.DB, spec Spec, res *Result) {
	c, err := startChild(ctx, spec)
	if err != nil {
		res.Error = err.Error()
		return
	}
	meter := startCPUMeter(ctx, db)
	t0 := c.Start()
	timeout := b.timeoutFor(spec.Events)
	var t1 time.Time
	if spec.Contender == "sql-claim-delete" {
		m, err := c.next(ctx, timeout)
		if err == nil && m.Event != "done" {
			err = fmt.Errorf("unexpected %q: %s", m.Event, m.Error)
		}
		t1 = time.Now()
		if err != nil {
			res.Error = err.Error()
		} else {
			res.Distinct = m.Handled
		}
	} else {
		err = waitFor(ctx, timeout, 5*time.Millisecond, func(ctx context.Context) (bool, error) {
			n, err := b.admin.TotalEnd(ctx, spec.Topic, spec.Partitions)
			return n >= spec.Events, err
		})
		t1 = time.Now()
		if err != nil {
			res.Error = "drain: " + err.Error()
			if spec.Contender == "watermill-forwarder" {
				if why := oldestSnapshotHolder(ctx, db); why != "" {
					res.Error += "; " + why
				}
			}
		}
	}
	pgCPU, parentCPU := meter.stop(ctx)
	res.setSideCPU(pgCPU, parentCPU, spec.Events)
	cres, usage, serr := c.Stop()
	if serr != nil && res.Error == "" {
		res.Error = serr.Error()
	}
	res.Stats = cres.Stats
	res.Seconds = t1.Sub(t0).Seconds()
	if res.Seconds > 0 {
		res.Rate = float64(spec.Events) / res.Seconds
	}
	res.setUsage(usage, spec.Events)
	if spec.Contender != "sql-claim-delete" {
		vctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		res.Distinct, res.Dups, err = verifyTopic(vctx, b.brokers, spec.Topic, spec.Partitions, spec.Events)
		if err != nil && res.Error == "" {
			res.Error = "verify: " + err.Error()
		}
	}
	if res.Distinct != spec.Events && res.Error == "" {
		res.Error = fmt.Sprintf("LOST EVENTS: %d of %d delivered", res.Distinct, spec.Events)
	}
	logf("drain: %s: %d events in %.2fs = %.0f/s (delivered %d, dups %d) %s", spec.Contender, spec.Events, res.Seconds, res.Rate, res.Distinct, res.Dups, res.Error)
}
