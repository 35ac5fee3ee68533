package outbox

import (
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

// RowScannerForTest returns ScanRow as the relay's claim uses it, with
// strings shared across the rows it scans.
func RowScannerForTest() func(pgx.CollectableRow) (Row, error) {
	in := &interner{}
	return func(r pgx.CollectableRow) (Row, error) { return scanRow(r, in) }
}

// ScanRowBinaryForTest is the relay's fast path of ScanRow; ok is false
// when the row is not in the binary format it decodes.
func ScanRowBinaryForTest(r pgx.CollectableRow) (row Row, ok bool, err error) {
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
