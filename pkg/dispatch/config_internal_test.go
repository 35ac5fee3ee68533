package dispatch

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// The defaults a zero Config and a zero registration take are the
// documented ones.
func TestConfig_Defaults(t *testing.T) {
	t.Parallel()
	d := (&Config{}).withDefaults()
	for name, got := range map[string]any{
		"FlushInterval":          d.FlushInterval,
		"FlushMessages":          d.FlushMessages,
		"CommitInterval":         d.CommitInterval,
		"SessionTimeout":         d.SessionTimeout,
		"HeartbeatInterval":      d.HeartbeatInterval,
		"RebalanceTimeout":       d.RebalanceTimeout,
		"JoinGroupBackoff":       d.JoinGroupBackoff,
		"PartitionWatchInterval": d.PartitionWatchInterval,
		"DrainTimeout":           d.DrainTimeout,
		"FetchMaxWait":           d.FetchMaxWait,
		"FetchMaxBytes":          d.FetchMaxBytes,
		"QueueCapacity":          d.QueueCapacity,
		"DedupeWindow":           d.DedupeWindow,
		"TxIdleTimeout":          d.TxIdleTimeout,
		"StallTimeout":           d.StallTimeout,
		"StartOffset":            d.StartOffset,
		"Retry":                  d.Retry,
	} {
		want := map[string]any{
			"FlushInterval": DefaultFlushInterval, "FlushMessages": DefaultFlushMessages,
			"CommitInterval": DefaultCommitInterval, "SessionTimeout": DefaultSessionTimeout,
			"HeartbeatInterval": DefaultHeartbeatInterval, "RebalanceTimeout": DefaultRebalanceTimeout,
			"JoinGroupBackoff": DefaultJoinGroupBackoff, "PartitionWatchInterval": DefaultPartitionWatch,
			"DrainTimeout": DefaultDrainTimeout, "FetchMaxWait": DefaultFetchMaxWait,
			"FetchMaxBytes": DefaultFetchMaxBytes, "QueueCapacity": DefaultQueueCapacity,
			"DedupeWindow": DefaultDedupeWindow, "TxIdleTimeout": DefaultTxIdleTimeout,
			"StallTimeout": DefaultStallTimeout, "StartOffset": kafka.FirstOffset,
			"Retry": RetryPolicy{MaxAttempts: DefaultMaxAttempts, MaxElapsed: DefaultMaxElapsed, RetryFor: DefaultRetryFor,
				InitialInterval: DefaultInitialInterval, MaxInterval: DefaultMaxInterval},
		}[name]
		require.EqualValues(t, want, got, name)
	}
	require.Same(t, slog.Default(), d.Logger, "a nil Logger is slog.Default()")
	require.NotNil(t, d.Dialer)
	require.NotNil(t, d.TracerProvider)
	require.Equal(t, envelope.DefaultLimits(), *d.Limits)

	t.Run("-1 turns deduplication off", func(t *testing.T) {
		require.Zero(t, (&Config{DedupeWindow: -1}).withDefaults().DedupeWindow)
	})
	t.Run("-1 turns the idle timeout off", func(t *testing.T) {
		require.Equal(t, time.Duration(-1), (&Config{TxIdleTimeout: -1}).withDefaults().TxIdleTimeout)
		require.Empty(t, txSetup(-1))
	})
	t.Run("set fields are kept", func(t *testing.T) {
		got := (&Config{FlushInterval: time.Second, Retry: RetryPolicy{MaxAttempts: 2}}).withDefaults()
		require.Equal(t, time.Second, got.FlushInterval)
		require.Equal(t, 2, got.Retry.MaxAttempts)
		require.Equal(t, DefaultRetryFor, got.Retry.RetryFor)
	})
}

func TestRegistration_DefaultBatchSize(t *testing.T) {
	t.Parallel()
	tx := TxHandlerFunc(func(context.Context, pgx.Tx, envelope.Envelope) error { return nil })
	batch := BatchTxHandlerFunc(func(context.Context, pgx.Tx, []envelope.Envelope) error { return nil })
	for name, tc := range map[string]struct {
		r    *registration
		want int
	}{
		"HandleTx":           {&registration{name: "a", types: []string{"*"}, kind: kindTx, tx: tx}, 1},
		"HandleBatchTx":      {&registration{name: "b", types: []string{"*"}, kind: kindBatchTx, batch: batch}, DefaultBatchSize},
		"WithBatchSize kept": {&registration{name: "c", types: []string{"*"}, kind: kindTx, tx: tx, batchSize: 7}, 7},
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, tc.r.finish(nil))
			require.Equal(t, tc.want, tc.r.batchSize)
		})
	}
}
