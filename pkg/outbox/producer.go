package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// NotifyChannel is the PostgreSQL notification channel producers signal in
// the inserting transaction; PostgreSQL delivers it only on commit, and the
// relay listens on it.
const NotifyChannel = "pulsebus_outbox"

// NotifyLockKey is the transaction-scoped advisory lock a producer
// transaction takes to notify the relay: [InsertTx] and the SQL function
// pulsebus.publish notify only when pg_try_advisory_xact_lock(NotifyLockKey)
// succeeds, so at most one open transaction per database is notifying at a
// time and the others skip it. PostgreSQL commits notifying transactions one
// at a time (they hold a global lock on the notification queue through
// their commit), so a notification in every transaction would cap the
// producers' commit rate; with the lock they commit in parallel. A
// transaction that skipped is covered by the notifier's notification when it
// commits first, and otherwise by the relay's follow-up claims or, at
// worst, its poll (see the package documentation). The value is "pbnotify"
// in ASCII; pkg/migrate's lock uses another key.
const NotifyLockKey int64 = 0x70626e6f74696679

// Executor runs a statement: pgx.Tx, *pgx.Conn and *pgxpool.Pool satisfy it.
type Executor interface {
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
}

// Producer writes events into the outbox. Its zero value is not useful; use
// [NewProducer] or the package functions [Insert] and [InsertTx], which use
// [envelope.DefaultLimits].
type Producer struct {
	limits envelope.Limits
}

// NewProducer returns a producer that refuses envelopes outside limits.
func NewProducer(limits envelope.Limits) *Producer { return &Producer{limits: limits} }

var defaultProducer = NewProducer(envelope.DefaultLimits())

// InsertTx writes envs into the outbox for topic inside the caller's
// transaction, in one round trip, and signals the relay, which PostgreSQL
// delivers only if the transaction commits; it skips the signal while
// another transaction holds [NotifyLockKey]. It never commits or rolls back
// tx. Every envelope and the topic are validated before anything is sent;
// the first invalid one fails the call with an error wrapping
// [envelope.ErrInvalid] (or [ErrInvalidTopic]) and naming its index.
//
// Events of one call, and of successive calls in one transaction, keep their
// order in the outbox and so, per key, on Kafka.
func InsertTx(ctx context.Context, tx Executor, topic string, envs ...envelope.Envelope) error {
	return defaultProducer.InsertTx(ctx, tx, topic, envs...)
}

// Insert writes envs into the outbox for topic as one atomic statement of its
// own, for callers without a transaction. See [InsertTx].
func Insert(ctx context.Context, db Executor, topic string, envs ...envelope.Envelope) error {
	return defaultProducer.InsertTx(ctx, db, topic, envs...)
}

// Insert writes envs as one atomic statement of its own. See [InsertTx].
func (p *Producer) Insert(ctx context.Context, db Executor, topic string, envs ...envelope.Envelope) error {
	return p.InsertTx(ctx, db, topic, envs...)
}

// insertRowsSQL inserts rows from parallel arrays; a statement that follows
// it runs in the same statement, since a data-modifying CTE always runs to
// completion.
const insertRowsSQL = `
WITH inserted AS (
	INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload)
	SELECT e.event_id, $1, e.key, e.type, e.source, e.subject, e.event_time, e.content_type, e.meta::jsonb, e.payload
	  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::bytea[])
	       WITH ORDINALITY AS e(event_id, key, type, source, subject, event_time, content_type, meta, payload, ord)
	 ORDER BY e.ord
)
`

// insertSQL inserts the rows and notifies the relay unless another
// transaction is notifying (see NotifyLockKey), in one statement.
var insertSQL = insertRowsSQL + `SELECT pg_notify('` + NotifyChannel + `', '') WHERE pg_try_advisory_xact_lock(` +
	strconv.FormatInt(NotifyLockKey, 10) + `)`

// InsertTx writes envs into the outbox inside tx. See the package function
// [InsertTx].
func (p *Producer) InsertTx(ctx context.Context, tx Executor, topic string, envs ...envelope.Envelope) error {
	return p.insert(ctx, tx, insertSQL, topic, envs)
}

// eventID parses an event id as the outbox stores it: a UUID in canonical
// form (lower case, with dashes), as envelope.NewID makes them. Other forms
// are refused rather than rewritten, so the id on Kafka is the id given.
func eventID(id string) ([16]byte, error) {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return [16]byte{}, &envelope.FieldError{Field: "ce_id", Reason: fmt.Sprintf(
			"%q: the outbox stores event ids as UUIDs in canonical lower-case form (envelope.NewID makes one)", id)}
	}
	return u, nil
}

// errDataSchemaUnsupported: TEMPORARY until the outbox has a dataschema column.
var errDataSchemaUnsupported = &envelope.FieldError{Field: "ce_dataschema", Reason: "not yet stored by the outbox"}

// insert validates envs and runs query, one of the insert statements, with
// them.
func (p *Producer) insert(ctx context.Context, tx Executor, query, topic string, envs []envelope.Envelope) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if len(envs) == 0 {
		return nil
	}
	var (
		ids          = make([][16]byte, len(envs)) // not []uuid.UUID: pgx encodes those through driver.Valuer and text, 35% of the call's CPU
		keys         = make([]string, len(envs))
		types        = make([]string, len(envs))
		sources      = make([]string, len(envs))
		subjects     = make([]string, len(envs))
		times        = make([]time.Time, len(envs))
		contentTypes = make([]string, len(envs))
		metas        = make([]string, len(envs))
		payloads     = make([][]byte, len(envs))
	)
	for i, env := range envs {
		if err := p.limits.Validate(env); err != nil {
			return fmt.Errorf("outbox: event %d of %d (id %q): %w", i, len(envs), env.ID, err)
		}
		id, err := eventID(env.ID)
		if err != nil {
			return fmt.Errorf("outbox: event %d of %d: %w", i, len(envs), err)
		}
		if env.DataSchema != "" {
			return fmt.Errorf("outbox: event %d of %d: %w", i, len(envs), errDataSchemaUnsupported)
		}
		if env.Time.IsZero() {
			env.Time = time.Now().UTC().Truncate(time.Microsecond)
		}
		ids[i], keys[i], types[i], sources[i], subjects[i] = id, env.Key, env.Type, env.Source, env.Subject
		times[i], contentTypes[i], payloads[i] = env.Time, env.ContentType, env.Payload
		if payloads[i] == nil {
			payloads[i] = []byte{}
		}
		metas[i] = "{}"
		if len(env.Meta) > 0 {
			b, err := json.Marshal(env.Meta)
			if err != nil {
				return fmt.Errorf("outbox: event %d: encode meta: %w", i, err)
			}
			metas[i] = string(b)
		}
	}
	if _, err := tx.Exec(ctx, query, topic, ids, keys, types, sources, subjects, times, contentTypes, metas, payloads); err != nil {
		return fmt.Errorf("outbox: insert %d events into %s: %w", len(envs), topic, err)
	}
	return nil
}
