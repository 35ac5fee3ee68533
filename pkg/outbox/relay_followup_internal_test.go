package outbox

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRelay_WaitBetweenClaims: how long the leader waits for a notification
// before it claims again.
func TestRelay_WaitBetweenClaims(t *testing.T) {
	t.Parallel()
	t.Run("follow-ups back off to PollInterval", func(t *testing.T) {
		t.Parallel()
		r := &Relay{cfg: RelayConfig{NotifyDebounce: 5 * time.Millisecond, PollInterval: time.Second}}
		// A notification set the delay to NotifyDebounce; claims come back empty.
		idle := r.cfg.NotifyDebounce
		var got []time.Duration
		for range 10 {
			idle = r.followUp(idle, false)
			got = append(got, idle)
		}
		ms := time.Millisecond
		require.Equal(t, []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second, time.Second}, got)
		require.Equal(t, 5*ms, r.followUp(time.Second, true), "a claim that found rows: fast again")
		require.Equal(t, time.Second, r.followUp(time.Second, false), "idle stays at PollInterval")

		// NotifyDebounce above PollInterval: never longer than PollInterval.
		r.cfg.NotifyDebounce = 2 * time.Second
		require.Equal(t, time.Second, r.followUp(time.Second, true))
		require.Equal(t, time.Second, r.followUp(r.cfg.NotifyDebounce, false))
	})
	t.Run("idle wait", func(t *testing.T) {
		t.Parallel()
		r := &Relay{cfg: RelayConfig{NotifyDebounce: 5 * time.Millisecond, PollInterval: time.Second}}
		now := time.Now()
		// Below PollInterval: counted from the last claim's start.
		w := r.idleWait(40*time.Millisecond, now.Add(-10*time.Millisecond))
		require.LessOrEqual(t, w, 30*time.Millisecond)
		require.Greater(t, w, 20*time.Millisecond)
		require.Zero(t, r.idleWait(40*time.Millisecond, now.Add(-time.Second)), "overdue: claim at once")
		// At PollInterval: a jittered poll from now, 0.8-1 PollInterval.
		for range 100 {
			w := r.idleWait(time.Second, now.Add(-time.Hour))
			require.GreaterOrEqual(t, w, 800*time.Millisecond)
			require.LessOrEqual(t, w, time.Second)
		}
	})
}
