package outbox

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// Test-only access to the relay's SQL, so tests and benchmarks can run
// exactly the relay's statements.

// ClaimSQLForTest is the relay's claim statement.
const ClaimSQLForTest = claimSQL

// BeginClaimSQLForTest is how a relay with cfg begins a claim transaction.
func BeginClaimSQLForTest(cfg RelayConfig) string {
	c, err := cfg.withDefaults()
	if err != nil {
		panic(err)
	}
	return beginSQL(c.LeaseTTL)
}

// RowForTest is the relay's outbox row.
type RowForTest = outboxRow

// RowDecodeErrorForTest is the error of a row that does not decode.
type RowDecodeErrorForTest = rowDecodeError

// NotifyLockKeyForTest is the advisory lock a notifying producer
// transaction holds.
const NotifyLockKeyForTest = notifyLockKey

// ScanRowForTest scans one row selected with outboxrow.Columns.
func ScanRowForTest(r pgx.CollectableRow) (RowForTest, error) { return scanRow(r, nil) }

// RowScannerForTest returns scanRow as the relay's claim uses it, with
// strings shared across the rows it scans.
func RowScannerForTest() func(pgx.CollectableRow) (outboxRow, error) {
	in := &interner{}
	return func(r pgx.CollectableRow) (outboxRow, error) { return scanRow(r, in) }
}

// ScanRowBinaryForTest is the relay's fast path of scanRow; ok is false
// when the row is not in the binary format it decodes.
func ScanRowBinaryForTest(r pgx.CollectableRow) (row outboxRow, ok bool, err error) {
	return scanRowBinary(r, &interner{})
}

// MessageBuilderForTest returns the relay's envelope to message mapping,
// one builder for the messages of one batch.
func MessageBuilderForTest(limits *envelope.Limits) func(*envelope.Envelope) (kafka.Message, error) {
	return newMessageBuilder(limits).build
}

// DisablePrefetchForTest makes r claim one batch at a time. Call it before
// Start.
func DisablePrefetchForTest(r *Relay) { r.noPrefetch = true }

// ClaimsForTest returns how many claim transactions r began (empty ones
// included).
func ClaimsForTest(r *Relay) int64 { return r.claims.Load() }

// insertRowsSQL is the INSERT of pulsebus.insert_events as a statement of
// its own (it needs INSERT on the outbox, which a producer role lacks), for
// benchmarks comparing ways to notify: a statement that follows it runs in
// the same statement, since a data-modifying CTE always runs to completion.
const insertRowsSQL = `
WITH inserted AS (
	INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, dataschema)
	SELECT e.event_id, $1, e.key, e.type, e.source, e.subject, e.event_time, e.content_type, e.meta::jsonb, e.payload, e.dataschema
	  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::bytea[], $11::text[])
	       WITH ORDINALITY AS e(event_id, key, type, source, subject, event_time, content_type, meta, payload, dataschema, ord)
	  LEFT JOIN (SELECT l FROM pulsebus.limits AS l LIMIT 1) AS limits ON true
	 WHERE pulsebus.broken_event_rule(limits.l, $1, e.key, e.type, e.source, e.subject, e.content_type, e.meta::jsonb, octet_length(e.payload)) = 0
	    OR pulsebus.refuse_event(e.ord, $1, e.key, e.type, e.source, e.subject, e.content_type, e.meta::jsonb, octet_length(e.payload))
	 ORDER BY e.ord
)
`

// InsertNoNotifyForTest is InsertTx's insert without any notification, as
// a statement of its own, for benchmarks to compare against.
func InsertNoNotifyForTest(ctx context.Context, tx Executor, topic string, envs ...envelope.Envelope) error {
	return insert(ctx, tx, insertRowsSQL+`SELECT 1`, topic, envs)
}

// InsertAlwaysNotifyForTest is InsertTx's insert notifying in every
// transaction, as a statement of its own, for benchmarks to compare
// against.
func InsertAlwaysNotifyForTest(ctx context.Context, tx Executor, topic string, envs ...envelope.Envelope) error {
	return insert(ctx, tx, insertRowsSQL+`SELECT pg_notify('`+NotifyChannel+`', '')`, topic, envs)
}
