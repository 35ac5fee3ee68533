package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

func init() {
	registerContender("pulsebus-dispatch", runPulsebusDispatch)
}

// handledTable receives one row per event and handler run from the
// transactional handlers of every consumer contender; after a run the
// parent checks that every event is in it exactly once.
const handledTable = `CREATE TABLE IF NOT EXISTS bench_handled (
	handler  text   NOT NULL,
	event_id text   NOT NULL,
	seq      bigint NOT NULL
)`

// Consumer modes.
const (
	modePlain   = "plain"   // no-op handler, at-least-once
	modeTx      = "tx"      // one transaction per event: insert + offset
	modeTxBatch = "txbatch" // one transaction per batch: insert + offset
)

// seqTracker counts distinct benchmark events and reports done once every
// expected one was seen.
type seqTracker struct {
	mu       sync.Mutex
	seen     []bool
	handled  int64
	distinct int64
	t0       time.Time
	first    time.Duration
	once     sync.Once
	done     func(childMsg)
}

func newSeqTracker(events int64, done func(childMsg)) *seqTracker {
	return &seqTracker{seen: make([]bool, events), done: done}
}

func (s *seqTracker) start() { s.mu.Lock(); s.t0 = time.Now(); s.mu.Unlock() }

// mark records one handled event.
func (s *seqTracker) mark(seq int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq < 0 || seq >= int64(len(s.seen)) {
		return fmt.Errorf("event seq %d outside 0..%d", seq, len(s.seen)-1)
	}
	s.handled++
	if s.seen[seq] {
		return nil
	}
	s.seen[seq] = true
	s.distinct++
	if s.distinct == 1 {
		s.first = time.Since(s.t0)
	}
	if s.distinct == int64(len(s.seen)) {
		last := time.Since(s.t0)
		s.once.Do(func() {
			s.done(childMsg{Handled: s.handled, Distinct: s.distinct, FirstSec: s.first.Seconds(), LastSec: last.Seconds()})
		})
	}
	return nil
}

func (s *seqTracker) stats() map[string]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]float64{"handled": float64(s.handled), "distinct": float64(s.distinct)}
}

// runPulsebusDispatch runs a dispatch.Consumer with one handler on
// spec.Topic, group spec.Group, with the consumer's defaults. Mode plain is
// a no-op Handle; tx is HandleTx inserting one bench_handled row per event
// (one transaction per event); txbatch is HandleBatchTx inserting the
// batch's rows with one statement.
func runPulsebusDispatch(ctx context.Context, spec Spec, ready func(), start <-chan struct{}, done func(childMsg)) (map[string]float64, error) {
	cfg, err := pgxpool.ParseConfig(spec.DBURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = int32(spec.Partitions + 4)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	hooks := &dispatchHooks{}
	c, err := dispatch.New(dispatch.Config{
		Brokers: spec.Brokers,
		Group:   spec.Group,
		Topics:  []string{spec.Topic},
		Pool:    pool,
		Hooks:   hooks.hooks(),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, err
	}
	tr := newSeqTracker(spec.Events, done)
	const name = "bench"
	types := []string{"*"}
	seqOf := func(env envelope.Envelope) (int64, error) {
		seq, ok := payloadSeq(env.Payload)
		if !ok {
			return 0, dispatch.Permanent(errors.New("payload without seq"))
		}
		return seq, nil
	}
	switch spec.Mode {
	case modePlain:
		err = c.Handle(name, types, dispatch.HandlerFunc(func(_ context.Context, env envelope.Envelope) error {
			seq, err := seqOf(env)
			if err != nil {
				return err
			}
			return tr.mark(seq)
		}))
	case modeTx:
		err = c.HandleTx(name, types, dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
			seq, err := seqOf(env)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO bench_handled (handler, event_id, seq) VALUES ($1, $2, $3)`,
				spec.Contender+"/"+spec.Mode, env.ID, seq); err != nil {
				return err
			}
			return tr.mark(seq)
		}))
	case modeTxBatch:
		err = c.HandleBatchTx(name, types, dispatch.BatchTxHandlerFunc(func(ctx context.Context, tx pgx.Tx, envs []envelope.Envelope) error {
			ids := make([]string, len(envs))
			seqs := make([]int64, len(envs))
			for i, env := range envs {
				seq, err := seqOf(env)
				if err != nil {
					return err
				}
				ids[i], seqs[i] = env.ID, seq
			}
			if _, err := tx.Exec(ctx, `INSERT INTO bench_handled (handler, event_id, seq) SELECT $1, e.id, e.seq FROM unnest($2::text[], $3::bigint[]) AS e(id, seq)`,
				spec.Contender+"/"+spec.Mode, ids, seqs); err != nil {
				return err
			}
			for _, s := range seqs {
				if err := tr.mark(s); err != nil {
					return err
				}
			}
			return nil
		}))
	default:
		return nil, fmt.Errorf("pulsebus-dispatch: mode %q not supported (plain, tx, txbatch)", spec.Mode)
	}
	if err != nil {
		return nil, err
	}
	ready()
	select {
	case <-start:
	case <-ctx.Done():
		return nil, nil
	}
	tr.start()
	err = c.Run(ctx)
	stats := tr.stats()
	stats["retries"] = float64(hooks.retries.Load())
	stats["dead_letters"] = float64(hooks.dead.Load())
	stats["rebalances"] = float64(hooks.rebalances.Load())
	if err != nil {
		return stats, err
	}
	if n := hooks.dead.Load(); n > 0 {
		return stats, fmt.Errorf("%d events dead-lettered (last: %v)", n, hooks.lastErr.Load())
	}
	return stats, nil
}

// dispatchHooks counts retries and dead letters: a benchmark run has
// neither unless something is wrong.
type dispatchHooks struct {
	retries, dead, rebalances atomic.Int64
	lastErr                   atomic.Value
}

func (h *dispatchHooks) OnRetry(_ string, _ int, err error) {
	h.retries.Add(1)
	h.lastErr.Store(err.Error())
}

func (h *dispatchHooks) OnDeadLetter(e dispatch.DeadLetterEvent) {
	h.dead.Add(1)
	if e.Err != nil {
		h.lastErr.Store(e.Err.Error())
	}
}

func (h *dispatchHooks) OnRebalance(map[string][]int) { h.rebalances.Add(1) }

// hooks returns the consumer hooks that feed h.
func (h *dispatchHooks) hooks() dispatch.Hooks {
	return dispatch.Hooks{OnRetry: h.OnRetry, OnDeadLetter: h.OnDeadLetter, OnRebalance: h.OnRebalance}
}
