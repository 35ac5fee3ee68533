// Package testkafka runs an in-process Kafka cluster (franz-go's kfake, which
// speaks the real Kafka wire protocol over TCP on 127.0.0.1) for tests, and
// reads topics back with franz-go's client: a client independent of the
// kafka-go code under test.
package testkafka

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Cluster is a running kfake cluster.
type Cluster struct {
	*kfake.Cluster
	// Addrs are the brokers' host:port addresses.
	Addrs []string
	admin *kgo.Client
}

// New starts a one-broker cluster (more with kfake.NumBrokers) and closes it
// in t.Cleanup.
func New(t testing.TB, opts ...kfake.Opt) *Cluster {
	t.Helper()
	c, err := Start(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("testkafka: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Start starts a cluster outside a test (benchmarks, the demo). Close it when
// done.
func Start(opts ...kfake.Opt) (*Cluster, error) {
	kc, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kfake: %w", err)
	}
	admin, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		kc.Close()
		return nil, fmt.Errorf("kfake admin client: %w", err)
	}
	return &Cluster{Cluster: kc, Addrs: kc.ListenAddrs(), admin: admin}, nil
}

// Close stops the admin client and the cluster.
func (c *Cluster) Close() {
	c.admin.Close()
	c.Cluster.Close()
}

// CreateTopic creates topic with the given number of partitions.
func (c *Cluster) CreateTopic(t testing.TB, topic string, partitions int) {
	t.Helper()
	if err := c.CreateTopicErr(context.Background(), topic, partitions); err != nil {
		t.Fatalf("testkafka: %v", err)
	}
}

// CreateTopicErr creates topic with the given number of partitions.
func (c *Cluster) CreateTopicErr(ctx context.Context, topic string, partitions int) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions = int32(partitions)
	rt.ReplicationFactor = 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, c.admin)
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// EndOffsets returns each partition's high watermark.
func (c *Cluster) EndOffsets(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	ends, err := c.EndOffsetsErr(context.Background(), topic)
	if err != nil {
		t.Fatalf("testkafka: %v", err)
	}
	return ends
}

// EndOffsetsErr returns each partition's high watermark.
func (c *Cluster) EndOffsetsErr(ctx context.Context, topic string) (map[int32]int64, error) {
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, c.admin)
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	if len(mresp.Topics) != 1 {
		return nil, fmt.Errorf("metadata %s: %d topics in answer", topic, len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		return nil, fmt.Errorf("metadata %s: %w", topic, err)
	}
	lreq := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range mresp.Topics[0].Partitions {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition = p.Partition
		lp.Timestamp = -1 // latest
		lt.Partitions = append(lt.Partitions, lp)
	}
	lreq.Topics = append(lreq.Topics, lt)
	lresp, err := lreq.RequestWith(ctx, c.admin)
	if err != nil {
		return nil, fmt.Errorf("list offsets %s: %w", topic, err)
	}
	ends := make(map[int32]int64)
	for _, rt := range lresp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return nil, fmt.Errorf("list offsets %s/%d: %w", topic, rp.Partition, err)
			}
			ends[rp.Partition] = rp.Offset
		}
	}
	return ends, nil
}

// ReadAll reads every record on topic up to the high watermarks as they are
// when it is called, sorted by partition and offset.
func (c *Cluster) ReadAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs, err := c.ReadAllErr(ctx, topic)
	if err != nil {
		t.Fatalf("testkafka: %v", err)
	}
	return recs
}

// ReadAllErr reads every record on topic up to the high watermarks as they
// are when it is called, sorted by partition and offset.
func (c *Cluster) ReadAllErr(ctx context.Context, topic string) ([]*kgo.Record, error) {
	ends, err := c.EndOffsetsErr(ctx, topic)
	if err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	total := int64(0)
	offsets := map[string]map[int32]kgo.Offset{topic: {}}
	for p, end := range ends {
		if end > 0 {
			want[p] = end
			total += end
			offsets[topic][p] = kgo.NewOffset().AtStart()
		}
	}
	var recs []*kgo.Record
	if total == 0 {
		return recs, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs...), kgo.ConsumePartitions(offsets), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return recs, fmt.Errorf("read %s: %d of %d records before: %w", topic, len(recs), total, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return recs, fmt.Errorf("read %s: %w", topic, ferr)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			recs = append(recs, r)
			if r.Offset == end-1 {
				delete(want, r.Partition)
			}
		})
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset < recs[j].Offset
	})
	return recs, nil
}
