package dispatch

import (
	"context"
	"sort"
)

// ReplayChange is one handler offset a replay rewrites: the partition, the
// handler's next offset there now and the one the replay would set.
type ReplayChange struct {
	Topic     string
	Partition int
	// From is the current next offset; -1 when the handler has none on
	// this partition yet.
	From int64
	To   int64
}

// PreviewReplay resolves p as [Admin.Replay] does, with the same checks
// (Replay with DryRun), and returns what it would change, ordered by topic
// and partition, without writing anything. Offsets resolved from "latest"
// or a time can move between the preview and the replay as events arrive;
// an absolute offset or "earliest" on a topic without retention deletes in
// between does not.
func (a *Admin) PreviewReplay(ctx context.Context, p ReplayParams) ([]ReplayChange, error) {
	p.DryRun = true
	next, err := a.Replay(ctx, p)
	if err != nil {
		return nil, err
	}
	offs, err := a.ListOffsets(ctx, p.Group)
	if err != nil {
		return nil, err
	}
	current := map[offsetKey]int64{}
	for _, h := range offs {
		if h.Handler == p.Handler {
			current[offsetKey{topic: h.Topic, partition: h.Partition}] = h.NextOffset
		}
	}
	out := make([]ReplayChange, 0, len(next))
	for _, n := range next {
		from, ok := current[offsetKey{topic: n.Topic, partition: n.Partition}]
		if !ok {
			from = -1
		}
		out = append(out, ReplayChange{Topic: n.Topic, Partition: n.Partition, From: from, To: n.NextOffset})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}
