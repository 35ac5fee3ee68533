package outbox_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/edupulse/pulsebus/internal/outboxrow"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// Relay benchmarks. They need PostgreSQL (TEST_DATABASE_URL) and run kfake
// in-process, so the relay, kfake and PostgreSQL share the machine's cores:
// compare rates measured in the same run.
//
//	go test -run '^$' -bench 'ClaimDelete|RelayDrain' -benchtime 1x ./pkg/outbox
//	go test -run '^$' -bench CommitToAck -benchtime 1x ./pkg/outbox
//	go test -run '^$' -bench InsertTx_Concurrent -benchtime 3x ./pkg/outbox
//
// Sizes come from the environment:
//
//	PULSEBUS_BENCH_ROWS     backlog rows for ClaimDelete and RelayDrain (default 1000000)
//	PULSEBUS_BENCH_RATE     events/s offered in CommitToAck (default 5000)
//	PULSEBUS_BENCH_SECONDS  how long CommitToAck offers them (default 10); InsertTx_Concurrent's
//	                        seconds per variant and round (default 3)
//	PULSEBUS_BENCH_PRODUCERS    InsertTx_Concurrent's producer goroutines (default 16)
//	PULSEBUS_BENCH_BATCH    relay and claim batch size (default outbox.DefaultBatchSize)
//	PULSEBUS_BENCH_SYNC_COMMIT  the producers' synchronous_commit in CommitToAck (default off)
//	PULSEBUS_BENCH_PREFETCH     "off": RelayDrain claims one batch at a time (default on)
//	PULSEBUS_BENCH_BROKER_DELAY RelayDrain: kfake answers every produce request this late (e.g. 2ms)
//	PULSEBUS_BENCH_DEBOUNCE     CommitToAck: the relay's NotifyDebounce (default the relay's default)

const benchTopic = "bench"

// benchPartitions is the partition count of the benchmark topic.
const benchPartitions = 8

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// fillOutbox inserts n rows shaped like benchEnvelope's (about 100 payload
// bytes, one meta entry, 1000 keys) straight in SQL, then VACUUM ANALYZEs
// the table as an operator's database would have it after a while.
func fillOutbox(b *testing.B, db *testdb.DB, n int) {
	b.Helper()
	ctx := context.Background()
	const chunk = 200_000
	for done := 0; done < n; done += chunk {
		m := min(chunk, n-done)
		if _, err := db.Pool.Exec(ctx, `
			INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload)
			SELECT gen_random_uuid(), $1, 'course-' || lpad((g % 1000)::text, 6, '0'), 'lesson.published',
			       'lesson-service', '', clock_timestamp(), 'application/json', '{"tenant": "acme"}',
			       convert_to('{"lesson_id":"lesson-' || lpad(g::text, 6, '0') ||
			                  '","title":"Fractions and decimals: a first look at place value (part 1)"}', 'UTF8')
			  FROM generate_series($2::int, $3::int) g`, benchTopic, done, done+m-1); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE pulsebus.outbox`); err != nil {
		b.Fatal(err)
	}
}

// cpuMeter measures CPU time spent, so efficiency can be compared on a
// machine whose other load makes wall-clock rates noisy: this process (the
// relay, and kfake with it) and the PostgreSQL backends serving a database.
type cpuMeter struct {
	db       *testdb.DB
	proc, pg time.Duration
}

func startCPU(b *testing.B, db *testdb.DB) *cpuMeter {
	m := &cpuMeter{db: db}
	m.proc, m.pg = processCPU(), backendCPU(b, db)
	return m
}

// report adds go_cpu_us/event and pg_cpu_us/event. Call it before the
// database's connections close.
func (m *cpuMeter) report(b *testing.B, events int) {
	proc, pg := processCPU()-m.proc, backendCPU(b, m.db)-m.pg
	b.ReportMetric(float64(proc.Microseconds())/float64(events), "go_cpu_us/event")
	b.ReportMetric(float64(pg.Microseconds())/float64(events), "pg_cpu_us/event")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// backendCPU sums user and system CPU time of the live backends connected
// to db, from /proc (the server runs on this machine in the benchmarks'
// setup; elsewhere it reports 0).
func backendCPU(b *testing.B, db *testdb.DB) time.Duration {
	return appBackendCPU(b, db, "")
}

// appBackendCPU is backendCPU for the backends whose application_name is
// app (all of them when app is empty).
func appBackendCPU(b *testing.B, db *testdb.DB, app string) time.Duration {
	rows, err := db.Pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity
		WHERE datname = $1 AND ($2 = '' OR application_name = $2)`, db.Name, app)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses: utime
		// and stime are the 12th and 13th, in clock ticks (100 Hz).
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+s) * 10 * time.Millisecond
	}
	return total
}

// lastClaimDelete is the bare claim+DELETE rate of the last
// BenchmarkClaimDelete in this process, for RelayDrain's ratio metric.
var lastClaimDelete atomic.Uint64

// BenchmarkClaimDelete is the ceiling for BenchmarkRelayDrain: the relay's
// own claim statement (same SQL, same transaction settings, same batch
// size) in a loop over a pre-filled backlog, reading the returned rows
// without decoding them and committing, with no Kafka at all.
func BenchmarkClaimDelete(b *testing.B) {
	rows := envInt(b, "PULSEBUS_BENCH_ROWS", 1_000_000)
	batch := envInt(b, "PULSEBUS_BENCH_BATCH", outbox.DefaultBatchSize)
	db := testdb.New(b)
	ctx := context.Background()
	cfg := outbox.RelayConfig{Pool: db.Pool, Brokers: []string{"unused:9092"}}
	beginSQL := outbox.BeginClaimSQLForTest(cfg)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO pulsebus.relay_leader VALUES ('default', 'bench', 1, now(), now() + interval '1 day')`); err != nil {
		b.Fatal(err)
	}
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		fillOutbox(b, db, rows)
		b.StartTimer()
		cpu := startCPU(b, db)
		start := time.Now()
		for deleted := 0; deleted < rows; {
			tx, err := db.Pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: beginSQL})
			if err != nil {
				b.Fatal(err)
			}
			rs, err := tx.Query(ctx, outbox.ClaimSQLForTest, pgx.QueryExecModeCacheDescribe, "default", "bench", int64(1), batch,
				[]int64{}, []string{}, int64(outbox.DefaultMaxBatchBytes), true, true)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rs.Next() {
				_ = rs.RawValues()
				n++
			}
			if err := rs.Err(); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				b.Fatalf("claimed nothing after %d of %d rows", deleted, rows)
			}
			deleted += n
		}
		elapsed += time.Since(start)
		b.StopTimer()
		cpu.report(b, rows)
		b.StartTimer()
	}
	rate := float64(rows*b.N) / elapsed.Seconds()
	lastClaimDelete.Store(uint64(rate))
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(0, "ns/op")
}

// countingHooks counts published events and keeps commit-to-ack samples.
type countingHooks struct {
	published atomic.Int64
	errors    atomic.Int64
	batches   atomic.Int64 // batches that claimed rows
	target    int64
	done      chan struct{}
	once      sync.Once

	mu      sync.Mutex
	samples []time.Duration
	keep    bool
}

func (h *countingHooks) Published(_ string, n int) {
	if h.published.Add(int64(n)) >= h.target && h.target > 0 {
		h.once.Do(func() { close(h.done) })
	}
}

func (h *countingHooks) PublishError(outbox.Reason) { h.errors.Add(1) }

func (h *countingHooks) Batch(int, time.Duration) { h.batches.Add(1) }

func (h *countingHooks) CommitToAck(d time.Duration) {
	if !h.keep {
		return
	}
	h.mu.Lock()
	h.samples = append(h.samples, d)
	h.mu.Unlock()
}

func (h *countingHooks) hooks() outbox.Hooks {
	return outbox.Hooks{OnPublished: h.Published, OnPublishFailed: h.PublishError, OnBatch: h.Batch, OnCommitToAck: h.CommitToAck}
}

// BenchmarkRelayDrain drains a pre-filled backlog (PULSEBUS_BENCH_ROWS,
// default 1,000,000 rows) to kfake with the relay's defaults and reports
// events/s, and the ratio to the last BenchmarkClaimDelete of this run.
// PULSEBUS_BENCH_ON_REFUSED sets RelayConfig.OnRefused, and
// PULSEBUS_BENCH_PARKED_KEYS parks that many rows of other keys first, so
// every claimed row's hold check probes a non-empty index.
func BenchmarkRelayDrain(b *testing.B) {
	rows := envInt(b, "PULSEBUS_BENCH_ROWS", 1_000_000)
	batch := envInt(b, "PULSEBUS_BENCH_BATCH", outbox.DefaultBatchSize)
	db := testdb.New(b)
	ctx := context.Background()
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		kc, err := testkafka.Start()
		if err != nil {
			b.Fatal(err)
		}
		if err := kc.CreateTopicErr(ctx, benchTopic, benchPartitions); err != nil {
			b.Fatal(err)
		}
		if d := os.Getenv("PULSEBUS_BENCH_BROKER_DELAY"); d != "" {
			delay, err := time.ParseDuration(d)
			if err != nil {
				b.Fatalf("PULSEBUS_BENCH_BROKER_DELAY=%q: %v", d, err)
			}
			// A broker that far away: every produce answered late.
			kc.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				kc.KeepControl()
				kc.SleepControl(func() { time.Sleep(delay) })
				return nil, nil, false
			})
		}
		fillOutbox(b, db, rows)
		if n := envInt(b, "PULSEBUS_BENCH_PARKED_KEYS", 0); n > 0 && i == 0 {
			if _, err := db.Pool.Exec(ctx, `
				INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, created_at, attempts, error)
				SELECT -g, gen_random_uuid(), $1, 'parked-' || g, 'x.y', 's', '', now(), '', '{}', '', now(), 1, 'bench'
				  FROM generate_series(1, $2) g`, benchTopic, n); err != nil {
				b.Fatal(err)
			}
		}
		hooks := &countingHooks{target: int64(rows), done: make(chan struct{})}
		pool, err := pgxpool.New(ctx, db.URL)
		if err != nil {
			b.Fatal(err)
		}
		r, err := outbox.NewRelay(outbox.RelayConfig{
			Pool: pool, Brokers: kc.Addrs, Hooks: hooks.hooks(), BatchSize: batch, Logger: testLogger(b),
			OnRefused: outbox.OnRefused(os.Getenv("PULSEBUS_BENCH_ON_REFUSED")),
		})
		if err != nil {
			b.Fatal(err)
		}
		if os.Getenv("PULSEBUS_BENCH_PREFETCH") == "off" {
			outbox.DisablePrefetchForTest(r)
		}
		b.StartTimer()
		cpu := startCPU(b, db)
		start := time.Now()
		if err := r.Start(ctx); err != nil {
			b.Fatal(err)
		}
		select {
		case <-hooks.done:
		case <-time.After(30 * time.Minute):
			b.Fatalf("drain timed out: %d of %d published", hooks.published.Load(), rows)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		cpu.report(b, rows)
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := r.Stop(stopCtx); err != nil {
			b.Fatal(err)
		}
		cancel()
		pool.Close()
		if n := outboxCount(b, db); n != 0 {
			b.Fatalf("%d rows left in the outbox", n)
		}
		if got := kc.RecordCount(benchTopic); got != int64(rows) {
			b.Fatalf("%d records on Kafka, want %d", got, rows)
		}
		kc.Close()
		b.StartTimer()
	}
	rate := float64(rows*b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "events/s")
	if cd := lastClaimDelete.Load(); cd > 0 {
		b.ReportMetric(rate/float64(cd), "ratio_vs_claimdelete")
	}
	b.ReportMetric(0, "ns/op")
}

// relayApp is the application_name of the relay's connections in
// CommitToAck, so its backends' CPU can be told from the producers'.
const relayApp = "pulsebus-bench-relay"

// BenchmarkCommitToAck offers PULSEBUS_BENCH_RATE events/s (default 5000)
// for PULSEBUS_BENCH_SECONDS (default 10), one event per transaction, from
// 8 paced producer goroutines, to a relay that starts on an EMPTY, freshly
// analysed outbox: the state in which a cached generic plan for the claim
// goes wrong (docs/design.md#claim-plan). It reports commit-to-ack latency percentiles,
// measured as the relay's CommitToAck hook does (from the row's created_at
// to the broker's acknowledgement), and the rate achieved. The producers
// commit asynchronously (PULSEBUS_BENCH_SYNC_COMMIT) so that created_at is
// the moment the row becomes visible. It also reports the relay's claim
// transactions per event (claims/event, empty claims included), events per
// non-empty batch, and the CPU time of the relay's PostgreSQL backends per
// event (relay_pg_cpu_us/event).
func BenchmarkCommitToAck(b *testing.B) {
	rate := envInt(b, "PULSEBUS_BENCH_RATE", 5000)
	seconds := envInt(b, "PULSEBUS_BENCH_SECONDS", 10)
	batch := envInt(b, "PULSEBUS_BENCH_BATCH", outbox.DefaultBatchSize)
	syncCommit := os.Getenv("PULSEBUS_BENCH_SYNC_COMMIT")
	if syncCommit == "" {
		syncCommit = "off"
	}
	var debounce time.Duration
	if d := os.Getenv("PULSEBUS_BENCH_DEBOUNCE"); d != "" {
		var err error
		if debounce, err = time.ParseDuration(d); err != nil || debounce <= 0 {
			b.Fatalf("PULSEBUS_BENCH_DEBOUNCE=%q: want a positive duration", d)
		}
	}
	const producers = 8
	total := rate * seconds
	ctx := context.Background()
	var all, pings []time.Duration
	var offered, relayPG time.Duration
	var claims, batches int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db := testdb.New(b)
		kc := testkafka.New(b)
		kc.CreateTopic(b, benchTopic, benchPartitions)
		if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE pulsebus.outbox`); err != nil {
			b.Fatal(err)
		}
		envs := make([]envelope.Envelope, total)
		for j := range envs {
			envs[j] = benchEnvelope(b, j)
		}
		pcfg, err := pgxpool.ParseConfig(db.URL)
		if err != nil {
			b.Fatal(err)
		}
		pcfg.MaxConns = producers * 2
		// created_at, where the relay measures commit-to-ack from, is
		// set at the INSERT; with synchronous_commit the row becomes
		// visible only after the WAL flush, which on the shared server
		// waits for everyone's commits. Asynchronous commits make
		// created_at the commit time, so the numbers are the relay's.
		pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = syncCommit
		prodPool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			b.Fatal(err)
		}
		rcfg, err := pgxpool.ParseConfig(db.URL)
		if err != nil {
			b.Fatal(err)
		}
		rcfg.ConnConfig.RuntimeParams["application_name"] = relayApp
		relayPool, err := pgxpool.NewWithConfig(ctx, rcfg)
		if err != nil {
			b.Fatal(err)
		}
		hooks := &countingHooks{target: int64(total), done: make(chan struct{}), keep: true}
		r, err := outbox.NewRelay(outbox.RelayConfig{
			Pool: relayPool, Brokers: kc.Addrs, Hooks: hooks.hooks(), BatchSize: batch, Logger: testLogger(b),
			NotifyDebounce: debounce,
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			b.Fatal(err)
		}
		testpoll.Until(b, 30*time.Second, 10*time.Millisecond, "relay leader", r.IsLeader)
		claims0, pg0 := outbox.ClaimsForTest(r), appBackendCPU(b, db, relayApp)
		b.StartTimer()

		// A peer measured alongside: the round trip of SELECT 1 on its
		// own connection, every millisecond. The relay needs a few such
		// round trips (claim, produce, commit) per batch, so their tail
		// on this machine at this moment bounds the relay's from below.
		pingDone := make(chan struct{})
		pingStopped := make(chan []time.Duration)
		go func() {
			var rtts []time.Duration
			defer func() { pingStopped <- rtts }()
			conn, err := pgx.Connect(ctx, db.URL)
			if err != nil {
				return
			}
			defer conn.Close(ctx)
			for {
				select {
				case <-pingDone:
					return
				case <-time.After(time.Millisecond):
				}
				t0 := time.Now()
				if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
					return
				}
				rtts = append(rtts, time.Since(t0))
			}
		}()

		start := time.Now()
		interval := time.Duration(float64(time.Second) * producers / float64(rate))
		var wg sync.WaitGroup
		errs := make(chan error, producers)
		for p := range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := start.Add(time.Duration(p) * interval / producers)
				for j := p; j < total; j += producers {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
					if err := outbox.InsertTx(ctx, prodPool, benchTopic, envs[j]); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		offered += time.Since(start)
		close(pingDone)
		pings = append(pings, <-pingStopped...)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		select {
		case <-hooks.done:
		case <-time.After(2 * time.Minute):
			b.Fatalf("timed out: %d of %d published", hooks.published.Load(), total)
		}
		b.StopTimer()
		claims += outbox.ClaimsForTest(r) - claims0
		batches += hooks.batches.Load()
		relayPG += appBackendCPU(b, db, relayApp) - pg0
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := r.Stop(stopCtx); err != nil {
			b.Fatal(err)
		}
		cancel()
		prodPool.Close()
		relayPool.Close()
		hooks.mu.Lock()
		all = append(all, hooks.samples...)
		hooks.mu.Unlock()
		b.StartTimer()
	}
	slices.Sort(all)
	q := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(q(0.999), "p999_ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max_ms")
	b.ReportMetric(float64(total*b.N)/offered.Seconds(), "offered_events/s")
	b.ReportMetric(float64(claims)/float64(total*b.N), "claims/event")
	b.ReportMetric(float64(total*b.N)/float64(max(batches, 1)), "events/batch")
	b.ReportMetric(float64(relayPG.Microseconds())/float64(total*b.N), "relay_pg_cpu_us/event")
	if len(pings) > 0 {
		slices.Sort(pings)
		b.ReportMetric(float64(pings[len(pings)/2].Microseconds())/1000, "peer_select1_p50_ms")
		b.ReportMetric(float64(pings[len(pings)*99/100].Microseconds())/1000, "peer_select1_p99_ms")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkScanRowToMessage measures the relay's per-row work between the
// database and the produce request: scanning a claimed row (as the claim
// does, strings shared within a batch) and mapping it to a Kafka message
// (validation included), over 1000 rows shaped like fillOutbox's, selected
// (not deleted) so every iteration reads the same rows. ns/op and allocs/op
// are per row and include waiting for PostgreSQL; go_cpu_ns/row is this
// process's CPU time only.
func BenchmarkScanRowToMessage(b *testing.B) {
	db := testdb.New(b)
	ctx := context.Background()
	fillOutbox(b, db, 1000)
	limits := envelope.DefaultLimits()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	n := 0
	for n < b.N {
		rows, err := db.Pool.Query(ctx, `SELECT `+outboxrow.Columns+` FROM pulsebus.outbox ORDER BY id`)
		if err != nil {
			b.Fatal(err)
		}
		scan := outbox.RowScannerForTest()
		build := outbox.MessageBuilderForTest(&limits)
		for rows.Next() && n < b.N {
			row, err := scan(rows)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := build(&row.Envelope); err != nil {
				b.Fatal(err)
			}
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "go_cpu_ns/row")
}
