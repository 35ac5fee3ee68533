package outbox

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

func TestRelayConfig_WriteTimeoutDefaultsBelowTheLease(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		leaseTTL time.Duration
		want     time.Duration
	}{
		{"default lease: half of it", 0, DefaultLeaseTTL / 2},
		{"short lease: half of it", 3 * time.Second, 1500 * time.Millisecond},
		{"shortest lease: half of it", 3 * time.Second / 2, 750 * time.Millisecond},
		{"long lease: the default", time.Minute, DefaultWriteTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := RelayConfig{Pool: &pgxpool.Pool{}, Brokers: []string{"127.0.0.1:9092"}, LeaseTTL: tc.leaseTTL}
			c, err := cfg.withDefaults()
			require.NoError(t, err, "a zero WriteTimeout is accepted with any valid lease")
			require.Equal(t, tc.want, c.WriteTimeout)
			require.Less(t, c.WriteTimeout, c.LeaseTTL)
		})
	}
}
