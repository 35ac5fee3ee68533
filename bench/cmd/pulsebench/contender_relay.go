package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/pkg/outbox"
)

func init() {
	registerContender("pulsebus-relay", runPulsebusRelay)
}

// relayStats collects the relay's hooks: counts, and the relay's own
// commit-to-ack latency (from the row's created_at, so it includes the
// producer's commit) in a constant-memory histogram.
type relayStats struct {
	published, batches, errors, parked atomic.Int64
	commitToAck                        *histogram
}

func (s *relayStats) Published(_ string, n int)    { s.published.Add(int64(n)) }
func (s *relayStats) Batch(int, time.Duration)     { s.batches.Add(1) }
func (s *relayStats) PublishError(outbox.Reason)   { s.errors.Add(1) }
func (s *relayStats) Parked(string, outbox.Reason) { s.parked.Add(1) }
func (s *relayStats) CommitToAck(d time.Duration)  { s.commitToAck.Record(d) }
func (s *relayStats) hooks() outbox.Hooks {
	return outbox.Hooks{OnPublished: s.Published, OnBatch: s.Batch, OnPublishFailed: s.PublishError,
		OnParked: s.Parked, OnCommitToAck: s.CommitToAck}
}
func (s *relayStats) snapshot() map[string]float64 {
	return map[string]float64{
		"published":                   float64(s.published.Load()),
		"batches":                     float64(s.batches.Load()),
		"publish_errors":              float64(s.errors.Load()),
		"parked":                      float64(s.parked.Load()),
		"hook_created_to_ack_p50_ms":  s.commitToAck.Quantile(0.50),
		"hook_created_to_ack_p99_ms":  s.commitToAck.Quantile(0.99),
		"hook_created_to_ack_p999_ms": s.commitToAck.Quantile(0.999),
	}
}

// runPulsebusRelay runs outbox.Relay with its defaults except the batch
// size, until the parent stops it. The parent watches the topic to see
// when the relay is done; a parked row or a relay that does not stop
// cleanly is an error.
func runPulsebusRelay(ctx context.Context, spec Spec, ready func(), start <-chan struct{}, _ func(childMsg)) (map[string]float64, error) {
	cfg, err := pgxpool.ParseConfig(spec.DBURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	stats := &relayStats{commitToAck: newHistogram()}
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool:      pool,
		Brokers:   spec.Brokers,
		BatchSize: spec.Batch,
		Hooks:     stats.hooks(),
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	ready()
	select {
	case <-start:
	case <-ctx.Done():
		return nil, nil
	}
	if err := relay.Start(context.Background()); err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
	case <-relay.Stopped():
		return stats.snapshot(), fmt.Errorf("relay stopped on its own")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := relay.Stop(sctx); err != nil {
		return stats.snapshot(), fmt.Errorf("stop relay: %w", err)
	}
	if n := stats.parked.Load(); n > 0 {
		return stats.snapshot(), fmt.Errorf("relay parked %d rows", n)
	}
	return stats.snapshot(), nil
}
