package main_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

func TestMain(m *testing.M) { testmain.Run(m, procharness.RemoveBuilds, testdb.DropTemplate) }

// bundle is one test's PostgreSQL database and Kafka cluster.
type bundle struct {
	db *testdb.DB
	kc *testkafka.Cluster
}

func setup(t *testing.T, topic string, partitions int) *bundle {
	t.Helper()
	b := &bundle{db: testdb.New(t), kc: testkafka.New(t)}
	b.kc.CreateTopic(t, topic, partitions)
	return b
}

// relay is a running relay binary.
type relay struct {
	*procharness.Process
	id string
}

// startRelay starts the relay binary against b with the given id; extra
// flags override the defaults below (the last occurrence of a flag wins).
func startRelay(t *testing.T, b *bundle, id string, extra ...string) *relay {
	t.Helper()
	bin := procharness.Build(t, "github.com/edupulse/pulsebus/cmd/relay")
	addr := procharness.FreeAddr(t)
	args := append([]string{"run",
		"--database-url", b.db.URL,
		"--kafka-brokers", strings.Join(b.kc.Addrs, ","),
		"--metrics-addr", addr,
		"--id", id,
		"--log-format", "json",
		"--poll-interval", "100ms",
		"--backlog-interval", "200ms",
	}, extra...)
	p := procharness.Start(t, bin, procharness.Options{Args: args, HTTPAddr: addr, Name: id})
	require.NoError(t, p.WaitHealthy(20*time.Second))
	return &relay{Process: p, id: id}
}

// metric scrapes the relay and returns the summed value of a series; an
// error (the relay is gone) reads as -1.
func (r *relay) metric(name string, labelPairs ...string) float64 {
	m, err := r.Metrics()
	if err != nil {
		return -1
	}
	return m.Value(name, labelPairs...)
}

func outboxRows(t *testing.T, b *bundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pulsebus.outbox`).Scan(&n))
	return n
}

func parkedRows(t *testing.T, b *bundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pulsebus.outbox_parked`).Scan(&n))
	return n
}

type leaseRow struct {
	LeaderID string
	Term     int64
	Expired  bool
}

func lease(t *testing.T, b *bundle, name string) leaseRow {
	t.Helper()
	var l leaseRow
	err := b.db.Pool.QueryRow(context.Background(),
		`SELECT leader_id, term, expires_at <= clock_timestamp() FROM pulsebus.relay_leader WHERE name = $1`, name).
		Scan(&l.LeaderID, &l.Term, &l.Expired)
	require.NoError(t, err)
	return l
}

// producers are the goroutines of insertIntoOutbox: they write events
// with per-producer keys and per-key sequence numbers in transactions of
// 1..maxTx events, each producer committing in sequence order.
type producers struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	want   map[string]int // key → events committed
	total  int
	errs   []error
	cancel context.CancelFunc
}

// outboxLoad is what insertIntoOutbox writes.
type outboxLoad struct {
	topic       string
	keyPrefix   string // starts every key, to tell loads apart
	producers   int    // goroutines, each with keys of its own
	perProducer int    // events each producer commits
	keysPer     int    // keys per producer
	maxTx       int    // events per transaction: 1 to maxTx, at random
	perSecond   int    // all producers together, at most; 0: as fast as they can
}

// insertIntoOutbox starts load.producers goroutines inserting events into
// the outbox with outbox.InsertTx (the relay under test publishes them to
// Kafka), until they have written load.perProducer events each or are
// stopped.
func insertIntoOutbox(t *testing.T, b *bundle, load outboxLoad) *producers {
	t.Helper()
	began := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	p := &producers{want: map[string]int{}, cancel: cancel}
	t.Cleanup(func() { p.stop() })
	for i := range load.producers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			seq := map[string]int{}
			defer func() {
				p.mu.Lock()
				for k, v := range seq {
					p.want[k] = v
				}
				p.mu.Unlock()
			}()
			for done := 0; done < load.perProducer && ctx.Err() == nil; {
				m := min(1+rng.IntN(load.maxTx), load.perProducer-done)
				envs := make([]envelope.Envelope, m)
				next := map[string]int{}
				for j := range envs {
					key := fmt.Sprintf("%sp%d-k%d", load.keyPrefix, i, rng.IntN(load.keysPer))
					s, ok := next[key]
					if !ok {
						s = seq[key]
					}
					env, err := envelope.New("relay-process-test", testkafka.SeqEvent{Key: key, Seq: s}, envelope.WithKey(key))
					if err != nil {
						p.fail(err)
						return
					}
					envs[j] = env
					next[key] = s + 1
				}
				err := pgx.BeginFunc(context.Background(), b.db.Pool, func(tx pgx.Tx) error {
					return outbox.InsertTx(context.Background(), tx, load.topic, envs...)
				})
				if err != nil {
					p.fail(err)
					return
				}
				for k, v := range next {
					seq[k] = v
				}
				p.mu.Lock()
				p.total += m
				p.mu.Unlock()
				done += m
				if load.perSecond > 0 {
					// Pacing, not synchronization: hold this producer to
					// its share of the rate.
					due := began.Add(time.Duration(float64(done) / float64(load.perSecond) * float64(load.producers) * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
			}
		}()
	}
	return p
}

func (p *producers) fail(err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

// stop ends production early; wait still has to be called.
func (p *producers) stop() { p.cancel() }

// produced is the number of events committed so far.
func (p *producers) produced() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// wait waits for the producers and returns the per-key counts committed.
func (p *producers) wait(t *testing.T) map[string]int {
	t.Helper()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Empty(t, p.errs)
	return p.want
}
