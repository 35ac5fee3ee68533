package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// Both handler kinds see every event once, in one run, and their offsets
// end at the high watermarks.
func TestConsumer_TxAndPlainHandlers(t *testing.T) {
	b := setup(t, 3)
	envs := events(t, 600, "lesson.published")
	produce(t, b.kc.Addrs, b.topic, envs)

	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	rec := newRecorder()
	require.NoError(t, c.HandleTx("counter", []string{"lesson.*"}, countTx("counter")))
	require.NoError(t, c.Handle("plain", []string{"lesson.published"}, rec))
	require.NoError(t, c.HandleTx("other", []string{"quiz.submitted"}, countTx("other")))
	stop := start(t, c)

	eventually(t, 60*time.Second, "all events counted", func() bool {
		d, _ := countHandled(t, b.db.Pool, "counter")
		n, _ := rec.total()
		return d == len(envs) && n == len(envs)
	})
	stop()
	d, total := countHandled(t, b.db.Pool, "counter")
	require.Equal(t, len(envs), d)
	require.Equal(t, len(envs), total, "a transactional handler ran an event twice")
	d, calls := rec.total()
	require.Equal(t, len(envs), d)
	require.Equal(t, len(envs), calls)
	other, _ := countHandled(t, b.db.Pool, "other")
	require.Zero(t, other)

	ends := b.kc.EndOffsets(t, b.topic)
	for _, h := range []string{"counter", "plain", "other"} {
		offs := offsetsOf(t, b.db.Pool, "svc", h)
		for p, end := range ends {
			require.Equal(t, end, offs[int(p)], "handler %s partition %d", h, p)
		}
	}
	_ = context.Background
}
