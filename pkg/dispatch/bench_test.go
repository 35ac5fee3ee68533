package dispatch_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// The benchmarks pre-produce benchEvents events (PULSEBUS_BENCH_EVENTS) on
// benchPartitions partitions of one kfake cluster, shared by all of them,
// then time how fast each contender handles all of them. Each benchmark
// reports its own rate beside peers measured in the same run on the same
// data, so the ratios hold on a busy machine:
//
//   - reader-events/s: bare kafka-go readers, one per partition, doing
//     nothing with the messages (the read ceiling);
//   - pg-events/s: the same SQL the transactional handler and the offset
//     update run, without Kafka (the database ceiling).
//
// Run: go test -run '^$' -bench . -benchtime 1x ./pkg/dispatch
const benchPartitions = 8

var benchEvents = func() int {
	if n, err := strconv.Atoi(os.Getenv("PULSEBUS_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 200_000
}()

type benchFixture struct {
	kc    *testkafka.Cluster
	topic string
	ids   []uuid.UUID // per partition order does not matter; ids for pg peers
	err   error
}

var (
	benchOnce sync.Once
	bench     benchFixture
)

// closeBenchFixture stops the shared cluster; TestMain calls it before it
// looks for leaked goroutines.
func closeBenchFixture() {
	if bench.kc != nil {
		bench.kc.Close()
	}
}

func benchData(b *testing.B) *benchFixture {
	b.Helper()
	benchOnce.Do(func() {
		kc, err := testkafka.Start()
		if err != nil {
			bench.err = err
			return
		}
		bench.kc, bench.topic = kc, "bench"
		if bench.err = kc.CreateTopicErr(context.Background(), bench.topic, benchPartitions); bench.err != nil {
			return
		}
		envs := events(b, benchEvents, "lesson.published")
		for i := range envs {
			envs[i].Key = fmt.Sprintf("k%d", i%512)
			bench.ids = append(bench.ids, uuid.MustParse(envs[i].ID))
		}
		t0 := time.Now()
		produceToKafka(b, kc.Addrs, bench.topic, envs)
		b.Logf("produced %d events on %d partitions in %s", len(envs), benchPartitions, time.Since(t0).Round(time.Millisecond))
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return &bench
}

// benchPool is a pool on a fresh database with a handled table and room for
// one connection per partition.
func benchPool(b *testing.B) *pgxpool.Pool {
	b.Helper()
	db := testdb.New(b)
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = benchPartitions + 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE handled (
		handler text NOT NULL, event_id uuid NOT NULL, n int NOT NULL DEFAULT 1, PRIMARY KEY (handler, event_id))`); err != nil {
		b.Fatal(err)
	}
	return pool
}

// countHooks counts handled events and closes done at want.
type countHooks struct {
	n     atomic.Int64
	want  int64
	first atomic.Int64 // unix nanos of the first event
	done  chan struct{}
}

func (h *countHooks) OnHandled(e dispatch.HandledEvent) {
	n := h.n.Add(1)
	if n == 1 {
		h.first.Store(time.Now().UnixNano())
	}
	if n == h.want {
		close(h.done)
	}
}

// runConsumer runs a consumer with the handlers registered by reg over the
// benchmark topic until each of them handled every event. It returns the
// time from the first event handled to the last, and from Run to the first
// event.
func runConsumer(b *testing.B, f *benchFixture, pool *pgxpool.Pool, group string, handlers int, reg func(c *dispatch.Consumer) error) (run, join time.Duration) {
	b.Helper()
	hooks := &countHooks{want: int64(handlers * benchEvents), done: make(chan struct{})}
	c, err := dispatch.New(dispatch.Config{
		Brokers: f.kc.Addrs, Group: group, Topics: []string{f.topic}, Pool: pool, Hooks: dispatch.Hooks{OnHandled: hooks.OnHandled},
		SessionTimeout: 6 * time.Second, RebalanceTimeout: 6 * time.Second, HeartbeatInterval: time.Second,
		JoinGroupBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := reg(c); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	t0 := time.Now()
	go func() { errc <- c.Run(ctx) }()
	select {
	case <-hooks.done:
	case err := <-errc:
		cancel()
		b.Fatalf("consumer stopped: %v", err)
	case <-time.After(5 * time.Minute):
		cancel()
		b.Fatalf("consumer handled %d of %d events in 5 minutes", hooks.n.Load(), benchEvents)
	}
	end := time.Now()
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	first := time.Unix(0, hooks.first.Load())
	return end.Sub(first), first.Sub(t0)
}

// runReaders reads every partition to its end with bare kafka-go readers,
// one goroutine per partition: the read ceiling. It returns the time from
// the first message read to the last.
func runReaders(b *testing.B, f *benchFixture) time.Duration {
	b.Helper()
	ends := f.kc.EndOffsets(b, f.topic)
	var wg sync.WaitGroup
	var total, first atomic.Int64
	for p, end := range ends {
		wg.Add(1)
		go func(p int, end int64) {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.kc.Addrs, Topic: f.topic, Partition: p,
				MinBytes: 1, MaxBytes: dispatch.DefaultFetchMaxBytes, MaxWait: dispatch.DefaultFetchMaxWait,
				QueueCapacity: dispatch.DefaultQueueCapacity})
			defer r.Close()
			ctx := context.Background()
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				if total.Add(1) == 1 {
					first.Store(time.Now().UnixNano())
				}
				if m.Offset >= end-1 {
					return
				}
			}
		}(int(p), end)
	}
	wg.Wait()
	if int(total.Load()) != benchEvents {
		b.Fatalf("readers read %d of %d", total.Load(), benchEvents)
	}
	return time.Since(time.Unix(0, first.Load()))
}

const (
	countSQL      = `INSERT INTO handled (handler, event_id) VALUES ($1, $2) ON CONFLICT (handler, event_id) DO UPDATE SET n = handled.n + 1`
	countBatchSQL = `INSERT INTO handled (handler, event_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT (handler, event_id) DO UPDATE SET n = handled.n + 1`
	peerOffsetSQL = `INSERT INTO pulsebus.handler_offsets (group_id, handler, topic, partition, next_offset)
		VALUES ($1, $2, 'bench', $3, $4) ON CONFLICT (group_id, handler, topic, partition)
		DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = clock_timestamp()`
)

func countBatchTx(name string) dispatch.BatchTxHandlerFunc {
	return func(ctx context.Context, tx pgx.Tx, envs []envelope.Envelope) error {
		ids := make([]uuid.UUID, len(envs))
		for i, e := range envs {
			ids[i] = uuid.MustParse(e.ID)
		}
		_, err := tx.Exec(ctx, countBatchSQL, name, ids)
		return err
	}
}

// runPGPeer does what the transactional handler and the offset store do,
// without Kafka: per partition one goroutine, transactions of batch events
// each inserting the events' ids and moving an offset row.
func runPGPeer(b *testing.B, f *benchFixture, pool *pgxpool.Pool, handler string, batch int) time.Duration {
	b.Helper()
	var wg sync.WaitGroup
	per := (len(f.ids) + benchPartitions - 1) / benchPartitions
	t0 := time.Now()
	for p := 0; p < benchPartitions; p++ {
		ids := f.ids[min(p*per, len(f.ids)):min((p+1)*per, len(f.ids))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := 0; i < len(ids); i += batch {
				chunk := ids[i:min(i+batch, len(ids))]
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, peerOffsetSQL, "peer", handler, p, i+len(chunk)); err != nil {
						return err
					}
					if batch == 1 {
						_, err := tx.Exec(ctx, countSQL, handler, chunk[0])
						return err
					}
					_, err := tx.Exec(ctx, countBatchSQL, handler, chunk)
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(t0)
}

func rate(d time.Duration) float64 { return float64(benchEvents) / d.Seconds() }

// cpuSample is CPU time used so far by this process and by the PostgreSQL
// backends serving the benchmark's database. CPU per event is a steadier
// measure than events/s on a machine others use too.
type cpuSample struct {
	process time.Duration
	pg      map[int]time.Duration // backend pid → its CPU time
}

func sampleCPU(b *testing.B, pool *pgxpool.Pool) cpuSample {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	s := cpuSample{process: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), pg: map[int]time.Duration{}}
	if pool == nil {
		return s
	}
	rows, err := pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // not on this host, or gone
		}
		// Fields 14 and 15 (utime, stime, in clock ticks of 10 ms) follow
		// the command name in parentheses.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		s.pg[int(pid)] = time.Duration(ut+st) * 10 * time.Millisecond
	}
	return s
}

// since returns the process and database CPU time used since before.
func (s cpuSample) since(before cpuSample) (process, pg time.Duration) {
	for pid, t := range s.pg {
		pg += t - before.pg[pid]
	}
	return s.process - before.process, pg
}

// benchTimes accumulates a benchmark's wall and CPU times: the consumer's,
// and its peers' (see the top of the file).
type benchTimes struct {
	consumer, join, reader, pg    time.Duration
	consumerCPU, readerCPU, pgCPU time.Duration // process + database
	consumerDBCPU                 time.Duration // the database's part of consumerCPU
}

// measure runs fn, adding the CPU it used (this process and the database
// backends) to cpu.
func measure(b *testing.B, pool *pgxpool.Pool, cpu *time.Duration, fn func()) time.Duration {
	before := sampleCPU(b, pool)
	fn()
	proc, pg := sampleCPU(b, pool).since(before)
	*cpu += proc + pg
	return pg
}

func (t *benchTimes) report(b *testing.B) {
	n := time.Duration(b.N)
	perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N*benchEvents) }
	b.ReportMetric(rate(t.consumer/n), "events/s")
	b.ReportMetric(perEvent(t.consumerCPU), "cpu-us/event")
	if t.consumerDBCPU > 0 {
		b.ReportMetric(perEvent(t.consumerDBCPU), "db-cpu-us/event")
	}
	b.ReportMetric(float64((t.join / n).Milliseconds()), "join-ms")
	b.ReportMetric(rate(t.reader/n), "reader-events/s")
	b.ReportMetric(perEvent(t.readerCPU), "reader-cpu-us/event")
	b.ReportMetric(rate(t.reader/n)/rate(t.consumer/n), "reader/consumer")
	if t.pg > 0 {
		b.ReportMetric(rate(t.pg/n), "pg-events/s")
		b.ReportMetric(perEvent(t.pgCPU), "pg-cpu-us/event")
		b.ReportMetric(rate(t.pg/n)/rate(t.consumer/n), "pg/consumer")
	}
	b.ReportMetric(0, "ns/op")
}

// A plain no-op handler.
func BenchmarkConsumer_Plain(b *testing.B) {
	f := benchData(b)
	pool := benchPool(b)
	var t benchTimes
	for i := 0; i < b.N; i++ {
		measure(b, nil, &t.readerCPU, func() { t.reader += runReaders(b, f) })
		t.consumerDBCPU += measure(b, pool, &t.consumerCPU, func() {
			run, join := runConsumer(b, f, pool, fmt.Sprintf("plain-%d", i), 1, func(c *dispatch.Consumer) error {
				return c.Handle("noop", []string{"lesson.*"}, dispatch.HandlerFunc(func(context.Context, envelope.Envelope) error { return nil }))
			})
			t.consumer += run
			t.join += join
		})
	}
	t.report(b)
}

// Three plain no-op handlers on the same events: what one reader per
// handler and partition costs against one handler.
func BenchmarkConsumer_Plain3Handlers(b *testing.B) {
	f := benchData(b)
	pool := benchPool(b)
	var t benchTimes
	noop := dispatch.HandlerFunc(func(context.Context, envelope.Envelope) error { return nil })
	for i := 0; i < b.N; i++ {
		measure(b, nil, &t.readerCPU, func() { t.reader += runReaders(b, f) })
		t.consumerDBCPU += measure(b, pool, &t.consumerCPU, func() {
			run, join := runConsumer(b, f, pool, fmt.Sprintf("plain3-%d", i), 3, func(c *dispatch.Consumer) error {
				if err := c.Handle("a", []string{"lesson.*"}, noop); err != nil {
					return err
				}
				if err := c.Handle("b", []string{"lesson.*"}, noop); err != nil {
					return err
				}
				return c.Handle("c", []string{"lesson.*"}, noop)
			})
			t.consumer += run
			t.join += join
		})
	}
	t.report(b)
}

// A transactional handler, DefaultBatchSize events per transaction.
func BenchmarkConsumer_TxBatch(b *testing.B) {
	f := benchData(b)
	pool := benchPool(b)
	var t benchTimes
	var calls atomic.Int64
	for i := 0; i < b.N; i++ {
		measure(b, nil, &t.readerCPU, func() { t.reader += runReaders(b, f) })
		name := fmt.Sprintf("batch-%d", i)
		h := countBatchTx(name)
		t.consumerDBCPU += measure(b, pool, &t.consumerCPU, func() {
			run, join := runConsumer(b, f, pool, name, 1, func(c *dispatch.Consumer) error {
				return c.HandleBatchTx(name, []string{"lesson.*"}, dispatch.BatchTxHandlerFunc(func(ctx context.Context, tx pgx.Tx, envs []envelope.Envelope) error {
					calls.Add(1)
					return h(ctx, tx, envs)
				}))
			})
			t.consumer += run
			t.join += join
		})
		measure(b, pool, &t.pgCPU, func() { t.pg += runPGPeer(b, f, pool, "peer-"+name, dispatch.DefaultBatchSize) })
	}
	t.report(b)
	b.ReportMetric(float64(b.N*benchEvents)/float64(calls.Load()), "events/batch")
}

// A transactional handler, one transaction per event.
func BenchmarkConsumer_TxPerEvent(b *testing.B) {
	f := benchData(b)
	pool := benchPool(b)
	var t benchTimes
	for i := 0; i < b.N; i++ {
		measure(b, nil, &t.readerCPU, func() { t.reader += runReaders(b, f) })
		name := fmt.Sprintf("tx-%d", i)
		t.consumerDBCPU += measure(b, pool, &t.consumerCPU, func() {
			run, join := runConsumer(b, f, pool, name, 1, func(c *dispatch.Consumer) error {
				return c.HandleTx(name, []string{"lesson.*"}, countTx(name))
			})
			t.consumer += run
			t.join += join
		})
		measure(b, pool, &t.pgCPU, func() { t.pg += runPGPeer(b, f, pool, "peer-"+name, 1) })
	}
	t.report(b)
}
