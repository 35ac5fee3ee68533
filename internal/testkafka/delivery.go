package testkafka

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// SeqEvent is a test event that carries its producer's per-key sequence
// number (0, 1, 2, ... per key), so CheckDelivery can compare per-key order
// on Kafka with commit order. Write it with its Key as the envelope key.
type SeqEvent struct {
	Key string `json:"key"`
	Seq int    `json:"seq"`
}

// EventType is "test.seq".
func (SeqEvent) EventType() string { return "test.seq" }

// CheckDelivery checks records of SeqEvents (as ReadAll returns them, in
// partition and offset order) against want, the number of events committed
// per key: every event is there (the count of distinct ce_id headers is the
// sum of want, and each key has exactly its count), and per key the first
// occurrences come in sequence (commit) order. Records without a ce_id fail
// the test. It returns the number of duplicate records (a ce_id seen
// before), which at-least-once delivery allows; callers bound it.
func CheckDelivery(t testing.TB, recs []*kgo.Record, want map[string]int) (duplicates int) {
	t.Helper()
	seen := make(map[string]bool, len(recs))
	next := map[string]int{}
	for _, rec := range recs {
		var id string
		for _, h := range rec.Headers {
			if h.Key == envelope.HeaderID {
				id = string(h.Value)
			}
		}
		require.NotEmpty(t, id, "record without ce_id")
		if seen[id] {
			duplicates++
			continue
		}
		seen[id] = true
		var ev SeqEvent
		require.NoError(t, json.Unmarshal(rec.Value, &ev))
		require.Equal(t, ev.Key, string(rec.Key))
		require.Equal(t, next[ev.Key], ev.Seq, "key %s: first occurrence of seq %d where %d was due (partition %d offset %d)",
			ev.Key, ev.Seq, next[ev.Key], rec.Partition, rec.Offset)
		next[ev.Key]++
	}
	total := 0
	for k, n := range want {
		require.Equal(t, n, next[k], "key %s: events on Kafka", k)
		total += n
	}
	require.Len(t, seen, total, "distinct ce_id count")
	return duplicates
}

// RecordCount is the number of records on topic, duplicates included (the
// sum of its partitions' high watermarks), or 0 while they cannot be read
// (the topic does not exist yet, the cluster is busy), so a poll can call
// it at any time.
func (c *Cluster) RecordCount(topic string) int64 {
	ends, err := c.EndOffsetsErr(context.Background(), topic)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}
