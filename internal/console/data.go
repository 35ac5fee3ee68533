package console

// This file is the console's only access to PostgreSQL: every read and
// every action of the pages goes through the Data interface, implemented on
// the pulsebus schema by pgData. Actions that already exist elsewhere
// (requeueing a parked row, replaying a handler, redriving a dead letter)
// are not repeated here: the binaries pass them in (see Config).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CountCap bounds every count the console takes on a page that refreshes
// itself: a count at the cap is shown as "10000+", so a page load never
// scans a big table to the end. Totals beyond it come from the planner's
// estimate (pg_class.reltuples), refreshed by autovacuum.
const CountCap = 10_000

// Data is what the console reads and changes in PostgreSQL.
type Data interface {
	Overview(ctx context.Context) (Overview, error)
	// WaitingHead returns the oldest waiting outbox rows, at most limit.
	WaitingHead(ctx context.Context, limit int) ([]WaitingRow, error)
	// Parked returns the parked rows, oldest first, at most limit, and how
	// many there are (capped at CountCap).
	Parked(ctx context.Context, limit int) ([]ParkedRow, Count, error)
	// ParkedRow returns one parked row with its payload; ok is false when
	// there is none with that id.
	ParkedRow(ctx context.Context, id int64) (row ParkedRow, payload []byte, ok bool, err error)
	// Offsets returns every handler offset, by group, handler, topic and
	// partition.
	Offsets(ctx context.Context) ([]OffsetRow, error)
	// DeadLetters returns the dead letters f selects, oldest first.
	DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetterRow, error)
	// DeadLetter returns one dead letter with its message; ok is false when
	// there is none with that id.
	DeadLetter(ctx context.Context, id int64) (d DeadLetterDetail, ok bool, err error)
	// DeleteDeadLetter deletes one dead letter and returns it; ok is false
	// when there was none with that id.
	DeleteDeadLetter(ctx context.Context, id int64) (d DeadLetterRow, ok bool, err error)
	// CountDeadLetters counts the dead letters f selects (capped) and
	// returns the largest id among them (0 when none).
	CountDeadLetters(ctx context.Context, f DeadLetterFilter) (n Count, maxID int64, err error)
	// DeleteDeadLetters deletes the dead letters f selects whose id is at
	// most maxID, and returns how many.
	DeleteDeadLetters(ctx context.Context, f DeadLetterFilter, maxID int64) (int64, error)
	// Lookup says where the event with id is: waiting, parked or
	// dead-lettered (for which handlers).
	Lookup(ctx context.Context, id uuid.UUID) (EventLocations, error)
}

// Count is a row count taken with a bound.
type Count struct {
	// N is the count, at most CountCap.
	N int64
	// Capped is true when there are CountCap rows or more.
	Capped bool
	// Estimate is the planner's estimate of the table's rows, for a capped
	// count (0 otherwise).
	Estimate int64
}

// Leader is one relay group's leader lease row.
type Leader struct {
	Name       string
	LeaderID   string
	Term       int64
	AcquiredAt time.Time
	ExpiresAt  time.Time
	// Held is true while the lease has not expired.
	Held bool
}

// TopicBacklog is the waiting rows of one topic among the CountCap oldest
// rows of the outbox.
type TopicBacklog struct {
	Topic  string
	Rows   int64
	Oldest time.Time
	// The topic's head row: the next one the relay publishes for it.
	HeadID       int64
	HeadAttempts int
	HeadError    string
}

// Overview is the overview page's data.
type Overview struct {
	Leaders []Leader
	// Backlog counts the waiting rows per topic among the CountCap oldest;
	// Waiting counts them all (capped).
	Backlog []TopicBacklog
	Waiting Count
	Parked  Count
	// Held lists the keys whose rows wait behind a parked row of theirs
	// (relay --on-refused hold-key), at most MaxHeldKeys; read only while
	// rows are parked.
	Held        []HeldKey
	DeadLetters Count
	Handlers    []HandlerSummary
	// DBTime is the database's clock, against which ages are measured.
	DBTime time.Time
}

// HeldKey is one topic and key whose later rows wait in the outbox behind
// a parked row.
type HeldKey struct {
	Topic string `json:"topic"`
	Key   string `json:"key"`
	// HeadID is the parked row they wait for (relay parked list shows it).
	HeadID int64 `json:"head_id"`
	// Rows is how many outbox rows wait behind it.
	Rows int64 `json:"rows"`
}

// MaxHeldKeys bounds the held keys [ReadHeldKeys] lists.
const MaxHeldKeys = 100

// heldKeysSQL lists the keys held behind their earliest parked row, with
// how many outbox rows wait behind it: one probe of outbox_parked_held_keys
// per parked key and a scan of the outbox rows of those keys.
const heldKeysSQL = `
SELECT p.topic, p.key, p.id, count(*)
  FROM (SELECT DISTINCT ON (topic, key) topic, key, id FROM pulsebus.outbox_parked
         WHERE key <> '' ORDER BY topic, key, id) AS p
  JOIN pulsebus.outbox o ON o.topic = p.topic AND o.key = p.key AND o.id > p.id
 GROUP BY p.topic, p.key, p.id
 ORDER BY p.id
 LIMIT $1`

// ReadHeldKeys lists the keys whose rows wait behind a parked row (relay
// --on-refused hold-key), oldest parked row first, at most MaxHeldKeys.
func ReadHeldKeys(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) ([]HeldKey, error) {
	rows, err := db.Query(ctx, heldKeysSQL, MaxHeldKeys)
	if err != nil {
		return nil, fmt.Errorf("read held keys: %w", err)
	}
	held, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (HeldKey, error) {
		var h HeldKey
		return h, r.Scan(&h.Topic, &h.Key, &h.HeadID, &h.Rows)
	})
	if err != nil {
		return nil, fmt.Errorf("read held keys: %w", err)
	}
	return held, nil
}

// HandlerSummary is one handler of one group: its offsets and dead letters.
type HandlerSummary struct {
	Group       string
	Handler     string
	Offsets     []OffsetRow
	DeadLetters Count
	// LastUpdated is the newest offset update: when the handler last
	// handled (or skipped) an event, as saved.
	LastUpdated time.Time
}

// WaitingRow is a row of pulsebus.outbox.
type WaitingRow struct {
	ID        int64
	EventID   uuid.UUID
	Topic     string
	Key       string
	Type      string
	CreatedAt time.Time
	Attempts  int
	LastError string
}

// ParkedRow is a row of pulsebus.outbox_parked, without its payload.
type ParkedRow struct {
	ID           int64
	EventID      uuid.UUID
	Topic        string
	Key          string
	Type         string
	Source       string
	ContentType  string
	CreatedAt    time.Time
	ParkedAt     time.Time
	Attempts     int
	Error        string
	PayloadBytes int
}

// OffsetRow is a row of pulsebus.handler_offsets.
type OffsetRow struct {
	Group      string
	Handler    string
	Topic      string
	Partition  int
	NextOffset int64
	UpdatedAt  time.Time
}

// DeadLetterFilter selects dead letters; empty fields select all.
type DeadLetterFilter struct {
	Group   string
	Handler string
	// ErrorText matches errors containing it, ignoring case.
	ErrorText string
	// AfterID pages: only ids above it.
	AfterID int64
	Limit   int
}

// DeadLetterRow is a row of pulsebus.dead_letters without the message.
type DeadLetterRow struct {
	ID            int64
	Group         string
	Handler       string
	Topic         string
	Partition     int
	Offset        int64
	EventID       string
	EventType     string
	Error         string
	Attempts      int
	FirstFailedAt time.Time
	LastFailedAt  time.Time
	ValueBytes    int
}

// Header is one Kafka message header.
type Header struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// DeadLetterDetail is a dead letter with its message.
type DeadLetterDetail struct {
	DeadLetterRow
	Key     []byte
	Headers []Header
	Value   []byte
}

// EventLocations is where an event is.
type EventLocations struct {
	Waiting     []WaitingRow
	Parked      []ParkedRow
	DeadLetters []DeadLetterRow
}

// pgData is Data on the pulsebus schema.
type pgData struct{ pool *pgxpool.Pool }

// NewData returns Data reading the pulsebus schema through pool.
func NewData(pool *pgxpool.Pool) Data { return pgData{pool: pool} }

// countCapped counts the rows of from up to CountCap, and takes table's
// estimate when there are more.
func (d pgData) countCapped(ctx context.Context, table, from string, args ...any) (Count, error) {
	var c Count
	err := d.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+from+` LIMIT `+fmt.Sprint(CountCap+1)+`) capped`, args...).Scan(&c.N)
	if err != nil {
		return c, fmt.Errorf("count %s: %w", table, err)
	}
	if c.N > CountCap {
		c.N, c.Capped = CountCap, true
		err = d.pool.QueryRow(ctx, `SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::regclass`, table).Scan(&c.Estimate)
		if err != nil {
			return c, fmt.Errorf("estimate rows of %s: %w", table, err)
		}
	}
	return c, nil
}

func (d pgData) Overview(ctx context.Context) (Overview, error) {
	var o Overview
	if err := d.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&o.DBTime); err != nil {
		return o, fmt.Errorf("overview: %w", err)
	}
	rows, err := d.pool.Query(ctx, `SELECT name, leader_id, term, acquired_at, expires_at, expires_at > clock_timestamp()
		FROM pulsebus.relay_leader ORDER BY name`)
	if err != nil {
		return o, fmt.Errorf("relay leaders: %w", err)
	}
	o.Leaders, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Leader, error) {
		var l Leader
		return l, r.Scan(&l.Name, &l.LeaderID, &l.Term, &l.AcquiredAt, &l.ExpiresAt, &l.Held)
	})
	if err != nil {
		return o, fmt.Errorf("relay leaders: %w", err)
	}
	// The CountCap oldest rows, by the primary key: per topic, how many and
	// the oldest (hashed, not sorted: a sort of 10,000 topic names by
	// collation costs more than everything else on the page), then the
	// head row's attempts and error by id.
	rows, err = d.pool.Query(ctx, `
		WITH head AS (
			SELECT id, topic, created_at FROM pulsebus.outbox ORDER BY id LIMIT $1
		), per_topic AS (
			SELECT topic, count(*) AS n, min(created_at) AS oldest, min(id) AS head_id FROM head GROUP BY topic
		)
		SELECT p.topic, p.n, p.oldest, p.head_id, o.attempts, coalesce(o.last_error, '')
		  FROM per_topic p JOIN pulsebus.outbox o ON o.id = p.head_id
		 ORDER BY p.oldest, p.head_id`, CountCap)
	if err != nil {
		return o, fmt.Errorf("outbox backlog: %w", err)
	}
	o.Backlog, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (TopicBacklog, error) {
		var b TopicBacklog
		return b, r.Scan(&b.Topic, &b.Rows, &b.Oldest, &b.HeadID, &b.HeadAttempts, &b.HeadError)
	})
	if err != nil {
		return o, fmt.Errorf("outbox backlog: %w", err)
	}
	var sampled int64
	for _, b := range o.Backlog {
		sampled += b.Rows
	}
	o.Waiting = Count{N: sampled}
	if sampled == CountCap { // maybe more: count them, bounded

		if o.Waiting, err = d.countCapped(ctx, "pulsebus.outbox", "pulsebus.outbox"); err != nil {
			return o, err
		}
	}
	if o.Parked, err = d.countCapped(ctx, "pulsebus.outbox_parked", "pulsebus.outbox_parked"); err != nil {
		return o, err
	}
	if o.Parked.N > 0 && o.Waiting.N > 0 {
		if o.Held, err = ReadHeldKeys(ctx, d.pool); err != nil {
			return o, err
		}
	}
	if o.DeadLetters, err = d.countCapped(ctx, "pulsebus.dead_letters", "pulsebus.dead_letters"); err != nil {
		return o, err
	}
	offsets, err := d.Offsets(ctx)
	if err != nil {
		return o, err
	}
	// Dead letters per handler, each count bounded and served by the
	// (group_id, handler, ...) unique index.
	rows, err = d.pool.Query(ctx, `
		SELECT h.group_id, h.handler, c.n
		  FROM (SELECT DISTINCT group_id, handler FROM pulsebus.handler_offsets) h
		  CROSS JOIN LATERAL (
			SELECT count(*) AS n FROM (
				SELECT 1 FROM pulsebus.dead_letters d WHERE d.group_id = h.group_id AND d.handler = h.handler LIMIT $1
			) capped
		  ) c`, CountCap+1)
	if err != nil {
		return o, fmt.Errorf("dead letters per handler: %w", err)
	}
	type handlerKey struct{ group, handler string }
	dead := map[handlerKey]int64{}
	var k handlerKey
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&k.group, &k.handler, &n}, func() error {
		dead[k] = n
		return nil
	})
	if err != nil {
		return o, fmt.Errorf("dead letters per handler: %w", err)
	}
	for _, off := range offsets {
		last := len(o.Handlers) - 1
		if last < 0 || o.Handlers[last].Group != off.Group || o.Handlers[last].Handler != off.Handler {
			n := dead[handlerKey{off.Group, off.Handler}]
			o.Handlers = append(o.Handlers, HandlerSummary{Group: off.Group, Handler: off.Handler,
				DeadLetters: Count{N: min(n, CountCap), Capped: n > CountCap}})
			last++
		}
		h := &o.Handlers[last]
		h.Offsets = append(h.Offsets, off)
		if off.UpdatedAt.After(h.LastUpdated) {
			h.LastUpdated = off.UpdatedAt
		}
	}
	return o, nil
}

const waitingColumns = `id, event_id, topic, key, type, created_at, attempts, coalesce(last_error, '')`

func scanWaiting(r pgx.CollectableRow) (WaitingRow, error) {
	var w WaitingRow
	return w, r.Scan(&w.ID, &w.EventID, &w.Topic, &w.Key, &w.Type, &w.CreatedAt, &w.Attempts, &w.LastError)
}

func (d pgData) WaitingHead(ctx context.Context, limit int) ([]WaitingRow, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+waitingColumns+` FROM pulsebus.outbox ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("waiting rows: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanWaiting)
	if err != nil {
		return nil, fmt.Errorf("waiting rows: %w", err)
	}
	return out, nil
}

const parkedColumns = `id, event_id, topic, key, type, source, content_type, created_at, parked_at, attempts, error, octet_length(payload)`

func scanParked(r pgx.CollectableRow) (ParkedRow, error) {
	var p ParkedRow
	return p, r.Scan(&p.ID, &p.EventID, &p.Topic, &p.Key, &p.Type, &p.Source, &p.ContentType, &p.CreatedAt, &p.ParkedAt,
		&p.Attempts, &p.Error, &p.PayloadBytes)
}

func (d pgData) Parked(ctx context.Context, limit int) ([]ParkedRow, Count, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+parkedColumns+` FROM pulsebus.outbox_parked ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, Count{}, fmt.Errorf("parked rows: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanParked)
	if err != nil {
		return nil, Count{}, fmt.Errorf("parked rows: %w", err)
	}
	n, err := d.countCapped(ctx, "pulsebus.outbox_parked", "pulsebus.outbox_parked")
	return out, n, err
}

func (d pgData) ParkedRow(ctx context.Context, id int64) (ParkedRow, []byte, bool, error) {
	var payload []byte
	rows, err := d.pool.Query(ctx, `SELECT `+parkedColumns+`, payload FROM pulsebus.outbox_parked WHERE id = $1`, id)
	if err != nil {
		return ParkedRow{}, nil, false, fmt.Errorf("parked row %d: %w", id, err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, func(r pgx.CollectableRow) (ParkedRow, error) {
		var p ParkedRow
		return p, r.Scan(&p.ID, &p.EventID, &p.Topic, &p.Key, &p.Type, &p.Source, &p.ContentType, &p.CreatedAt, &p.ParkedAt,
			&p.Attempts, &p.Error, &p.PayloadBytes, &payload)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return ParkedRow{}, nil, false, nil
	}
	if err != nil {
		return ParkedRow{}, nil, false, fmt.Errorf("parked row %d: %w", id, err)
	}
	return p, payload, true, nil
}

func (d pgData) Offsets(ctx context.Context) ([]OffsetRow, error) {
	rows, err := d.pool.Query(ctx, `SELECT group_id, handler, topic, partition, next_offset, updated_at
		FROM pulsebus.handler_offsets ORDER BY group_id, handler, topic, partition`)
	if err != nil {
		return nil, fmt.Errorf("handler offsets: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OffsetRow, error) {
		var o OffsetRow
		return o, r.Scan(&o.Group, &o.Handler, &o.Topic, &o.Partition, &o.NextOffset, &o.UpdatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("handler offsets: %w", err)
	}
	return out, nil
}

const deadLetterColumns = `id, group_id, handler, topic, partition, kafka_offset, coalesce(event_id::text, ''),
	coalesce(event_type, ''), error, attempts, first_failed_at, last_failed_at, coalesce(octet_length(message_value), 0)`

func scanDeadLetter(r pgx.CollectableRow, extra ...any) (DeadLetterRow, error) {
	var d DeadLetterRow
	return d, r.Scan(append([]any{&d.ID, &d.Group, &d.Handler, &d.Topic, &d.Partition, &d.Offset, &d.EventID, &d.EventType,
		&d.Error, &d.Attempts, &d.FirstFailedAt, &d.LastFailedAt, &d.ValueBytes}, extra...)...)
}

// deadLetterWhere is DeadLetterFilter as SQL: $1 group, $2 handler, $3
// error text, $4 after id (an empty string or 0 selects any).
const deadLetterWhere = `($1 = '' OR group_id = $1) AND ($2 = '' OR handler = $2)
	AND ($3 = '' OR strpos(lower(error), lower($3)) > 0) AND id > $4`

func (f DeadLetterFilter) args() []any { return []any{f.Group, f.Handler, f.ErrorText, f.AfterID} }

func (d pgData) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetterRow, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := d.pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM pulsebus.dead_letters
		WHERE `+deadLetterWhere+` ORDER BY id LIMIT $5`, append(f.args(), f.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetterRow, error) { return scanDeadLetter(r) })
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

func (d pgData) CountDeadLetters(ctx context.Context, f DeadLetterFilter) (Count, int64, error) {
	n, err := d.countCapped(ctx, "pulsebus.dead_letters", `pulsebus.dead_letters WHERE `+deadLetterWhere, f.args()...)
	if err != nil {
		return n, 0, err
	}
	var maxID int64
	err = d.pool.QueryRow(ctx, `SELECT coalesce((SELECT id FROM pulsebus.dead_letters WHERE `+deadLetterWhere+`
		ORDER BY id DESC LIMIT 1), 0)`, f.args()...).Scan(&maxID)
	if err != nil {
		return n, 0, fmt.Errorf("dead letters: %w", err)
	}
	return n, maxID, nil
}

func (d pgData) DeleteDeadLetters(ctx context.Context, f DeadLetterFilter, maxID int64) (int64, error) {
	tag, err := d.pool.Exec(ctx, `DELETE FROM pulsebus.dead_letters WHERE `+deadLetterWhere+` AND id <= $5`,
		append(f.args(), maxID)...)
	if err != nil {
		return 0, fmt.Errorf("delete dead letters: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (d pgData) DeadLetter(ctx context.Context, id int64) (DeadLetterDetail, bool, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+deadLetterColumns+`, message_key, message_headers, message_value
		FROM pulsebus.dead_letters WHERE id = $1`, id)
	if err != nil {
		return DeadLetterDetail{}, false, fmt.Errorf("dead letter %d: %w", id, err)
	}
	dl, err := pgx.CollectExactlyOneRow(rows, func(r pgx.CollectableRow) (DeadLetterDetail, error) {
		var dl DeadLetterDetail
		var headers []byte
		row, err := scanDeadLetter(r, &dl.Key, &headers, &dl.Value)
		if err != nil {
			return dl, err
		}
		dl.DeadLetterRow = row
		if err := json.Unmarshal(headers, &dl.Headers); err != nil {
			return dl, fmt.Errorf("headers: %w", err)
		}
		return dl, nil
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return DeadLetterDetail{}, false, nil
	}
	if err != nil {
		return DeadLetterDetail{}, false, fmt.Errorf("dead letter %d: %w", id, err)
	}
	return dl, true, nil
}

func (d pgData) DeleteDeadLetter(ctx context.Context, id int64) (DeadLetterRow, bool, error) {
	rows, err := d.pool.Query(ctx, `WITH deleted AS (DELETE FROM pulsebus.dead_letters WHERE id = $1 RETURNING *)
		SELECT `+deadLetterColumns+` FROM deleted`, id)
	if err != nil {
		return DeadLetterRow{}, false, fmt.Errorf("delete dead letter %d: %w", id, err)
	}
	dl, err := pgx.CollectExactlyOneRow(rows, func(r pgx.CollectableRow) (DeadLetterRow, error) { return scanDeadLetter(r) })
	if errors.Is(err, pgx.ErrNoRows) {
		return DeadLetterRow{}, false, nil
	}
	if err != nil {
		return DeadLetterRow{}, false, fmt.Errorf("delete dead letter %d: %w", id, err)
	}
	return dl, true, nil
}

// Lookup reads the outbox by event_id without an index on it: a scan of
// the backlog, acceptable for a lookup an operator asks for (it is not on
// any page that refreshes itself).
func (d pgData) Lookup(ctx context.Context, id uuid.UUID) (EventLocations, error) {
	var loc EventLocations
	rows, err := d.pool.Query(ctx, `SELECT `+waitingColumns+` FROM pulsebus.outbox WHERE event_id = $1 ORDER BY id`, id)
	if err != nil {
		return loc, fmt.Errorf("look up event %s in the outbox: %w", id, err)
	}
	if loc.Waiting, err = pgx.CollectRows(rows, scanWaiting); err != nil {
		return loc, fmt.Errorf("look up event %s in the outbox: %w", id, err)
	}
	rows, err = d.pool.Query(ctx, `SELECT `+parkedColumns+` FROM pulsebus.outbox_parked WHERE event_id = $1 ORDER BY id`, id)
	if err != nil {
		return loc, fmt.Errorf("look up event %s in the parked rows: %w", id, err)
	}
	if loc.Parked, err = pgx.CollectRows(rows, scanParked); err != nil {
		return loc, fmt.Errorf("look up event %s in the parked rows: %w", id, err)
	}
	rows, err = d.pool.Query(ctx, `SELECT `+deadLetterColumns+` FROM pulsebus.dead_letters WHERE event_id = $1 ORDER BY id`, id)
	if err != nil {
		return loc, fmt.Errorf("look up event %s in the dead letters: %w", id, err)
	}
	loc.DeadLetters, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetterRow, error) { return scanDeadLetter(r) })
	if err != nil {
		return loc, fmt.Errorf("look up event %s in the dead letters: %w", id, err)
	}
	return loc, nil
}
