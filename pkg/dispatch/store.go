package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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

// headerJSON is how a Kafka header is kept in dead_letters.message_headers,
// the readable copy of the headers: the value base64-encoded (encoding/json's
// []byte form), the key as text (see safeText). The raw keys and values are
// in message_header_keys and message_header_values.
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
	// holdsKey makes the row its key's head (see holdkey.go): the handler
	// holds the key's later events behind it.
	holdsKey bool
}

// insertDeadLetter stores a dead letter. Nothing in the message can make it
// fail: key, header keys and values and the value are stored as bytea, and
// the text columns derived from them (event type, the readable headers, the
// error) are made valid text first (safeText). Should PostgreSQL still
// refuse the row for what it holds (refusedForContent), it stores the
// message's position and the reason instead (message_stored false) rather
// than fail: a message that cannot be stored must not stop its partition.
// Other errors (a lost connection, a deadlock, a cancelled context) are
// returned, for the worker to retry. id is the row's id.
//
// Inside a transaction, the full row is written in a savepoint, so that
// its failure leaves the transaction usable for the fallback.
func insertDeadLetter(ctx context.Context, db dbtx, d deadLetterRow) (id int64, stored bool, err error) {
	keys := make([][]byte, len(d.msg.Headers))
	values := make([][]byte, len(d.msg.Headers))
	readable := make([]headerJSON, len(d.msg.Headers))
	for i, h := range d.msg.Headers {
		keys[i] = []byte(h.Key)
		if keys[i] == nil {
			keys[i] = []byte{} // a key is never NULL
		}
		values[i] = h.Value
		readable[i] = headerJSON{Key: safeText(h.Key), Value: h.Value}
	}
	hj, err := json.Marshal(readable)
	if err != nil {
		return 0, false, fmt.Errorf("encode headers: %w", err)
	}
	var eventType *string
	if d.eventType != nil {
		t := safeText(*d.eventType)
		eventType = &t
	}
	insert := func(db dbtx) error {
		return db.QueryRow(ctx, `INSERT INTO pulsebus.dead_letters
			(group_id, handler, topic, partition, kafka_offset, event_id, event_type, message_key, message_headers,
			 message_header_keys, message_header_values, message_value, error, attempts, first_failed_at, last_failed_at,
			 holds_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
			ON CONFLICT (group_id, handler, topic, partition, kafka_offset) DO UPDATE
			SET error = EXCLUDED.error, attempts = pulsebus.dead_letters.attempts + EXCLUDED.attempts,
			    last_failed_at = EXCLUDED.last_failed_at,
			    holds_key = pulsebus.dead_letters.holds_key OR EXCLUDED.holds_key
			RETURNING id`,
			d.key.group, d.key.handler, d.key.topic, d.key.partition, d.offset, d.eventID, eventType,
			d.msg.Key, hj, keys, values, d.msg.Value, errText(d.err), d.attempts, d.first, d.last, d.holdsKey).Scan(&id)
	}
	if tx, inTx := db.(pgx.Tx); inTx {
		err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { return insert(sp) }) // a savepoint
	} else {
		err = insert(db) // one statement, atomic on its own
	}
	if err == nil {
		return id, true, nil
	}
	if !refusedForContent(err) {
		return 0, false, fmt.Errorf("dead-letter %s/%d@%d for %s: %w", d.key.topic, d.key.partition, d.offset, d.key.handler, err)
	}
	reason := fmt.Errorf("the message could not be stored (%w); it failed with: %w", err, d.err)
	ferr := db.QueryRow(ctx, `INSERT INTO pulsebus.dead_letters
		(group_id, handler, topic, partition, kafka_offset, error, attempts, first_failed_at, last_failed_at, message_stored,
		 message_key, holds_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false, $10, $11)
		ON CONFLICT (group_id, handler, topic, partition, kafka_offset) DO UPDATE
		SET error = EXCLUDED.error, attempts = pulsebus.dead_letters.attempts + EXCLUDED.attempts,
		    last_failed_at = EXCLUDED.last_failed_at,
		    holds_key = pulsebus.dead_letters.holds_key OR EXCLUDED.holds_key
		RETURNING id`,
		d.key.group, d.key.handler, d.key.topic, d.key.partition, d.offset, errText(reason), d.attempts, d.first, d.last,
		headKey(d), d.holdsKey).Scan(&id)
	if ferr != nil {
		return 0, false, fmt.Errorf("dead-letter %s/%d@%d for %s: %w (storing only its position failed too: %w)",
			d.key.topic, d.key.partition, d.offset, d.key.handler, err, ferr)
	}
	return id, false, nil
}

// headKey is the key a position-only dead letter keeps: a head's, so that
// its key stays held (a key is bytes, which PostgreSQL never refuses);
// none for the others, which keep nothing of their message.
func headKey(d deadLetterRow) []byte {
	if d.holdsKey {
		return d.msg.Key
	}
	return nil
}

// refusedForContent reports whether PostgreSQL refused a statement for the
// values it carried, which no retry changes: a data exception (SQLSTATE
// class 22, e.g. invalid text), an integrity constraint violation (23) or a
// program limit exceeded (54, e.g. a row too large).
func refusedForContent(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

// safeText returns s as PostgreSQL accepts it in a text column: invalid
// UTF-8 and NUL bytes (which no text value can hold) become U+FFFD.
func safeText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// errText is err's message for an error column: valid text (safeText), at
// most maxErrText bytes, cut between characters.
func errText(err error) string {
	s := safeText(err.Error())
	if len(s) > maxErrText {
		n := maxErrText
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "..."
	}
	return s
}

// maxErrText bounds the error text kept in a dead letter.
const maxErrText = 4000
