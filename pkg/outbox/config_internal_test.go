package outbox

import (
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

func TestRelayConfig_Defaults(t *testing.T) {
	t.Parallel()
	minimal := func() RelayConfig {
		return RelayConfig{Pool: &pgxpool.Pool{}, Brokers: []string{"127.0.0.1:9092"}}
	}

	t.Run("every zero field gets its default", func(t *testing.T) {
		t.Parallel()
		cfg := minimal()
		c, err := cfg.withDefaults()
		require.NoError(t, err)
		require.Equal(t, DefaultRelayName, c.Name)
		require.NotEmpty(t, c.ID)
		require.Equal(t, DefaultLeaseTTL, c.LeaseTTL)
		require.Equal(t, DefaultBatchSize, c.BatchSize)
		require.Equal(t, DefaultPollInterval, c.PollInterval)
		require.Equal(t, DefaultNotifyDebounce, c.NotifyDebounce)
		require.Equal(t, DefaultLeaseTTL/2, c.WriteTimeout, "min(DefaultWriteTimeout, LeaseTTL/2)")
		require.Equal(t, DefaultMaxMessageBytes, c.MaxMessageBytes)
		require.Equal(t, DefaultMaxBatchBytes, c.MaxBatchBytes)
		require.Equal(t, DefaultBackoffInitial, c.BackoffInitial)
		require.Equal(t, DefaultBackoffMax, c.BackoffMax)
		require.Equal(t, DefaultBacklogInterval, c.BacklogInterval)
		require.Equal(t, DefaultTopicPartitions, c.TopicPartitions)
		require.Equal(t, DefaultReplicationFactor, c.TopicReplicationFactor)
		require.Equal(t, envelope.DefaultLimits(), *c.Limits)
		require.Equal(t, OnRefusedHoldKey, c.OnRefused)
		require.Equal(t, otel.GetTracerProvider(), c.TracerProvider)
		require.Same(t, slog.Default(), c.Logger, "a nil Logger is slog.Default()")
		require.Nil(t, c.Hooks.OnPublished, "no hooks unless set")
		require.Nil(t, cfg.Limits, "the caller's config is not changed")
	})

	t.Run("a zero WriteTimeout stays below any valid lease", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name     string
			leaseTTL time.Duration
			want     time.Duration
		}{
			{"default lease: half of it", 0, DefaultLeaseTTL / 2},
			{"short lease: half of it", 3 * time.Second, 1500 * time.Millisecond},
			{"shortest lease: half of it", minLeaseTTL, minLeaseTTL / 2},
			{"long lease: the default", time.Minute, DefaultWriteTimeout},
		} {
			cfg := minimal()
			cfg.LeaseTTL = tc.leaseTTL
			c, err := cfg.withDefaults()
			require.NoError(t, err, "%s: a zero WriteTimeout is accepted with any valid lease", tc.name)
			require.Equal(t, tc.want, c.WriteTimeout, tc.name)
			require.Less(t, c.WriteTimeout, c.LeaseTTL, tc.name)
		}
	})
}
