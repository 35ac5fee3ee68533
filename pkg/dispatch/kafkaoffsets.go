package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"
)

// offsets resolves Kafka partition offsets through the partition leaders.
type offsets struct {
	dialer  *kafka.Dialer
	brokers []string
}

func (o offsets) leader(ctx context.Context, topic string, partition int) (*kafka.Conn, error) {
	var errs []error
	for _, b := range o.brokers {
		conn, err := o.dialer.DialLeader(ctx, "tcp", b, topic, partition)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("connect to the leader of %s/%d: %w", topic, partition, errors.Join(errs...))
}

// resolve turns kafka.FirstOffset or kafka.LastOffset into an absolute
// offset; other values are returned as they are.
func (o offsets) resolve(ctx context.Context, topic string, partition int, at int64) (int64, error) {
	if at >= 0 {
		return at, nil
	}
	conn, err := o.leader(ctx, topic, partition)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var off int64
	if at == kafka.FirstOffset {
		off, err = conn.ReadFirstOffset()
	} else {
		off, err = conn.ReadLastOffset()
	}
	if err != nil {
		return 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	return off, nil
}

// watermarks returns the partition's low and high watermarks: its first
// offset and the next one to be written.
func (o offsets) watermarks(ctx context.Context, topic string, partition int) (low, high int64, err error) {
	conn, err := o.leader(ctx, topic, partition)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	low, high, err = conn.ReadOffsets()
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	return low, high, nil
}

// atTime returns the first offset whose timestamp is at or after t, or the
// high watermark when there is none.
func (o offsets) atTime(ctx context.Context, topic string, partition int, t time.Time) (int64, error) {
	conn, err := o.leader(ctx, topic, partition)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	off, err := conn.ReadOffset(t)
	if err != nil {
		return 0, fmt.Errorf("list offsets of %s/%d at %s: %w", topic, partition, t.Format(time.RFC3339), err)
	}
	if off < 0 { // no message at or after t
		return conn.ReadLastOffset()
	}
	return off, nil
}

// partitions lists topic's partition ids.
func (o offsets) partitions(ctx context.Context, topic string) ([]int, error) {
	var errs []error
	for _, b := range o.brokers {
		ps, err := o.dialer.LookupPartitions(ctx, "tcp", b, topic)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids := make([]int, 0, len(ps))
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
		sort.Ints(ids)
		return ids, nil
	}
	return nil, fmt.Errorf("list partitions of %s: %w", topic, errors.Join(errs...))
}
