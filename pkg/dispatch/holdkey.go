package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// WithKeyOrder makes the handler keep per-key order through a dead letter:
// once an event with Kafka key K is dead-lettered for the handler, its
// later events of K on that partition are not run but stored in
// pulsebus.held_events, in Kafka order, behind that dead letter (the key's
// head), while the handler goes on with every other key. When the head is redriven successfully or
// deleted, the consumer runs the held events, oldest first; one that fails
// for good becomes the key's new head. Events without a key promise no
// order and are never held. See docs/design.md, "Hold-key: per-key order
// through a dead letter".
func WithKeyOrder() HandlerOption { return func(r *registration) { r.holdKey = true } }

// keyHead is the dead letter a held key waits for.
type keyHead struct {
	id      int64 // its row in pulsebus.dead_letters
	offset  int64
	eventID string
}

// holdDecision is what holdFor decides for an event.
type holdDecision int

const (
	// runEvent: the key is not held, or the event comes before its head
	// (a replay re-reads it): run it.
	runEvent holdDecision = iota
	// holdEvent: store it behind its key's head.
	holdEvent
	// skipHead: the head's own message, re-read after a replay; it waits
	// in the dead letters.
	skipHead
)

// holdFor decides whether the handler runs it, holds it behind its key's
// head, or skips it as the head itself. Heads dead-lettered in the transaction
// in hand count (pendingHeads).
func (w *worker) holdFor(it item) (keyHead, holdDecision) {
	if len(it.msg.Key) == 0 || (len(w.held) == 0 && len(w.pendingHeads) == 0) {
		return keyHead{}, runEvent
	}
	head, ok := w.pendingHeads[string(it.msg.Key)]
	if !ok {
		head, ok = w.held[string(it.msg.Key)]
	}
	switch {
	case !ok || it.msg.Offset < head.offset:
		return keyHead{}, runEvent
	case it.msg.Offset == head.offset:
		return head, skipHead
	default:
		return head, holdEvent
	}
}

// pendingHead records a head dead-lettered in a transaction not yet committed;
// commitHeads makes it count once it is, dropHeads forgets it if not.
func (w *worker) pendingHead(it item, id int64) {
	if w.pendingHeads == nil {
		w.pendingHeads = map[string]keyHead{}
	}
	head := keyHead{id: id, offset: it.msg.Offset, eventID: it.env.ID}
	if it.bad != nil {
		head.eventID = headerValue(it.msg, envelope.HeaderID)
	}
	w.pendingHeads[string(it.msg.Key)] = head
}

// commitHeads makes the heads dead-lettered in a committed transaction hold their
// keys.
func (w *worker) commitHeads() {
	if len(w.pendingHeads) == 0 {
		return
	}
	if w.held == nil {
		w.held = map[string]keyHead{}
	}
	for key, head := range w.pendingHeads {
		if old, ok := w.held[key]; !ok || old.offset < head.offset {
			w.held[key] = head
		}
		w.log.Warn("key held: the handler holds the key's later events behind its dead letter until it is redriven or deleted",
			"key", key, "head_offset", head.offset, "head_event_id", head.eventID, "dead_letter_id", head.id)
	}
	clear(w.pendingHeads)
}

// dropHeads forgets the heads of a transaction that did not commit.
func (w *worker) dropHeads() { clear(w.pendingHeads) }

// hold stores the event behind its key's head. Storing an event twice (a
// plain handler's progress not yet saved when it restarted, a replay) keeps
// the first.
func (w *worker) hold(db dbtx, it item, head keyHead) error {
	keys := make([][]byte, len(it.msg.Headers))
	values := make([][]byte, len(it.msg.Headers))
	for i, h := range it.msg.Headers {
		keys[i] = []byte(h.Key)
		if keys[i] == nil {
			keys[i] = []byte{}
		}
		values[i] = h.Value
	}
	var eventID, eventType *string
	if it.bad == nil {
		id, typ := safeText(it.env.ID), safeText(it.env.Type)
		eventID, eventType = &id, &typ
	} else {
		if id := headerValue(it.msg, envelope.HeaderID); id != "" {
			id = safeText(id)
			eventID = &id
		}
		if t, ok := headerType(&it.msg); ok {
			s := safeText(string(t))
			eventType = &s
		}
	}
	var msgTime *time.Time
	if !it.msg.Time.IsZero() {
		msgTime = &it.msg.Time
	}
	_, err := db.Exec(w.workCtx, `INSERT INTO pulsebus.held_events
		(group_id, handler, topic, partition, kafka_offset, message_key, event_id, event_type,
		 message_header_keys, message_header_values, message_value, message_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (group_id, handler, topic, partition, kafka_offset) DO NOTHING`,
		w.key.group, w.key.handler, w.key.topic, w.key.partition, it.msg.Offset, it.msg.Key, eventID, eventType,
		keys, values, it.msg.Value, msgTime)
	if err != nil {
		return fmt.Errorf("hold %s/%d@%d for %s behind dead letter %d: %w",
			w.key.topic, w.key.partition, it.msg.Offset, w.key.handler, head.id, err)
	}
	return nil
}

// heldEvent reports an event stored behind its key's head.
func (w *worker) heldEvent(it item, head keyHead) {
	w.log.Debug("event held behind its key's dead letter", "offset", it.msg.Offset, "key", string(it.msg.Key),
		"head_offset", head.offset, "head_event_id", head.eventID, "dead_letter_id", head.id)
	w.c.cfg.Hooks.handled(HandledEvent{Handler: w.key.handler, Topic: it.msg.Topic, Partition: it.msg.Partition,
		Offset: it.msg.Offset, EventType: it.env.Type, EventTime: it.env.Time, Outcome: OutcomeHeld})
}

// loadHeld reads the partition's held keys for the handler when a session
// starts, and runs the held events whose head is gone (redriven or deleted
// since). A handler without WithKeyOrder holds nothing: it runs the events
// it held before it was switched back, and its heads become ordinary dead
// letters.
func (w *worker) loadHeld(ctx context.Context, cur *cursor) error {
	w.held = map[string]keyHead{}
	w.dropHeads()
	pool := w.c.cfg.Pool
	k := w.key
	if !w.h.holdKey {
		tag, err := pool.Exec(ctx, `UPDATE pulsebus.dead_letters SET holds_key = false
			WHERE group_id = $1 AND handler = $2 AND topic = $3 AND partition = $4 AND holds_key`,
			k.group, k.handler, k.topic, k.partition)
		if err != nil {
			return fmt.Errorf("release the keys of %s on %s/%d: %w", k.handler, k.topic, k.partition, err)
		}
		if tag.RowsAffected() > 0 {
			w.log.Warn("handler no longer holds keys: its dead letters hold no key any more, its held events run now",
				"heads", tag.RowsAffected())
		}
	} else {
		rows, err := pool.Query(ctx, `SELECT id, kafka_offset, coalesce(event_id, ''), message_key FROM pulsebus.dead_letters
			WHERE group_id = $1 AND handler = $2 AND topic = $3 AND partition = $4 AND holds_key
			ORDER BY kafka_offset`, k.group, k.handler, k.topic, k.partition)
		if err != nil {
			return fmt.Errorf("load the held keys of %s on %s/%d: %w", k.handler, k.topic, k.partition, err)
		}
		var head keyHead
		var key []byte
		_, err = pgx.ForEachRow(rows, []any{&head.id, &head.offset, &head.eventID, &key}, func() error {
			w.held[string(key)] = head // the latest, when a replay dead-lettered an earlier one too
			return nil
		})
		if err != nil {
			return fmt.Errorf("load the held keys of %s on %s/%d: %w", k.handler, k.topic, k.partition, err)
		}
	}
	rows, err := pool.Query(ctx, `SELECT DISTINCT message_key FROM pulsebus.held_events
		WHERE group_id = $1 AND handler = $2 AND topic = $3 AND partition = $4`, k.group, k.handler, k.topic, k.partition)
	if err != nil {
		return fmt.Errorf("load the held events of %s on %s/%d: %w", k.handler, k.topic, k.partition, err)
	}
	released, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return fmt.Errorf("load the held events of %s on %s/%d: %w", k.handler, k.topic, k.partition, err)
	}
	for _, key := range released {
		if _, held := w.held[string(key)]; held {
			continue
		}
		if err := w.release(ctx, cur, key); err != nil {
			return err
		}
	}
	return nil
}

// heldRow is one row of pulsebus.held_events.
type heldRow struct {
	id   int64
	item item
}

// releaseBatch is how many held events release reads at a time.
const releaseBatch = 100

// release runs the events held for key, whose head is gone, in Kafka
// order. Each is removed from pulsebus.held_events when it succeeds (for a
// transactional handler, in its transaction). One that fails for good is
// dead-lettered and becomes the key's new head: the rest stay held behind it.
func (w *worker) release(ctx context.Context, cur *cursor, key []byte) error {
	k := w.key
	w.log.Info("key released: running its held events in order", "key", string(key))
	n := 0
	for {
		rows, err := w.c.cfg.Pool.Query(ctx, `SELECT id, kafka_offset, message_header_keys, message_header_values,
			message_value, message_time FROM pulsebus.held_events
			WHERE group_id = $1 AND handler = $2 AND topic = $3 AND partition = $4 AND message_key = $5
			ORDER BY kafka_offset LIMIT $6`, k.group, k.handler, k.topic, k.partition, key, releaseBatch)
		if err != nil {
			return fmt.Errorf("read the held events of %s on %s/%d: %w", k.handler, k.topic, k.partition, err)
		}
		held, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (heldRow, error) {
			var h heldRow
			var hkeys, hvalues [][]byte
			var t *time.Time
			m := &h.item.msg
			if err := r.Scan(&h.id, &m.Offset, &hkeys, &hvalues, &m.Value, &t); err != nil {
				return h, err
			}
			m.Topic, m.Partition, m.Key = k.topic, k.partition, key
			if t != nil {
				m.Time = *t
			}
			if len(hkeys) != len(hvalues) {
				return h, fmt.Errorf("held event %d: %d header keys but %d values", h.id, len(hkeys), len(hvalues))
			}
			for i := range hkeys {
				m.Headers = append(m.Headers, kafka.Header{Key: string(hkeys[i]), Value: hvalues[i]})
			}
			return h, nil
		})
		if err != nil {
			return fmt.Errorf("read the held events of %s on %s/%d: %w", k.handler, k.topic, k.partition, err)
		}
		if len(held) == 0 {
			w.log.Info("key no longer held: its held events ran", "key", string(key), "events", n)
			delete(w.held, string(key))
			return nil
		}
		for _, h := range held {
			h.item.env, h.item.bad = w.c.cfg.Limits.FromMessage(h.item.msg)
			headed, err := w.releaseOne(ctx, cur, h)
			if err != nil {
				return err
			}
			n++
			if headed {
				return nil
			}
		}
	}
}

// releaseHeldSQL removes a held event inside the transaction that runs
// it, with its COMMIT; division_by_zero (isFenced) when the row is gone
// (another member ran it).
const releaseHeldSQL = `WITH gone AS (DELETE FROM pulsebus.held_events WHERE id = $1 RETURNING 1)
	SELECT 1 / count(*) FROM gone`

// releaseOne runs one released event; headed reports that it failed for
// good and now holds its key as the new head.
func (w *worker) releaseOne(ctx context.Context, cur *cursor, h heldRow) (headed bool, err error) {
	start := time.Now()
	it := h.item
	cause := it.bad
	attempts := 0
	if cause == nil {
		var fn func(context.Context) error
		if w.h.kind == kindPlain {
			fn = func(hctx context.Context) error {
				return safeCall(func() error { return w.h.run.Handle(withMessage(hctx, it.msg), it.env) })
			}
		} else {
			fn = func(hctx context.Context) error {
				return w.fencedTx(func(tx pgx.Tx) error { return w.runTx(hctx, tx, it) },
					"remove held event", releaseHeldSQL, []any{h.id})
			}
		}
		attempts, cause = w.retry(ctx, cur, start, fn)
		if errors.Is(cause, errStopped) || errors.Is(cause, errMoved) || isInfra(cause) {
			return false, cause
		}
		if cause == nil {
			if w.h.kind == kindPlain {
				if _, err := w.c.cfg.Pool.Exec(w.workCtx, `DELETE FROM pulsebus.held_events WHERE id = $1`, h.id); err != nil {
					return false, &infraError{op: "remove held event", err: err}
				}
			}
			w.progressed() // not an offset move, but progress: not a stall
			w.handled(it, attempts, time.Since(start))
			return false, nil
		}
	}
	err = w.fencedTx(func(tx pgx.Tx) error { return w.deadLetter(tx, it, cause, attempts, start) },
		"remove held event", releaseHeldSQL, []any{h.id})
	if err != nil {
		return false, err
	}
	w.progressed()
	w.deadLettered(it, cause, attempts, time.Since(start))
	_, headed = w.held[string(it.msg.Key)]
	return headed, nil
}
