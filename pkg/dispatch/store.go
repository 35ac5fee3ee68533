package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"
)

// dbtx is what the store needs of a pool, connection or transaction.
type dbtx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// offsetKey names one handler offset row.
type offsetKey struct {
	group, handler, topic string
	partition             int
}

// cursor is a handler's position on a partition: next is the next offset to
// handle (in memory), durable and version the row as last read or written.
//
// Every write is fenced: it applies only while the row's next_offset is
// still durable, so a replay or another member's write is never
// overwritten; the worker reloads instead. Transactional handlers fence on
// next_offset alone: each of their commits moves the row from one offset
// to a later one, so two commits of the same step exclude each other (the
// second one's UPDATE waits for the first's row lock, re-reads the row
// after the first commits and matches nothing). Plain handlers also fence on the version (updated_at), because
// their progress is in memory until flushed: a replay that rewinds the row
// to the very offset they last saved must not be overwritten by their
// flush.
type cursor struct {
	next    int64
	durable int64
	version time.Time
}

// errMoved reports that the offset row changed under the worker (a replay,
// or another member took the partition).
var errMoved = errors.New("dispatch: handler offset changed by someone else")

func loadOffset(ctx context.Context, db dbtx, k offsetKey) (cursor, bool, error) {
	var c cursor
	err := db.QueryRow(ctx, `SELECT next_offset, updated_at FROM pulsebus.handler_offsets
		WHERE group_id = $1 AND handler = $2 AND topic = $3 AND partition = $4`,
		k.group, k.handler, k.topic, k.partition).Scan(&c.durable, &c.version)
	if errors.Is(err, pgx.ErrNoRows) {
		return cursor{}, false, nil
	}
	if err != nil {
		return cursor{}, false, fmt.Errorf("load offset of %s on %s/%d: %w", k.handler, k.topic, k.partition, err)
	}
	c.next = c.durable
	return c, true, nil
}

func insertOffset(ctx context.Context, db dbtx, k offsetKey, next int64) error {
	_, err := db.Exec(ctx, `INSERT INTO pulsebus.handler_offsets (group_id, handler, topic, partition, next_offset)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, k.group, k.handler, k.topic, k.partition, next)
	if err != nil {
		return fmt.Errorf("insert offset of %s on %s/%d: %w", k.handler, k.topic, k.partition, err)
	}
	return nil
}

// advanceOffset moves the row from c's durable state to next, fenced on
// next_offset and, with versioned, on updated_at (see cursor). It returns
// errMoved when the row is no longer as c saw it.
func advanceOffset(ctx context.Context, db dbtx, k offsetKey, c *cursor, next int64, versioned bool) error {
	var ver time.Time
	err := db.QueryRow(ctx, `UPDATE pulsebus.handler_offsets SET next_offset = $5, updated_at = clock_timestamp()
		WHERE group_id = $1 AND handler = $2 AND topic = $3 AND partition = $4 AND next_offset = $6
		  AND (NOT $8 OR updated_at = $7)
		RETURNING updated_at`, k.group, k.handler, k.topic, k.partition, next, c.durable, c.version, versioned).Scan(&ver)
	if errors.Is(err, pgx.ErrNoRows) {
		return errMoved
	}
	if err != nil {
		return fmt.Errorf("advance offset of %s on %s/%d to %d: %w", k.handler, k.topic, k.partition, next, err)
	}
	c.durable, c.version = next, ver
	return nil
}

// fenceCommitSQL moves a handler's offset row from $6 to $5 inside the
// handler's transaction, just before COMMIT and in the same round trip
// (see worker.inTx), or on its own when the handler wrote nothing. When the row is not at $6 the division fails with
// division_by_zero (isFenced): the transaction is aborted and the COMMIT
// queued behind it does not run.
const fenceCommitSQL = `WITH moved AS (UPDATE pulsebus.handler_offsets SET next_offset = $5, updated_at = clock_timestamp()
	WHERE group_id = $1 AND handler = $2 AND topic = $3 AND partition = $4 AND next_offset = $6 RETURNING 1)
	SELECT 1 / count(*) FROM moved`

// txSetup is the statement that follows BEGIN in a handler transaction: it
// sets its idle timeout (Config.TxIdleTimeout); none when that is off.
func txSetup(idle time.Duration) string {
	if idle < 0 {
		return ""
	}
	return "SET LOCAL idle_in_transaction_session_timeout = " + strconv.FormatInt(max(1, idle.Milliseconds()), 10)
}

// isFenced reports whether err, from fenceCommitSQL, says the row had moved:
// division_by_zero, or a serialization failure when the database's default
// isolation level is above read committed.
func isFenced(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "22012" || pe.Code == "40001")
}

// headerJSON is how a Kafka header is kept in dead_letters.message_headers:
// the value base64-encoded (encoding/json's []byte form), so it is kept
// byte for byte.
type headerJSON struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

type deadLetterRow struct {
	key       offsetKey
	offset    int64
	eventID   *string
	eventType *string
	msg       kafka.Message
	err       error
	attempts  int
	first     time.Time
	last      time.Time
}

func insertDeadLetter(ctx context.Context, db dbtx, d deadLetterRow) error {
	hs := make([]headerJSON, len(d.msg.Headers))
	for i, h := range d.msg.Headers {
		hs[i] = headerJSON{Key: h.Key, Value: h.Value}
	}
	hj, err := json.Marshal(hs)
	if err != nil {
		return fmt.Errorf("encode headers: %w", err)
	}
	_, err = db.Exec(ctx, `INSERT INTO pulsebus.dead_letters
		(group_id, handler, topic, partition, kafka_offset, event_id, event_type, message_key, message_headers,
		 message_value, error, attempts, first_failed_at, last_failed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (group_id, handler, topic, partition, kafka_offset) DO UPDATE
		SET error = EXCLUDED.error, attempts = pulsebus.dead_letters.attempts + EXCLUDED.attempts,
		    last_failed_at = EXCLUDED.last_failed_at`,
		d.key.group, d.key.handler, d.key.topic, d.key.partition, d.offset, d.eventID, d.eventType,
		d.msg.Key, hj, d.msg.Value, truncateErr(d.err), d.attempts, d.first, d.last)
	if err != nil {
		return fmt.Errorf("park %s/%d@%d for %s: %w", d.key.topic, d.key.partition, d.offset, d.key.handler, err)
	}
	return nil
}

func truncateErr(err error) string {
	const max = 4000
	s := err.Error()
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
