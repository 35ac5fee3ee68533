package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// The preview resolves a replay as Replay does, writes nothing, and Replay
// then writes what it showed.
func TestAdmin_PreviewReplayShowsWhatReplayWrites(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	produceToKafka(t, b.kc.Addrs, b.topic, events(t, 6, "lesson.published"))
	end := b.kc.EndOffsets(t, b.topic)
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO pulsebus.handler_offsets (group_id, handler, topic, partition, next_offset)
		VALUES ('svc', 'a', $1, 0, $2)`, b.topic, end[0])
	require.NoError(t, err)
	admin := &dispatch.Admin{Pool: b.db.Pool, Brokers: b.kc.Addrs}

	for _, tc := range []struct {
		name string
		p    dispatch.ReplayParams
		want []dispatch.ReplayChange
	}{
		{"earliest, the partitions with offsets", dispatch.ReplayParams{Partition: -1, To: dispatch.ReplayTarget{Kind: "earliest"}},
			[]dispatch.ReplayChange{{Topic: b.topic, Partition: 0, From: end[0], To: 0}}},
		{"a topic adds its partitions without offsets", dispatch.ReplayParams{Topic: b.topic, Partition: -1, To: dispatch.ReplayTarget{Kind: "latest"}},
			[]dispatch.ReplayChange{{Topic: b.topic, Partition: 0, From: end[0], To: end[0]}, {Topic: b.topic, Partition: 1, From: -1, To: end[1]}}},
		{"offset on one partition", dispatch.ReplayParams{Topic: b.topic, Partition: 1, To: dispatch.ReplayTarget{Kind: "offset", Offset: 1}},
			[]dispatch.ReplayChange{{Topic: b.topic, Partition: 1, From: -1, To: 1}}},
		{"a time after every event: the end", dispatch.ReplayParams{Partition: -1, To: dispatch.ReplayTarget{Kind: "time", Time: time.Now().Add(time.Hour)}},
			[]dispatch.ReplayChange{{Topic: b.topic, Partition: 0, From: end[0], To: end[0]}}},
	} {
		tc.p.Group, tc.p.Handler = "svc", "a"
		got, err := admin.PreviewReplay(ctx, tc.p)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, got, tc.name)
		require.Equal(t, map[int]int64{0: end[0]}, offsetsOf(t, b.db.Pool, "svc", "a"), "%s: a preview writes nothing", tc.name)
	}

	_, err = admin.PreviewReplay(ctx, dispatch.ReplayParams{Group: "svc", Handler: "nobody", Partition: -1,
		To: dispatch.ReplayTarget{Kind: "earliest"}})
	require.ErrorContains(t, err, "group svc has no handler nobody (its handlers: a)", "the same check as Replay")
	_, err = admin.PreviewReplay(ctx, dispatch.ReplayParams{Group: "svc", Partition: -1})
	require.ErrorContains(t, err, "group and handler are required")

	p := dispatch.ReplayParams{Group: "svc", Handler: "a", Topic: b.topic, Partition: -1, To: dispatch.ReplayTarget{Kind: "earliest"}}
	preview, err := admin.PreviewReplay(ctx, p)
	require.NoError(t, err)
	_, err = admin.Replay(ctx, p)
	require.NoError(t, err)
	after := offsetsOf(t, b.db.Pool, "svc", "a")
	for _, c := range preview {
		require.Equal(t, c.To, after[c.Partition], "partition %d", c.Partition)
	}
}
