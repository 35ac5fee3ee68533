package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// The live scenario: producer goroutines commit one event per transaction
// at a fixed offered rate while a relay (or nothing, for the baseline)
// runs. Commit times are taken in the producers right after COMMIT returns;
// arrival times are taken by an independent franz-go reader in the parent
// that consumes the topic from the start with long-polling fetches. So the
// "commit->ack" latency is commit -> the record is readable from the
// broker: the broker's acknowledgement plus one fetch response on
// loopback, an upper bound of commit->ack that is the same for every
// contender.

// liveProducer commits one event in its own transaction.
type liveProducer func(ctx context.Context, seq int64) error

// liveTimeline holds, per event seq, nanoseconds since base of its commit
// and of its arrival at the reader (0: not yet).
type liveTimeline struct {
	base   time.Time
	commit []atomic.Int64
	arrive []atomic.Int64
}

func newLiveTimeline(n int64) *liveTimeline {
	return &liveTimeline{base: time.Now(), commit: make([]atomic.Int64, n), arrive: make([]atomic.Int64, n)}
}

func (t *liveTimeline) now() int64 { return max(int64(time.Since(t.base)), 1) }

// produceAtRate runs producers goroutines that together start one
// transaction every 1/rate seconds for d (event i is due at i/rate), each
// calling produce for its events. A producer that falls behind skips the
// wait, so the produced rate shows what the database allowed. It returns
// the number of committed events and the producing window.
func produceAtRate(ctx context.Context, tl *liveTimeline, producers int, rate float64, d time.Duration, produce liveProducer) (committed int64, window time.Duration, err error) {
	total := int64(math.Ceil(rate * d.Seconds()))
	total = min(total, int64(len(tl.commit)))
	start := time.Now()
	end := start.Add(d)
	var (
		wg       sync.WaitGroup
		n        atomic.Int64
		errOnce  sync.Once
		firstErr error
	)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for g := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timer := time.NewTimer(0)
			defer timer.Stop()
			<-timer.C
			for i := int64(g); i < total; i += int64(producers) {
				due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
				if time.Now().After(end) || pctx.Err() != nil {
					return
				}
				if w := time.Until(due); w > 0 {
					timer.Reset(w)
					select {
					case <-pctx.Done():
						return
					case <-timer.C:
					}
				}
				if err := produce(pctx, i); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("producer: event %d: %w", i, err); cancel() })
					return
				}
				tl.commit[i].Store(tl.now())
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return n.Load(), time.Since(start), firstErr
}

// liveReader consumes a topic from the start and stamps each benchmark
// event's first arrival.
type liveReader struct {
	cl       *kgo.Client
	tl       *liveTimeline
	distinct atomic.Int64
	dups     atomic.Int64
	stray    atomic.Int64
	done     chan struct{}
	err      error
}

func startLiveReader(brokers []string, topic string, partitions int, tl *liveTimeline) (*liveReader, error) {
	offsets := map[int32]kgo.Offset{}
	for p := range partitions {
		offsets[int32(p)] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchMaxWait(200*time.Millisecond), kgo.FetchMaxBytes(16<<20))
	if err != nil {
		return nil, fmt.Errorf("latency reader: %w", err)
	}
	r := &liveReader{cl: cl, tl: tl, done: make(chan struct{})}
	go r.run()
	return r, nil
}

func (r *liveReader) run() {
	defer close(r.done)
	for {
		fs := r.cl.PollFetches(context.Background())
		if fs.IsClientClosed() {
			return
		}
		now := r.tl.now()
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, kgo.ErrClientClosed) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			r.err = ferr
			return
		}
		fs.EachRecord(func(rec *kgo.Record) {
			seq, ok := payloadSeq(rec.Value)
			if !ok || seq < 0 || seq >= int64(len(r.tl.arrive)) {
				r.stray.Add(1)
				return
			}
			if r.tl.arrive[seq].CompareAndSwap(0, now) {
				r.distinct.Add(1)
			} else {
				r.dups.Add(1)
			}
		})
	}
}

func (r *liveReader) Close() error {
	r.cl.Close()
	<-r.done
	return r.err
}

// liveStats turns a timeline into latency percentiles and the p99 of the
// backlog age sampled every 10 ms over the producing window.
type liveStats struct {
	committed, delivered  int64
	p50, p99, p999, maxMs float64
	backlogP99Ms          float64
}

func computeLiveStats(tl *liveTimeline, windowNs int64) liveStats {
	type ev struct{ commit, arrive int64 }
	var evs []ev
	var lat []time.Duration
	var st liveStats
	for i := range tl.commit {
		c := tl.commit[i].Load()
		if c == 0 {
			continue
		}
		st.committed++
		a := tl.arrive[i].Load()
		if a == 0 {
			a = math.MaxInt64
		} else {
			st.delivered++
			lat = append(lat, time.Duration(max(a-c, 0)))
		}
		evs = append(evs, ev{c, a})
	}
	sortDurations(lat)
	st.p50, st.p99, st.p999 = percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 0.999)
	if len(lat) > 0 {
		st.maxMs = float64(lat[len(lat)-1]) / 1e6
	}
	slices.SortFunc(evs, func(a, b ev) int { return compareInt64(a.commit, b.commit) })
	var ages []time.Duration
	const step = int64(10 * time.Millisecond)
	if len(evs) > 0 {
		t0 := evs[0].commit
		p := 0
		// The oldest event not yet delivered at time t is the first one
		// in commit order whose arrival is after t; as t grows that index
		// only moves forward.
		for t := t0; t <= t0+windowNs; t += step {
			for p < len(evs) && evs[p].commit <= t && evs[p].arrive <= t {
				p++
			}
			age := time.Duration(0)
			if p < len(evs) && evs[p].commit <= t {
				age = time.Duration(t - evs[p].commit)
			}
			ages = append(ages, age)
		}
	}
	sortDurations(ages)
	st.backlogP99Ms = percentile(ages, 0.99)
	return st
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// benchEnvelope is the live and consumer scenarios' event seq.
func benchEnvelope(seq int64, payloadSize int) envelope.Envelope {
	return envelope.Envelope{
		ID:          uuid.Must(uuid.NewV7()).String(),
		Type:        "bench.event",
		Source:      "pulsebench",
		Key:         fmt.Sprintf("k%d", seq%benchKeys),
		Time:        time.Now().UTC().Truncate(time.Microsecond),
		ContentType: envelope.ContentTypeJSON,
		Payload:     makePayload(seq, payloadSize),
	}
}

// How the live producers write an event.
const (
	viaInsertTx  = "outbox.InsertTx"  // PulseBus's producer API (INSERT + pg_notify)
	viaNoNotify  = "insert-no-notify" // the same row, plain INSERT, no pg_notify (diagnostic)
	viaWatermill = "watermill-forwarder-publisher"
)

// liveContenders are the live cases in run order: each relay after the
// baseline of its producer API.
var liveContenders = []struct {
	name  string // the result's contender
	relay string // child contender; "" for producers alone
	via   string // how producers write
	owner string // selected with --contenders by this name
}{
	{"producers-alone-outbox", "", viaInsertTx, "pulsebus-relay"},
	{"producers-alone-no-notify", "", viaNoNotify, "pulsebus-relay"},
	{"pulsebus-relay", "pulsebus-relay", viaInsertTx, "pulsebus-relay"},
	{"producers-alone-watermill", "", viaWatermill, "watermill-forwarder"},
	{"watermill-forwarder", "watermill-forwarder", viaWatermill, "watermill-forwarder"},
}

// runLive measures the relays under producers at fixed offered rates.
func (b *bench) runLive(ctx context.Context) error {
	db, err := newScratchDB(ctx, b.producers+4)
	if err != nil {
		return err
	}
	defer dropScratchDB(db)
	const fwdTopic = "pulsebench_live"
	if err := setupWatermill(ctx, db, fwdTopic); err != nil {
		return err
	}
	wmMsgs, wmOffs := wmTables(fwdTopic)
	for _, rate := range b.rates {
		for _, lc := range liveContenders {
			if !b.want(lc.owner) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res := Result{Scenario: "live", Case: fmt.Sprintf("rate-%.0f", rate), Contender: lc.name, OfferedRate: rate}
			if lc.via == viaNoNotify {
				res.Note = "diagnostic baseline: the row InsertTx writes, as a plain INSERT without pg_notify"
			}
			// Start from an empty, freshly analysed table (docs/design.md#claim-plan).
			var reset []string
			if lc.via == viaWatermill {
				reset = []string{`TRUNCATE ` + wmMsgs + `, ` + wmOffs, `VACUUM ANALYZE ` + wmMsgs}
			} else {
				reset = []string{`TRUNCATE pulsebus.outbox`, `VACUUM ANALYZE pulsebus.outbox`}
			}
			for _, q := range reset {
				if _, err := db.Pool.Exec(ctx, q); err != nil {
					return fmt.Errorf("reset: %w", err)
				}
			}
			topic := "live-" + lc.name + "-" + randomHex(3)
			if err := b.kc.CreateTopicErr(ctx, topic, b.partitions); err != nil {
				return err
			}
			b.liveOne(ctx, db, topic, fwdTopic, rate, lc.relay, lc.via, &res)
			b.add(res)
			_ = b.kc.DeleteTopic(topic)
		}
	}
	return nil
}

// liveOne runs one live case.
func (b *bench) liveOne(ctx context.Context, db *testdb.DB, topic, fwdTopic string, rate float64, relay, via string, res *Result) {
	n := int64(math.Ceil(rate*b.liveFor.Seconds())) + 1
	tl := newLiveTimeline(n)
	produce := func(ctx context.Context, seq int64) error {
		return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			return outbox.InsertTx(ctx, tx, topic, benchEnvelope(seq, b.payloadSize))
		})
	}
	switch via {
	case viaNoNotify:
		produce = func(ctx context.Context, seq int64) error {
			return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
				env := benchEnvelope(seq, b.payloadSize)
				_, err := tx.Exec(ctx, `INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload)
					VALUES ($1, $2, $3, $4, $5, '', $6, $7, '{}', $8)`,
					env.ID, topic, env.Key, env.Type, env.Source, env.Time, env.ContentType, env.Payload)
				return err
			})
		}
	case viaWatermill:
		wlog := watermill.NopLogger{}
		produce = func(ctx context.Context, seq int64) error {
			return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
				// Watermill's transactional outbox: a SQL publisher on
				// the caller's transaction, wrapped by the forwarder's
				// publisher, as its documentation shows.
				pub, err := wmsql.NewPublisher(wmsql.TxFromPgx(tx), wmsql.PublisherConfig{SchemaAdapter: wmSchema}, wlog)
				if err != nil {
					return err
				}
				msg := message.NewMessage(watermill.NewUUID(), makePayload(seq, b.payloadSize))
				msg.Metadata.Set("key", fmt.Sprintf("k%d", seq%benchKeys))
				msg.Metadata.Set("ce_type", "bench.event")
				msg.Metadata.Set("ce_source", "pulsebench")
				return forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: fwdTopic}).Publish(topic, msg)
			})
		}
	}

	var (
		c      *child
		reader *liveReader
		meter  *cpuMeter
		err    error
	)
	if relay != "" {
		spec := Spec{Contender: relay, DBURL: contenderURL(db.URL), Brokers: b.brokers, Topic: topic, Partitions: b.partitions,
			Batch: b.batch, ForwarderTopic: fwdTopic, PollInterval: b.wmPoll,
			CPUProfile: b.profilePath("live", res.Case+"-"+relay)}
		if c, err = startChild(ctx, spec); err != nil {
			res.Error = err.Error()
			return
		}
		if reader, err = startLiveReader(b.brokers, topic, b.partitions, tl); err != nil {
			res.Error = err.Error()
			c.kill()
			return
		}
		meter = startCPUMeter(ctx, db)
		c.Start()
	}
	committed, window, perr := produceAtRate(ctx, tl, b.producers, rate, b.liveFor, produce)
	res.Events = committed
	res.Seconds = window.Seconds()
	res.ProducerRate = float64(committed) / window.Seconds()
	if perr != nil {
		res.Error = perr.Error()
	}
	if relay == "" {
		// Baseline: check the rows are all there, nothing else to wait for.
		q := `SELECT count(*) FROM pulsebus.outbox`
		if via == viaWatermill {
			m, _ := wmTables(fwdTopic)
			q = `SELECT count(*) FROM ` + m
		}
		var rows int64
		if err := db.Pool.QueryRow(ctx, q).Scan(&rows); err != nil && res.Error == "" {
			res.Error = err.Error()
		} else if rows != committed && res.Error == "" {
			res.Error = fmt.Sprintf("%d rows in the outbox for %d committed events", rows, committed)
		}
		logf("live: %s: %s: offered %.0f/s, produced %.0f/s (%d events)", res.Case, res.Contender, rate, res.ProducerRate, committed)
		return
	}
	werr := waitFor(ctx, b.timeoutFor(committed), 5*time.Millisecond, func(context.Context) (bool, error) {
		return reader.distinct.Load() >= committed, nil
	})
	if werr != nil && res.Error == "" {
		res.Error = "not all events reached Kafka: " + werr.Error()
		if via == viaWatermill {
			if why := oldestSnapshotHolder(ctx, db); why != "" {
				res.Error += "; " + why
			}
		}
	}
	pgCPU, _ := meter.stop(ctx)
	cres, usage, serr := c.Stop()
	if serr != nil && res.Error == "" {
		res.Error = serr.Error()
	}
	if rerr := reader.Close(); rerr != nil && res.Error == "" {
		res.Error = "latency reader: " + rerr.Error()
	}
	res.setUsage(usage, committed)
	res.setSideCPU(pgCPU, -1, committed)
	res.Stats = cres.Stats
	st := computeLiveStats(tl, int64(window))
	res.Distinct, res.Dups = reader.distinct.Load(), reader.dups.Load()
	res.LatP50Ms, res.LatP99Ms, res.LatP999Ms, res.LatMaxMs = st.p50, st.p99, st.p999, st.maxMs
	res.BacklogAgeP99 = st.backlogP99Ms
	if st.delivered != st.committed && res.Error == "" {
		res.Error = fmt.Sprintf("LOST EVENTS: %d of %d committed events reached Kafka", st.delivered, st.committed)
	}
	if n := reader.stray.Load(); n > 0 && res.Error == "" {
		res.Error = fmt.Sprintf("%d records on the topic that no producer committed", n)
	}
	logf("live: %s: %s: produced %.0f/s, delivered %d/%d, commit->read p50 %.2f p99 %.2f p99.9 %.2f ms, backlog age p99 %.1f ms %s",
		res.Case, res.Contender, res.ProducerRate, res.Distinct, committed, st.p50, st.p99, st.p999, st.backlogP99Ms, res.Error)
}
