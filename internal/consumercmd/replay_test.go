package consumercmd_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edupulse/pulsebus/internal/consumercmd"
	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// replay refuses an absolute offset outside the partition's [low, high
// watermark] and one without --topic and --partition (exit 2, offsets
// untouched); --dry-run prints the move and writes nothing.
func TestReplay_RefusesOffsetsOutsideThePartition(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	// Ends: partition 0 at 0, 1 at 2, 2 at 5.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.kc.Addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer cl.Close()
	var recs []*kgo.Record
	for p, n := range map[int32]int{1: 2, 2: 5} {
		for range n {
			recs = append(recs, &kgo.Record{Topic: b.topic, Partition: p, Value: []byte("x")})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, cl.ProduceSync(ctx, recs...).FirstErr())
	_, _, err = command(t, append([]string{"replay", "--handler-name", "h", "--topic", b.topic, "--to", "earliest"}, b.admin()...)...)
	require.NoError(t, err)
	offsets := func() map[int]int64 {
		offs, err := (&dispatch.Admin{Pool: b.db.Pool}).ListOffsets(context.Background(), b.group)
		require.NoError(t, err)
		out := map[int]int64{}
		for _, o := range offs {
			out[o.Partition] = o.NextOffset
		}
		return out
	}
	start := map[int]int64{0: 0, 1: 0, 2: 0}
	require.Equal(t, start, offsets())

	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--to", "5"}, []string{"--to", "an absolute offset (5) needs --topic and --partition"}},
		{[]string{"--topic", b.topic, "--to", "5"}, []string{"needs --topic and --partition"}},
		{[]string{"--partition", "1", "--to", "1"}, []string{"needs --topic and --partition"}},
		{[]string{"--topic", b.topic, "--partition", "1", "--to", "5"},
			[]string{"offset 5 is outside edupulse.events/1", "from 0 to 2"}},
		{[]string{"--topic", b.topic, "--partition", "2", "--to", "99999999999"},
			[]string{"offset 99999999999 is outside edupulse.events/2", "from 0 to 5"}},
		{[]string{"--topic", b.topic, "--partition", "0", "--to", "1"}, []string{"outside edupulse.events/0", "from 0 to 0"}},
	} {
		_, _, err := command(t, append(append([]string{"replay", "--handler-name", "h"}, c.args...), b.admin()...)...)
		for _, w := range c.want {
			require.ErrorContains(t, err, w, "%v", c.args)
		}
		require.Equal(t, 2, consumercmd.ExitCode(err), "%v: %v", c.args, err)
		require.Equal(t, start, offsets(), "%v wrote nothing", c.args)
	}

	// --dry-run: the moves, nothing written.
	out, _, err := command(t, append([]string{"replay", "--handler-name", "h", "--topic", b.topic, "--to", "latest", "--dry-run"}, b.admin()...)...)
	require.NoError(t, err)
	for p, end := range map[int]int{0: 0, 1: 2, 2: 5} {
		require.Regexp(t, fmt.Sprintf(`(?m)^h\s+%s\s+%d\s+0\s+%d$`, regexp.QuoteMeta(b.topic), p, end), out)
	}
	require.Contains(t, out, "dry run: nothing written")
	require.Equal(t, start, offsets())

	// In range, the high watermark included.
	for _, to := range []string{"3", "5"} {
		out, _, err = command(t, append([]string{"replay", "--handler-name", "h", "--topic", b.topic, "--partition", "2", "--to", to}, b.admin()...)...)
		require.NoError(t, err, out)
	}
	require.Equal(t, map[int]int64{0: 0, 1: 0, 2: 5}, offsets())
}
