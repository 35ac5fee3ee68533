package testkafka

import (
	"context"
	"encoding/json"
	"testing"

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
		if id == "" {
			t.Fatalf("record without ce_id (partition %d offset %d)", rec.Partition, rec.Offset)
		}
		if seen[id] {
			duplicates++
			continue
		}
		seen[id] = true
		var ev SeqEvent
		if err := json.Unmarshal(rec.Value, &ev); err != nil {
			t.Fatalf("decode record at partition %d offset %d: %v", rec.Partition, rec.Offset, err)
		}
		if ev.Key != string(rec.Key) {
			t.Fatalf("event key %q on a record with key %q (partition %d offset %d)", ev.Key, rec.Key, rec.Partition, rec.Offset)
		}
		if ev.Seq != next[ev.Key] {
			t.Fatalf("key %s: first occurrence of seq %d where %d was due (partition %d offset %d)",
				ev.Key, ev.Seq, next[ev.Key], rec.Partition, rec.Offset)
		}
		next[ev.Key]++
	}
	total := 0
	for k, n := range want {
		if next[k] != n {
			t.Fatalf("key %s: %d events on Kafka, want %d", k, next[k], n)
		}
		total += n
	}
	if len(seen) != total {
		t.Fatalf("distinct ce_id count %d, want %d", len(seen), total)
	}
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
