package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/segmentio/kafka-go"
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

// PreviewReplay resolves p the way [Admin.Replay] does (the same
// partitions, the same Kafka offset lookups) and returns what it would
// change, ordered by topic and partition, without writing anything. Offsets
// resolved from "latest" or a time can move between the preview and the
// replay as events arrive; an absolute offset or "earliest" on a topic
// without retention deletes in between does not.
func (a *Admin) PreviewReplay(ctx context.Context, p ReplayParams) ([]ReplayChange, error) {
	if p.Group == "" || p.Handler == "" {
		return nil, errors.New("replay preview: group and handler are required")
	}
	offs, err := ListOffsets(ctx, a.Pool, p.Group)
	if err != nil {
		return nil, err
	}
	current := map[offsetKey]int64{}
	for _, h := range offs {
		if h.Handler == p.Handler && (p.Topic == "" || h.Topic == p.Topic) && (p.Partition < 0 || h.Partition == p.Partition) {
			current[offsetKey{topic: h.Topic, partition: h.Partition}] = h.NextOffset
		}
	}
	o := a.offsets()
	if p.Topic != "" {
		parts, err := o.partitions(ctx, p.Topic)
		if err != nil {
			return nil, err
		}
		for _, id := range parts {
			k := offsetKey{topic: p.Topic, partition: id}
			if _, ok := current[k]; !ok && (p.Partition < 0 || id == p.Partition) {
				current[k] = -1
			}
		}
	}
	if len(current) == 0 {
		return nil, fmt.Errorf("replay preview: handler %s of group %s has no offsets to rewrite (name a topic)", p.Handler, p.Group)
	}
	out := make([]ReplayChange, 0, len(current))
	for k, from := range current {
		var to int64
		switch p.To.Kind {
		case "earliest":
			to, err = o.resolve(ctx, k.topic, k.partition, kafka.FirstOffset)
		case "latest":
			to, err = o.resolve(ctx, k.topic, k.partition, kafka.LastOffset)
		case "time":
			to, err = o.atTime(ctx, k.topic, k.partition, p.To.Time)
		case "offset":
			to = p.To.Offset
		default:
			err = fmt.Errorf("replay preview: unknown target kind %q", p.To.Kind)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ReplayChange{Topic: k.topic, Partition: k.partition, From: from, To: to})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}
