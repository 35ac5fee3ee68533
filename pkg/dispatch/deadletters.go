package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// DeadLetter is one dead letter.
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

// DeadLetterFilter selects the dead letters of a group, or the events held
// behind them, for the dead-letter operations of [Admin].
type DeadLetterFilter struct {
	// Group is the consumer group. Required, except by Admin.Redrive, where
	// it defaults to (and must be) the consumer's.
	Group string
	// Handler, when set, selects only that handler's.
	Handler string
	// ID, when > 0, selects only that dead letter (for ListHeldEvents: the
	// events held behind it).
	ID int64
	// Limit caps the rows a listing returns. Defaults to 100. Redrive and
	// DeleteDeadLetters take every selected row.
	Limit int
}

func (f DeadLetterFilter) limit() int {
	if f.Limit <= 0 {
		return 100
	}
	return f.Limit
}

const deadLetterColumns = `id, group_id, handler, topic, partition, kafka_offset, event_id, event_type, message_key,
	message_headers, message_header_keys, message_header_values, message_value, error, attempts, first_failed_at,
	last_failed_at, message_stored, holds_key,
	CASE WHEN holds_key THEN (SELECT count(*) FROM pulsebus.held_events h
		WHERE h.group_id = dead_letters.group_id AND h.handler = dead_letters.handler AND h.topic = dead_letters.topic
		  AND h.partition = dead_letters.partition AND h.message_key = dead_letters.message_key) ELSE 0 END`

// ListDeadLetters returns the selected dead letters, oldest first.
func (a *Admin) ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	if err := a.need("ListDeadLetters", false); err != nil {
		return nil, err
	}
	rows, err := a.Pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM pulsebus.dead_letters
		WHERE group_id = $1 AND ($2 = '' OR handler = $2) AND ($3 <= 0 OR id = $3)
		ORDER BY id LIMIT $4`, f.Group, f.Handler, f.ID, f.limit())
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

// Redrive runs the handler of a.Consumer once more on each selected dead
// letter (one by ID, or all of a handler's) of the consumer's group and
// deletes the row on success (for a transactional handler, in the
// handler's transaction). Each row is locked while its handler runs, so
// concurrent redrives never run a handler twice on it. On failure the row
// stays, with the new error and one more attempt. A row whose handler is
// not registered in the consumer, or that holds only the message's
// position (DeadLetter.MessageStored false), counts as failed and is left
// untouched. Offsets are not touched. The consumer need not run.
//
// When a redriven row is its key's head (DeadLetter.HoldsKey), the events
// held behind it are released: the commit notifies the group's running
// consumers, and the worker that owns the partition runs them in Kafka
// order (at its next start if none runs now).
func (a *Admin) Redrive(ctx context.Context, f DeadLetterFilter) (RedriveResult, error) {
	var res RedriveResult
	if err := a.need("Redrive", false); err != nil {
		return res, err
	}
	c := a.Consumer
	switch {
	case c == nil:
		return res, errors.New("dispatch: Admin.Redrive runs the handlers of a consumer: it needs Admin.Consumer")
	case f.Group != "" && f.Group != c.cfg.Group:
		return res, fmt.Errorf("redrive: group %s is not the consumer's (%s)", f.Group, c.cfg.Group)
	case f.ID <= 0 && f.Handler == "":
		return res, errors.New("redrive: an id or a handler is required")
	}
	f.Group = c.cfg.Group
	var lastID int64
	for {
		dls, err := a.deadLettersAfter(ctx, f, lastID)
		if err != nil {
			return res, fmt.Errorf("redrive: %w", err)
		}
		if len(dls) == 0 {
			if f.ID > 0 && res.Redriven+res.Failed == 0 {
				return res, fmt.Errorf("redrive: no dead letter %d in group %s", f.ID, f.Group)
			}
			return res, nil
		}
		for _, d := range dls {
			lastID = d.ID
			if err := a.redriveCounted(ctx, d, &res); err != nil {
				return res, err
			}
		}
	}
}

// deadLettersAfter reads the next rows of f after id lastID.
func (a *Admin) deadLettersAfter(ctx context.Context, f DeadLetterFilter, lastID int64) ([]DeadLetter, error) {
	rows, err := a.Pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM pulsebus.dead_letters
		WHERE group_id = $1 AND ($2 = '' OR handler = $2) AND ($3 <= 0 OR id = $3) AND id > $4
		ORDER BY id LIMIT 100`, f.Group, f.Handler, f.ID, lastID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanDeadLetter)
}

// redriveCounted redrives d and counts the outcome in res, recording a
// handler's failure on the row. It returns an error only when the redrive
// cannot go on.
func (a *Admin) redriveCounted(ctx context.Context, d DeadLetter, res *RedriveResult) error {
	released, err := a.Consumer.redriveOne(ctx, a.Pool, d)
	switch {
	case err == nil:
		res.Redriven++
		if released {
			res.Released++
		}
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, errRedriveBusy):
		res.Skipped++
		return nil
	}
	res.Failed++
	res.Errors = append(res.Errors, fmt.Sprintf("id %d: %v", d.ID, err))
	if errors.Is(err, errNotRegistered) || errors.Is(err, errNotStored) {
		return nil
	}
	if _, uerr := a.Pool.Exec(ctx, `UPDATE pulsebus.dead_letters
		SET error = $2, attempts = attempts + 1, last_failed_at = clock_timestamp() WHERE id = $1`,
		d.ID, errText(err)); uerr != nil {
		return fmt.Errorf("redrive: record failure of %d: %w", d.ID, uerr)
	}
	return nil
}

// redriveOne runs d's handler on it and deletes it on success; released
// reports that d held its key.
func (c *Consumer) redriveOne(ctx context.Context, pool *pgxpool.Pool, d DeadLetter) (released bool, err error) {
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
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
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
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(payload)); err != nil {
		return fmt.Errorf("notify the consumers of %s: %w", handler, err)
	}
	return nil
}

// DeleteDeadLetters deletes the selected dead letters (one by ID, or all
// of a handler's) without running their handler and returns them (without
// their messages), oldest first. Deleting a key's head releases the events
// held behind it, as a successful redrive does: the running consumers are
// notified, and the partition's worker runs them in Kafka order.
func (a *Admin) DeleteDeadLetters(ctx context.Context, p DeadLetterFilter) ([]DeadLetter, error) {
	if err := a.need("DeleteDeadLetters", false); err != nil {
		return nil, err
	}
	if (p.ID <= 0) == (p.Handler == "") {
		return nil, errors.New("delete dead letters: give an id or a handler, not both")
	}
	var out []DeadLetter
	err := pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) error {
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

// ListHeldEvents returns the selected held events by handler, partition,
// key and Kafka order, each with the head it waits for.
func (a *Admin) ListHeldEvents(ctx context.Context, p DeadLetterFilter) ([]HeldEvent, error) {
	if err := a.need("ListHeldEvents", false); err != nil {
		return nil, err
	}
	rows, err := a.Pool.Query(ctx, `SELECT * FROM (
		SELECT e.id, e.group_id, e.handler, e.topic, e.partition, e.kafka_offset, e.message_key,
			e.event_id, e.event_type, e.held_at,
			(SELECT max(d.id) FROM pulsebus.dead_letters d
			  WHERE d.group_id = e.group_id AND d.handler = e.handler AND d.topic = e.topic
			    AND d.partition = e.partition AND d.message_key = e.message_key AND d.holds_key) AS head_id
		  FROM pulsebus.held_events e
		 WHERE e.group_id = $1 AND ($2 = '' OR e.handler = $2)) held
		 WHERE $3 <= 0 OR head_id = $3
		 ORDER BY handler, topic, partition, message_key, kafka_offset LIMIT $4`, p.Group, p.Handler, p.ID, p.limit())
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
