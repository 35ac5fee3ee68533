package outbox

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

func testPublisher(t *testing.T, kc *testkafka.Cluster, timeout time.Duration) *publisher {
	t.Helper()
	tr := &kafka.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	limits := envelope.DefaultLimits()
	return &publisher{
		transport: tr, addr: kafka.TCP(kc.Addrs...), maxBytes: DefaultMaxMessageBytes,
		timeout: timeout, limits: &limits, hooks: Hooks{},
	}
}

func testRows(n int) []outboxRow {
	rows := make([]outboxRow, n)
	for i := range rows {
		rows[i] = outboxRow{ID: int64(i + 1), Topic: "lessons", Envelope: envelope.Envelope{
			ID: uuid.New().String(), Type: "x.y", Source: "s", Key: "k", Time: time.Now(), Payload: []byte("{}"),
		}}
	}
	return rows
}

// The publishing half of fencing: nothing is sent once the lease's safe
// time has passed, and a request in flight ends at the safe time, not at
// WriteTimeout.
func TestPublisher_FencedByTheLeaseDeadline(t *testing.T) {
	t.Parallel()
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 1)
	var produces atomic.Int64
	var slow atomic.Bool
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	kc.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		produces.Add(1)
		if slow.Load() {
			kc.SleepControl(func() {
				select {
				case <-done:
				case <-time.After(time.Second):
				}
			})
		}
		return nil, nil, false
	})
	p := testPublisher(t, kc, 5*time.Second)
	ctx := context.Background()

	// Warm up: the transport learns the cluster.
	out := p.publish(ctx, testRows(1), nil, func() (time.Time, bool) { return time.Now().Add(time.Minute), true })
	require.True(t, out.allAcked(), "%v", out.err)
	require.EqualValues(t, 1, produces.Load())

	t.Run("past the safe time: nothing sent", func(t *testing.T) {
		out := p.publish(ctx, testRows(3), nil, func() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true })
		require.ErrorIs(t, out.err, ErrLeaseLost)
		require.Equal(t, ReasonLeaseLost, classifyPublishError(out.err).Reason)
		require.False(t, out.acked[0])
		require.EqualValues(t, 1, produces.Load(), "no produce request reached the broker")
	})
	t.Run("term over: nothing sent", func(t *testing.T) {
		out := p.publish(ctx, testRows(3), nil, func() (time.Time, bool) { return time.Time{}, false })
		require.ErrorIs(t, out.err, ErrLeaseLost)
		require.EqualValues(t, 1, produces.Load())
	})
	t.Run("a request in flight ends at the safe time", func(t *testing.T) {
		slow.Store(true)
		defer slow.Store(false)
		start := time.Now()
		until := start.Add(200 * time.Millisecond)
		out := p.publish(ctx, testRows(2), nil, func() (time.Time, bool) { return until, true })
		elapsed := time.Since(start)
		require.Error(t, out.err)
		require.False(t, out.acked[0] || out.acked[1])
		require.Less(t, elapsed, 900*time.Millisecond, "cut at the safe time, not after the broker's second or WriteTimeout")
		require.GreaterOrEqual(t, elapsed, 150*time.Millisecond)
		var pe *PublishError
		require.True(t, errors.As(out.err, &pe))
		require.Equal(t, ReasonBrokerUnavailable, pe.Reason)
	})
}
