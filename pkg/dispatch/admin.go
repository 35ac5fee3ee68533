package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
)

// HandlerOffset is one row of pulsebus.handler_offsets.
type HandlerOffset struct {
	Group      string
	Handler    string
	Topic      string
	Partition  int
	NextOffset int64
	UpdatedAt  time.Time
}

// ListOffsets returns a group's handler offsets, ordered by handler, topic
// and partition.
func (a *Admin) ListOffsets(ctx context.Context, group string) ([]HandlerOffset, error) {
	if err := a.need("ListOffsets", false); err != nil {
		return nil, err
	}
	rows, err := a.Pool.Query(ctx, `SELECT group_id, handler, topic, partition, next_offset, updated_at
		FROM pulsebus.handler_offsets WHERE group_id = $1 ORDER BY handler, topic, partition`, group)
	if err != nil {
		return nil, fmt.Errorf("list offsets of group %s: %w", group, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HandlerOffset, error) {
		var o HandlerOffset
		err := r.Scan(&o.Group, &o.Handler, &o.Topic, &o.Partition, &o.NextOffset, &o.UpdatedAt)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("list offsets of group %s: %w", group, err)
	}
	return out, nil
}

// Admin runs the operations on a consumer group's state kept in
// PostgreSQL: handler offsets, their lag, replays, dead letters and held
// events. Those reading PostgreSQL alone need only Pool; Lag, Replay and
// PreviewReplay also ask Kafka (Brokers), and Redrive runs a Consumer's
// handlers.
type Admin struct {
	// Pool holds the pulsebus schema. Required.
	Pool *pgxpool.Pool
	// Brokers are Kafka seed addresses. Required by Lag, Replay and
	// PreviewReplay.
	Brokers []string
	// Dialer connects to Kafka. Defaults to a plain dialer.
	Dialer *kafka.Dialer
	// Consumer has the handlers Redrive runs (it need not be running);
	// Redrive works on its Config.Group. Required by Redrive.
	Consumer *Consumer
}

// need reports a field operation op requires that is not set: Pool, and
// Brokers when it reads Kafka.
func (a *Admin) need(op string, readsKafka bool) error {
	if a.Pool == nil {
		return fmt.Errorf("dispatch: Admin.%s needs Admin.Pool", op)
	}
	if readsKafka && len(a.Brokers) == 0 {
		return fmt.Errorf("dispatch: Admin.%s reads Kafka: it needs Admin.Brokers", op)
	}
	return nil
}

func (a *Admin) offsets() offsets {
	d := a.Dialer
	if d == nil {
		d = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	}
	return offsets{dialer: d, brokers: a.Brokers}
}

// OffsetLag is a handler offset with its partition's high watermark.
type OffsetLag struct {
	HandlerOffset
	// HighWatermark is the partition's end offset; -1 if it could not be
	// read (Err says why).
	HighWatermark int64
	// Lag is HighWatermark - NextOffset (at least 0).
	Lag int64
	Err error
}

// Lag lists a group's handler offsets with high watermarks and lag.
func (a *Admin) Lag(ctx context.Context, group string) ([]OffsetLag, error) {
	if err := a.need("Lag", true); err != nil {
		return nil, err
	}
	offs, err := a.ListOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	o := a.offsets()
	hwm := map[offsetKey]int64{}
	out := make([]OffsetLag, 0, len(offs))
	for _, h := range offs {
		pk := offsetKey{topic: h.Topic, partition: h.Partition}
		l := OffsetLag{HandlerOffset: h, HighWatermark: -1}
		end, ok := hwm[pk]
		if !ok {
			end, err = o.resolve(ctx, h.Topic, h.Partition, kafka.LastOffset)
			if err != nil {
				l.Err = err
				end = -1
			}
			hwm[pk] = end
		}
		if end >= 0 {
			l.HighWatermark = end
			l.Lag = max(0, end-h.NextOffset)
		}
		out = append(out, l)
	}
	return out, nil
}

// ReplayTarget is where a replay moves a handler: earliest, latest, a time
// or an absolute offset.
type ReplayTarget struct {
	// Kind is "earliest", "latest", "time" or "offset".
	Kind   string
	Time   time.Time
	Offset int64
}

// ParseReplayTarget parses earliest, latest, an RFC 3339 time or a
// non-negative offset.
func ParseReplayTarget(s string) (ReplayTarget, error) {
	switch s {
	case "earliest", "latest":
		return ReplayTarget{Kind: s}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return ReplayTarget{Kind: "time", Time: t}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return ReplayTarget{Kind: "offset", Offset: n}, nil
	}
	return ReplayTarget{}, fmt.Errorf("replay target %q: want earliest, latest, an RFC 3339 time or an offset >= 0", s)
}

// ReplayParams selects the handler offsets a replay rewrites.
type ReplayParams struct {
	Group   string
	Handler string
	// Topic limits the replay to one topic; empty means every topic the
	// handler has offsets on. Required when the handler has none yet.
	Topic string
	// Partition limits it to one partition; -1 means all.
	Partition int
	// To is where the offsets move. An absolute offset needs Topic and
	// Partition, and must lie within the partition's low and high
	// watermarks (else a *ReplayRangeError).
	To ReplayTarget
	// DryRun computes the new offsets and returns them without writing
	// anything or notifying consumers.
	DryRun bool
}

// ReplayRangeError reports an absolute replay offset outside its
// partition's offsets.
type ReplayRangeError struct {
	Topic     string
	Partition int
	Offset    int64
	// Low and High are the partition's low and high watermarks: the valid
	// offsets, High (the next offset to be written) included.
	Low, High int64
}

func (e *ReplayRangeError) Error() string {
	return fmt.Sprintf("replay: offset %d is outside %s/%d: valid offsets run from %d to %d (its low and high watermarks)",
		e.Offset, e.Topic, e.Partition, e.Low, e.High)
}

// Replay rewrites a handler's next offsets and notifies running consumers
// of the group (on notifyChannel) in the same transaction; they re-deliver
// to that handler only, without a restart. It returns the rows as written
// (with p.DryRun, as they would be, with a zero UpdatedAt).
func (a *Admin) Replay(ctx context.Context, p ReplayParams) ([]HandlerOffset, error) {
	if p.Group == "" || p.Handler == "" {
		return nil, errors.New("replay: group and handler are required")
	}
	if p.To.Kind == "offset" && (p.Topic == "" || p.Partition < 0) {
		return nil, ErrReplayOffsetNeedsPartition
	}
	if err := a.need("Replay", true); err != nil {
		return nil, err
	}
	o := a.offsets()
	targets, err := a.replayTargets(ctx, o, p)
	if err != nil {
		return nil, err
	}
	next := make(map[offsetKey]int64, len(targets))
	for _, k := range targets {
		off, err := o.replayOffset(ctx, k, p.To)
		if err != nil {
			return nil, err
		}
		next[k] = off
	}
	if p.DryRun {
		out := make([]HandlerOffset, 0, len(next))
		for k, off := range next {
			out = append(out, HandlerOffset{Group: p.Group, Handler: p.Handler, Topic: k.topic, Partition: k.partition, NextOffset: off})
		}
		return out, nil
	}
	return a.writeReplay(ctx, p, next)
}

// replayTargets returns the partitions replay p moves: those the handler
// has offsets on, and with p.Topic every partition of that topic, as
// p.Partition selects.
func (a *Admin) replayTargets(ctx context.Context, o offsets, p ReplayParams) ([]offsetKey, error) {
	offs, err := a.ListOffsets(ctx, p.Group)
	if err != nil {
		return nil, err
	}
	var targets []offsetKey
	add := func(k offsetKey) {
		if !slices.Contains(targets, k) {
			targets = append(targets, k)
		}
	}
	for _, h := range offs {
		if h.Handler == p.Handler && (p.Topic == "" || h.Topic == p.Topic) && (p.Partition < 0 || h.Partition == p.Partition) {
			add(offsetKey{topic: h.Topic, partition: h.Partition})
		}
	}
	if p.Topic != "" {
		parts, err := o.partitions(ctx, p.Topic)
		if err != nil {
			return nil, err
		}
		for _, id := range parts {
			if p.Partition < 0 || id == p.Partition {
				add(offsetKey{topic: p.Topic, partition: id})
			}
		}
	}
	if len(targets) == 0 {
		return nil, o.noReplayTargets(ctx, p, offs)
	}
	return targets, nil
}

// replayOffset resolves where a replay to moves partition k.
func (o offsets) replayOffset(ctx context.Context, k offsetKey, to ReplayTarget) (int64, error) {
	switch to.Kind {
	case "earliest":
		return o.resolve(ctx, k.topic, k.partition, kafka.FirstOffset)
	case "latest":
		return o.resolve(ctx, k.topic, k.partition, kafka.LastOffset)
	case "time":
		return o.atTime(ctx, k.topic, k.partition, to.Time)
	case "offset":
		low, high, err := o.watermarks(ctx, k.topic, k.partition)
		if err != nil {
			return 0, err
		}
		if to.Offset < low || to.Offset > high {
			return 0, &ReplayRangeError{Topic: k.topic, Partition: k.partition, Offset: to.Offset, Low: low, High: high}
		}
		return to.Offset, nil
	}
	return 0, fmt.Errorf("replay: unknown target kind %q", to.Kind)
}

// writeReplay writes the handler's new offsets and notifies the group's
// running consumers, in one transaction.
func (a *Admin) writeReplay(ctx context.Context, p ReplayParams, next map[offsetKey]int64) ([]HandlerOffset, error) {
	var out []HandlerOffset
	err := pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) error {
		for k, off := range next {
			var h HandlerOffset
			err := tx.QueryRow(ctx, `INSERT INTO pulsebus.handler_offsets (group_id, handler, topic, partition, next_offset)
				VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (group_id, handler, topic, partition) DO UPDATE
				SET next_offset = EXCLUDED.next_offset, updated_at = clock_timestamp()
				RETURNING group_id, handler, topic, partition, next_offset, updated_at`,
				p.Group, p.Handler, k.topic, k.partition, off).
				Scan(&h.Group, &h.Handler, &h.Topic, &h.Partition, &h.NextOffset, &h.UpdatedAt)
			if err != nil {
				return fmt.Errorf("replay %s on %s/%d: %w", p.Handler, k.topic, k.partition, err)
			}
			out = append(out, h)
		}
		payload, _ := json.Marshal(notification{Group: p.Group, Handler: p.Handler})
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(payload)); err != nil {
			return fmt.Errorf("replay: notify: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// noReplayTargets says why replay p found no partition to move, given the
// group's offsets: the group has no such handler (naming those it has), or
// the topic has no such partition (giving its partition count).
func (o offsets) noReplayTargets(ctx context.Context, p ReplayParams, offs []HandlerOffset) error {
	var handlers, topics []string
	for _, h := range offs {
		if !slices.Contains(handlers, h.Handler) {
			handlers = append(handlers, h.Handler)
		}
		if h.Handler == p.Handler && !slices.Contains(topics, h.Topic) {
			topics = append(topics, h.Topic)
		}
	}
	slices.Sort(handlers)
	slices.Sort(topics)
	switch {
	case p.Topic != "":
		// Topic's partitions were listed; the partition is not among them.
		parts, err := o.partitions(ctx, p.Topic)
		if err != nil {
			return err
		}
		return fmt.Errorf("replay: topic %s has %s: no partition %d", p.Topic, partitionRange(len(parts)), p.Partition)
	case len(handlers) == 0:
		return fmt.Errorf("replay: group %s has no handler offsets at all (check the group); to start handler %s's offsets, name a topic",
			p.Group, p.Handler)
	case len(topics) == 0:
		return fmt.Errorf("replay: group %s has no handler %s (its handlers: %s); to start a new handler's offsets, name a topic",
			p.Group, p.Handler, strings.Join(handlers, ", "))
	}
	have := make([]string, 0, len(topics))
	for _, t := range topics {
		parts, err := o.partitions(ctx, t)
		if err != nil {
			return err
		}
		have = append(have, t+" has "+partitionRange(len(parts)))
	}
	return fmt.Errorf("replay: handler %s of group %s has no offsets on partition %d: %s",
		p.Handler, p.Group, p.Partition, strings.Join(have, ", "))
}

// partitionRange describes a topic's n partitions: "3 partitions (0 to 2)".
func partitionRange(n int) string {
	switch n {
	case 0:
		return "no partitions"
	case 1:
		return "1 partition (0)"
	}
	return fmt.Sprintf("%d partitions (0 to %d)", n, n-1)
}
