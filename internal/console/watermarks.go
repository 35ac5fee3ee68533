package console

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// watermarkTTL is how long high watermarks are reused: pages refreshing
// every few seconds ask Kafka at most this often.
const watermarkTTL = 2 * time.Second

// topicPartition names a partition.
type topicPartition struct {
	topic     string
	partition int
}

// watermarks reads partitions' high watermarks with one ListOffsets
// request per refresh and caches them for watermarkTTL.
type watermarks struct {
	client *kafka.Client
	mu     sync.Mutex
	at     time.Time
	cached map[topicPartition]int64
	err    error
}

// get returns the high watermark of each partition asked for; a partition
// missing from the result could not be read, and err says why.
func (w *watermarks) get(ctx context.Context, parts []topicPartition) (map[topicPartition]int64, error) {
	if w == nil || w.client == nil {
		return nil, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	fresh := time.Since(w.at) < watermarkTTL
	for _, p := range parts {
		if _, ok := w.cached[p]; !ok {
			fresh = false
		}
	}
	if fresh {
		return w.cached, w.err
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range parts {
		req.Topics[p.topic] = append(req.Topics[p.topic], kafka.LastOffsetOf(p.partition))
	}
	out := map[topicPartition]int64{}
	resp, err := w.client.ListOffsets(ctx, req)
	if err != nil {
		err = fmt.Errorf("high watermarks from Kafka: %w", err)
	} else {
		for topic, ps := range resp.Topics {
			for _, p := range ps {
				if p.Error != nil {
					err = fmt.Errorf("high watermark of %s/%d: %w", topic, p.Partition, p.Error)
					continue
				}
				out[topicPartition{topic, p.Partition}] = p.LastOffset
			}
		}
	}
	w.at, w.cached, w.err = time.Now(), out, err
	return out, err
}
