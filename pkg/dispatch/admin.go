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

	"github.com/edupulse/pulsebus/pkg/envelope"
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
func ListOffsets(ctx context.Context, db dbtx, group string) ([]HandlerOffset, error) {
	rows, err := db.Query(ctx, `SELECT group_id, handler, topic, partition, next_offset, updated_at
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

// Admin runs the operations that need Kafka as well as PostgreSQL: high
// watermarks and replays.
type Admin struct {
	// Pool holds the pulsebus schema.
	Pool *pgxpool.Pool
	// Brokers are Kafka seed addresses.
	Brokers []string
	// Dialer connects to Kafka. Defaults to a plain dialer.
	Dialer *kafka.Dialer
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
	offs, err := ListOffsets(ctx, a.Pool, group)
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

// ErrReplayOffsetNeedsPartition reports an absolute replay offset without a
// topic and a partition: offsets mean nothing across partitions.
var ErrReplayOffsetNeedsPartition = errors.New("replay: an absolute offset needs a topic and a partition")

// Replay rewrites a handler's next offsets and notifies running consumers
// of the group (on NotifyChannel) in the same transaction; they re-deliver
// to that handler only, without a restart. It returns the rows as written
// (with p.DryRun, as they would be, with a zero UpdatedAt).
func (a *Admin) Replay(ctx context.Context, p ReplayParams) ([]HandlerOffset, error) {
	if p.Group == "" || p.Handler == "" {
		return nil, errors.New("replay: group and handler are required")
	}
	if p.To.Kind == "offset" && (p.Topic == "" || p.Partition < 0) {
		return nil, ErrReplayOffsetNeedsPartition
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
	offs, err := ListOffsets(ctx, a.Pool, p.Group)
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
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, string(payload)); err != nil {
			return fmt.Errorf("replay: notify: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeadLetter is one parked message.
type DeadLetter struct {
	ID            int64
	Group         string
	Handler       string
	Topic         string
	Partition     int
	Offset        int64
	EventID       *string
	EventType     *string
	Key           []byte
	Headers       []kafka.Header
	Value         []byte
	Error         string
	Attempts      int
	FirstFailedAt time.Time
	LastFailedAt  time.Time
	// MessageStored is false for a row that records only where the message
	// was: storing the message itself failed (Error says why), so Key,
	// Headers and Value are empty and it cannot be redriven; replay the
	// handler to Offset instead.
	MessageStored bool
	// HoldsKey is set on a key's head: a dead letter of a handler with
	// WithKeyOrder, whose later events of the same key (Key) wait behind
	// it in pulsebus.held_events until it is redriven or deleted.
	HoldsKey bool
	// Held is how many events wait behind a head; 0 for other rows.
	Held int64
}

// Message rebuilds the Kafka message byte for byte.
func (d *DeadLetter) Message() kafka.Message {
	return kafka.Message{Topic: d.Topic, Partition: d.Partition, Offset: d.Offset, Key: d.Key, Value: d.Value, Headers: d.Headers}
}

// ListDeadLettersParams filters [ListDeadLetters].
type ListDeadLettersParams struct {
	Group string
	// Handler, when set, lists only that handler's.
	Handler string
	// ID, when > 0, lists only that row.
	ID int64
	// Limit caps the rows. Defaults to 100.
	Limit int
}

const deadLetterColumns = `id, group_id, handler, topic, partition, kafka_offset, event_id, event_type, message_key,
	message_headers, message_header_keys, message_header_values, message_value, error, attempts, first_failed_at,
	last_failed_at, message_stored, holds_key,
	CASE WHEN holds_key THEN (SELECT count(*) FROM pulsebus.held_events h
		WHERE h.group_id = dead_letters.group_id AND h.handler = dead_letters.handler AND h.topic = dead_letters.topic
		  AND h.partition = dead_letters.partition AND h.message_key = dead_letters.message_key) ELSE 0 END`

// ListDeadLetters returns parked messages, oldest first.
func ListDeadLetters(ctx context.Context, db dbtx, p ListDeadLettersParams) ([]DeadLetter, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	rows, err := db.Query(ctx, `SELECT `+deadLetterColumns+` FROM pulsebus.dead_letters
		WHERE group_id = $1 AND ($2 = '' OR handler = $2) AND ($3 <= 0 OR id = $3)
		ORDER BY id LIMIT $4`, p.Group, p.Handler, p.ID, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

func scanDeadLetter(r pgx.CollectableRow) (DeadLetter, error) {
	var d DeadLetter
	var hj []byte
	var keys, values [][]byte
	if err := r.Scan(&d.ID, &d.Group, &d.Handler, &d.Topic, &d.Partition, &d.Offset, &d.EventID, &d.EventType,
		&d.Key, &hj, &keys, &values, &d.Value, &d.Error, &d.Attempts, &d.FirstFailedAt, &d.LastFailedAt,
		&d.MessageStored, &d.HoldsKey, &d.Held); err != nil {
		return d, err
	}
	if keys != nil {
		if len(values) != len(keys) {
			return d, fmt.Errorf("dead letter %d: %d header keys but %d values", d.ID, len(keys), len(values))
		}
		d.Headers = make([]kafka.Header, len(keys))
		for i := range keys {
			d.Headers[i] = kafka.Header{Key: string(keys[i]), Value: values[i]}
		}
		return d, nil
	}
	// Written before schema version 2, or by an older binary: only the
	// readable copy.
	var hs []headerJSON
	if err := json.Unmarshal(hj, &hs); err != nil {
		return d, fmt.Errorf("dead letter %d: headers: %w", d.ID, err)
	}
	for _, h := range hs {
		d.Headers = append(d.Headers, kafka.Header{Key: h.Key, Value: h.Value})
	}
	return d, nil
}

// RedriveParams selects the dead letters to redrive: one by ID, or all of
// a handler's.
type RedriveParams struct {
	ID      int64
	Handler string
}

// RedriveResult counts a redrive's outcome.
type RedriveResult struct {
	Redriven int
	// Released counts the redriven rows that held their key: the events
	// held behind them run next (see [WithKeyOrder]).
	Released int
	Failed   int
	// Skipped counts rows another redrive was working on or had deleted.
	Skipped int
	// Errors has one entry per failed row, "id N: reason".
	Errors []string
}

// errRedriveBusy reports a dead letter another redrive holds or removed.
var errRedriveBusy = errors.New("dispatch: dead letter is being redriven elsewhere or is gone")

// errNotRegistered reports a dead letter whose handler this consumer does
// not have: the row is left as it is, its error and attempts untouched.
var errNotRegistered = errors.New("handler is not registered in this consumer")

// errNotStored reports a dead letter that holds only its message's
// position: there is nothing to run the handler on. The row is left as it
// is.
var errNotStored = errors.New("the message itself was not stored (see the row's error); replay the handler to its offset to handle it again")

// Redrive runs the registered handler once more on each selected dead
// letter of this consumer's group and deletes the row on success (for a
// transactional handler, in the handler's transaction). Each row is locked
// while its handler runs, so concurrent redrives never run a handler twice
// on it. On failure the row stays, with the new error and one more
// attempt. A row whose handler is not registered in c, or that holds only
// the message's position (DeadLetter.MessageStored false), counts as
// failed and is left untouched. Offsets are not touched. It does not need Run.
//
// When a redriven row is its key's head (DeadLetter.HoldsKey), the events
// held behind it are released: the commit notifies the group's running
// consumers, and the worker that owns the partition runs them in Kafka
// order (at its next start if none runs now).
func (c *Consumer) Redrive(ctx context.Context, p RedriveParams) (RedriveResult, error) {
	var res RedriveResult
	if p.ID <= 0 && p.Handler == "" {
		return res, errors.New("redrive: an id or a handler is required")
	}
	var lastID int64
	for {
		rows, err := c.cfg.Pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM pulsebus.dead_letters
			WHERE group_id = $1 AND ($2 = '' OR handler = $2) AND ($3 <= 0 OR id = $3) AND id > $4
			ORDER BY id LIMIT 100`, c.cfg.Group, p.Handler, p.ID, lastID)
		if err != nil {
			return res, fmt.Errorf("redrive: %w", err)
		}
		dls, err := pgx.CollectRows(rows, scanDeadLetter)
		if err != nil {
			return res, fmt.Errorf("redrive: %w", err)
		}
		if len(dls) == 0 {
			if p.ID > 0 && res.Redriven+res.Failed == 0 {
				return res, fmt.Errorf("redrive: no dead letter %d in group %s", p.ID, c.cfg.Group)
			}
			return res, nil
		}
		for _, d := range dls {
			lastID = d.ID
			released, err := c.redriveOne(ctx, d)
			if err != nil {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				if errors.Is(err, errRedriveBusy) {
					res.Skipped++
					continue
				}
				res.Failed++
				res.Errors = append(res.Errors, fmt.Sprintf("id %d: %v", d.ID, err))
				if errors.Is(err, errNotRegistered) || errors.Is(err, errNotStored) {
					continue
				}
				if _, uerr := c.cfg.Pool.Exec(ctx, `UPDATE pulsebus.dead_letters
					SET error = $2, attempts = attempts + 1, last_failed_at = clock_timestamp() WHERE id = $1`,
					d.ID, errText(err)); uerr != nil {
					return res, fmt.Errorf("redrive: record failure of %d: %w", d.ID, uerr)
				}
				continue
			}
			res.Redriven++
			if released {
				res.Released++
			}
		}
	}
}

// redriveOne runs d's handler on it and deletes it on success; released
// reports that d held its key.
func (c *Consumer) redriveOne(ctx context.Context, d DeadLetter) (released bool, err error) {
	r := c.byName[d.Handler]
	if r == nil {
		return false, fmt.Errorf("%s: %w", d.Handler, errNotRegistered)
	}
	if !d.MessageStored {
		return false, fmt.Errorf("%s/%d@%d: %w", d.Topic, d.Partition, d.Offset, errNotStored)
	}
	msg := d.Message()
	env, err := c.cfg.Limits.FromMessage(msg)
	if err != nil {
		return false, err
	}
	hctx := withMessage(ctx, msg)
	var holdsKey bool
	err = pgx.BeginFunc(ctx, c.cfg.Pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT holds_key FROM pulsebus.dead_letters WHERE id = $1 FOR UPDATE SKIP LOCKED`, d.ID).Scan(&holdsKey)
		if errors.Is(err, pgx.ErrNoRows) {
			return errRedriveBusy
		}
		if err != nil {
			return err
		}
		err = safeCall(func() error {
			switch r.kind {
			case kindPlain:
				return r.run.Handle(hctx, env)
			case kindTx:
				return r.runOne(hctx, tx, env)
			default:
				return r.runBatch(ctx, tx, []envelope.Envelope{env})
			}
		})
		if err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `DELETE FROM pulsebus.dead_letters WHERE id = $1`, d.ID); err != nil || !holdsKey {
			return err
		}
		return notifyReleased(ctx, tx, d.Group, d.Handler)
	})
	return err == nil && holdsKey, err
}

// notifyReleased tells the group's running consumers, when tx commits, that
// a head of handler is gone: its worker reloads and runs the released
// events.
func notifyReleased(ctx context.Context, tx pgx.Tx, group, handler string) error {
	payload, _ := json.Marshal(notification{Group: group, Handler: handler})
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, string(payload)); err != nil {
		return fmt.Errorf("notify the consumers of %s: %w", handler, err)
	}
	return nil
}

// DeleteDeadLettersParams selects the dead letters [DeleteDeadLetters]
// deletes: one by ID, or all of Handler's, in Group.
type DeleteDeadLettersParams struct {
	Group   string
	ID      int64
	Handler string
}

// DeleteDeadLetters deletes dead letters without running their handler and
// returns them (without their messages), oldest first. Deleting a key's
// head releases the events held behind it, as a successful redrive does:
// the running consumers are notified, and the partition's worker runs them
// in Kafka order.
func DeleteDeadLetters(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}, p DeleteDeadLettersParams) ([]DeadLetter, error) {
	if (p.ID <= 0) == (p.Handler == "") {
		return nil, errors.New("delete dead letters: give an id or a handler, not both")
	}
	var out []DeadLetter
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `WITH gone AS (
				DELETE FROM pulsebus.dead_letters
				 WHERE group_id = $1 AND ($2 = '' OR handler = $2) AND ($3 <= 0 OR id = $3)
				RETURNING id, group_id, handler, topic, partition, kafka_offset, event_id, event_type, message_key,
				          error, attempts, first_failed_at, last_failed_at, message_stored, holds_key)
			SELECT g.*, CASE WHEN g.holds_key THEN (SELECT count(*) FROM pulsebus.held_events h
				WHERE h.group_id = g.group_id AND h.handler = g.handler AND h.topic = g.topic
				  AND h.partition = g.partition AND h.message_key = g.message_key) ELSE 0 END
			  FROM gone g ORDER BY g.id`, p.Group, p.Handler, p.ID)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
			var d DeadLetter
			err := r.Scan(&d.ID, &d.Group, &d.Handler, &d.Topic, &d.Partition, &d.Offset, &d.EventID, &d.EventType,
				&d.Key, &d.Error, &d.Attempts, &d.FirstFailedAt, &d.LastFailedAt, &d.MessageStored, &d.HoldsKey, &d.Held)
			return d, err
		})
		if err != nil {
			return err
		}
		notified := map[string]bool{}
		for _, d := range out {
			if d.HoldsKey && !notified[d.Handler] {
				notified[d.Handler] = true
				if err := notifyReleased(ctx, tx, d.Group, d.Handler); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete dead letters of group %s: %w", p.Group, err)
	}
	return out, nil
}

// HeldEvent is an event a handler with WithKeyOrder holds behind a dead
// letter of the same key (one row of pulsebus.held_events).
type HeldEvent struct {
	ID        int64
	Group     string
	Handler   string
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	EventID   *string
	EventType *string
	HeldAt    time.Time
	// HeadID is the dead letter it waits for; nil once that head was
	// redriven or deleted and the consumer is about to run it.
	HeadID *int64
}

// ListHeldEventsParams filters [ListHeldEvents].
type ListHeldEventsParams struct {
	Group string
	// Handler, when set, lists only that handler's.
	Handler string
	// Limit caps the rows. Defaults to 100.
	Limit int
}

// ListHeldEvents returns held events by handler, partition, key and Kafka
// order, each with the head it waits for.
func ListHeldEvents(ctx context.Context, db dbtx, p ListHeldEventsParams) ([]HeldEvent, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	rows, err := db.Query(ctx, `SELECT e.id, e.group_id, e.handler, e.topic, e.partition, e.kafka_offset, e.message_key,
			e.event_id, e.event_type, e.held_at,
			(SELECT max(d.id) FROM pulsebus.dead_letters d
			  WHERE d.group_id = e.group_id AND d.handler = e.handler AND d.topic = e.topic
			    AND d.partition = e.partition AND d.message_key = e.message_key AND d.holds_key)
		  FROM pulsebus.held_events e
		 WHERE e.group_id = $1 AND ($2 = '' OR e.handler = $2)
		 ORDER BY e.handler, e.topic, e.partition, e.message_key, e.kafka_offset LIMIT $3`, p.Group, p.Handler, p.Limit)
	if err != nil {
		return nil, fmt.Errorf("list held events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HeldEvent, error) {
		var h HeldEvent
		err := r.Scan(&h.ID, &h.Group, &h.Handler, &h.Topic, &h.Partition, &h.Offset, &h.Key, &h.EventID, &h.EventType,
			&h.HeldAt, &h.HeadID)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("list held events: %w", err)
	}
	return out, nil
}

// FormatHeaders renders headers as k=v pairs for listings.
func FormatHeaders(hs []kafka.Header) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = h.Key + "=" + strconv.Quote(string(h.Value))
	}
	return strings.Join(parts, " ")
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
