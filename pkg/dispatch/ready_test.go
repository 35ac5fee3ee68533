package dispatch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// Ready sends the broker a request: a broker that accepts connections but
// answers nothing (a blackholed network) fails it when ctx ends, naming
// Kafka; once the network heals it passes again.
func TestConsumer_ReadyAsksTheBroker(t *testing.T) {
	t.Parallel()
	kc, px := testkafka.NewBehindProxy(t)
	db := testdb.New(t)
	c, err := dispatch.New(childConfig(kc.Addrs, "svc", "events", db.Pool))
	require.NoError(t, err)
	ready := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		return c.Ready(ctx)
	}
	require.NoError(t, ready())

	px.Blackhole()
	start := time.Now()
	err = ready()
	var ue *dispatch.UnavailableError
	require.True(t, errors.As(err, &ue), "%v", err)
	require.Equal(t, "kafka", ue.Dependency)
	require.Less(t, time.Since(start), 5*time.Second, "bounded by the context")

	px.Restore()
	require.NoError(t, ready())
}
