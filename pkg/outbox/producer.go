package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edupulse/pulsebus/internal/tracing"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// notifyLockKey is the transaction-scoped advisory lock a producer
// transaction takes to notify the relay: [InsertTx] and the SQL function
// pulsebus.publish notify only when pg_try_advisory_xact_lock(notifyLockKey)
// succeeds, so at most one open transaction per database is notifying at a
// time and the others skip it. PostgreSQL commits notifying transactions one
// at a time (they hold a global lock on the notification queue through
// their commit), so a notification in every transaction would cap the
// producers' commit rate; with the lock they commit in parallel. A
// transaction that skipped is covered by the notifier's notification when it
// commits first, and otherwise by the relay's follow-up claims or, at
// worst, its poll (see the package documentation). The value is "pbnotify"
// in ASCII; pkg/migrate's lock uses another key. Only the SQL functions
// (migration 0010_roles) take it; the constant documents it for tests.
const notifyLockKey int64 = 0x70626e6f74696679

// Executor runs a statement: pgx.Tx, *pgx.Conn and *pgxpool.Pool satisfy
// it.
type Executor interface {
	Exec(ctx context.Context, sql string, arguments ...any) (pgconn.CommandTag, error)
}

// InsertTx writes envs into the outbox for topic inside the caller's
// transaction, in one round trip, and signals the relay, which PostgreSQL
// delivers only if the transaction commits; it skips the signal while
// another transaction is notifying (see "Waking the relay" in the package
// documentation). It never commits or rolls back tx. tx may also be a
// *pgxpool.Pool or a *pgx.Conn outside a transaction: the events are then
// written as one atomic statement of their own. The topic and each
// envelope's shape are validated in Go before anything is sent, their
// sizes by the statement against pulsebus.limits, the limits every
// producer is held to (see the package documentation);
// the first invalid event fails the call, nothing is written, and the error
// wraps [envelope.ErrInvalid] (an [*envelope.LimitError] for a size, an
// [*envelope.FieldError] otherwise) or [ErrInvalidTopic] and names the
// event's index.
//
// Events of one call, and of successive calls in one transaction, keep their
// order in the outbox and so, per key, on Kafka.
//
// When ctx carries an OpenTelemetry span, each event without a traceparent
// of its own gets the span's traceparent and tracestate as extension
// attributes (the CloudEvents distributed tracing extension): the relay
// links its publish span to it and the consumer's handler spans are its
// children, one trace from the producer's request to the handler.
func InsertTx(ctx context.Context, tx Executor, topic string, envs ...envelope.Envelope) error {
	return insert(ctx, tx, insertSQL, topic, envs)
}

// insertSQL writes the rows through pulsebus.insert_events (migration
// 0010_roles): from parallel arrays, each event tested against the row of
// pulsebus.limits by pulsebus.broken_event_rule and against the rules of
// an event's shape, the first refused one raising SQLSTATE 22023 with
// nothing written, and the relay notified unless another transaction is
// notifying (see notifyLockKey). The function runs as the schema's owner,
// so a producer needs only EXECUTE on it (the role pulsebus_producer), no
// privilege on the outbox.
const insertSQL = `SELECT pulsebus.insert_events($1, $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
	$7::timestamptz[], $8::text[], $9::text[], $10::bytea[], $11::text[])`

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

// insert validates envs and runs query, one of the insert statements, with
// them.
func insert(ctx context.Context, tx Executor, query, topic string, envs []envelope.Envelope) error {
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
		dataschemas  = make([]string, len(envs))
	)
	for i, env := range envs {
		// The caller's span, when there is one, travels with the event
		// (the CloudEvents distributed tracing extension).
		env.Meta = tracing.Inject(ctx, env.Meta)
		// Zero limits: the shape only; the statement checks the sizes
		// against pulsebus.limits.
		if err := (envelope.Limits{}).Validate(env); err != nil {
			return fmt.Errorf("outbox: event %d of %d (id %q): %w", i, len(envs), env.ID, err)
		}
		id, err := eventID(env.ID)
		if err != nil {
			return fmt.Errorf("outbox: event %d of %d: %w", i, len(envs), err)
		}
		if env.Time.IsZero() {
			env.Time = time.Now().UTC().Truncate(time.Microsecond)
		}
		ids[i], keys[i], types[i], sources[i], subjects[i] = id, env.Key, env.Type, env.Source, env.Subject
		times[i], contentTypes[i], payloads[i], dataschemas[i] = env.Time, env.ContentType, env.Payload, env.DataSchema
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
	if _, err := tx.Exec(ctx, query, topic, ids, keys, types, sources, subjects, times, contentTypes, metas, payloads, dataschemas); err != nil {
		if i, refusal, ok := refusedEvent(err, len(envs)); ok {
			return fmt.Errorf("outbox: event %d of %d (id %s): %w (pulsebus.limits)", i, len(envs), envs[i].ID, refusal)
		}
		if i, ok := duplicateEvent(err, envs); ok {
			return fmt.Errorf("outbox: event %d of %d (id %s): %w", i, len(envs), envs[i].ID, ErrDuplicateEventID)
		}
		return fmt.Errorf("outbox: insert %d events into %s: %w", len(envs), topic, err)
	}
	return nil
}

// invalidParameterValue is SQLSTATE 22023, which pulsebus.refuse_event
// raises.
const invalidParameterValue = "22023"

// refusedEvent turns the error pulsebus.refuse_event raised for an event of
// an n-event insert into the error Go validation would give: its index and
// an [*envelope.LimitError], an [*envelope.FieldError] or, for the topic,
// an error wrapping [ErrInvalidTopic]. ok is false for any other error.
func refusedEvent(err error, n int) (index int, refusal error, ok bool) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != invalidParameterValue || pgErr.ColumnName == "" {
		return 0, nil, false
	}
	var ordinal int
	if _, scanErr := fmt.Sscanf(pgErr.Message, "pulsebus: event %d:", &ordinal); scanErr != nil || ordinal < 1 || ordinal > n {
		return 0, nil, false
	}
	field := pgErr.ColumnName
	reason := strings.TrimPrefix(pgErr.Message, fmt.Sprintf("pulsebus: event %d: %s ", ordinal, field))
	var size, limit int
	switch _, scanErr := fmt.Sscanf(pgErr.Detail, "size %d, limit %d", &size, &limit); {
	case field == "topic":
		refusal = fmt.Errorf("%w: %s", ErrInvalidTopic, reason)
	case scanErr == nil:
		refusal = &envelope.LimitError{Field: field, Size: size, Limit: limit}
	default:
		refusal = &envelope.FieldError{Field: field, Reason: reason}
	}
	return ordinal - 1, refusal, true
}

// duplicateEventIDIndex is the unique index on pulsebus.outbox (event_id).
const duplicateEventIDIndex = "outbox_event_id_unique"

// duplicateEvent finds the event of envs whose id the unique index on the
// outbox's event ids refused in err: the first one with the id the error's
// detail names ("Key (event_id)=(...) already exists."). ok is false for
// any other error.
func duplicateEvent(err error, envs []envelope.Envelope) (index int, ok bool) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" || pgErr.ConstraintName != duplicateEventIDIndex {
		return 0, false
	}
	_, rest, found := strings.Cut(pgErr.Detail, "=(")
	id, _, closed := strings.Cut(rest, ")")
	if !found || !closed {
		return 0, false
	}
	for i, env := range envs {
		if env.ID == id {
			return i, true
		}
	}
	return 0, false
}

// LoadLimits reads the schema's limits, the row of pulsebus.limits every
// producer's events are checked against, as envelope limits: for a relay or
// a consumer that should accept what producers may write.
func LoadLimits(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (envelope.Limits, error) {
	var l envelope.Limits
	err := db.QueryRow(ctx, `SELECT max_payload_bytes, max_headers, max_header_value_bytes, max_key_bytes FROM pulsebus.limits`).
		Scan(&l.MaxPayloadBytes, &l.MaxHeaders, &l.MaxHeaderValueBytes, &l.MaxKeyBytes)
	if err != nil {
		return l, fmt.Errorf("outbox: read pulsebus.limits: %w", err)
	}
	return l, nil
}
