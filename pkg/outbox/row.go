package outbox

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// Row is one outbox row: an envelope addressed to a topic, with the relay's
// bookkeeping.
type Row struct {
	// ID is the row's sequence number; the relay publishes in ID order.
	ID int64
	// Topic is the Kafka topic the event goes to.
	Topic string
	// Envelope is the event.
	Envelope envelope.Envelope
	// CreatedAt is when the row was written.
	CreatedAt time.Time
	// Attempts counts failed publish attempts.
	Attempts int
}

// RowColumns lists the outbox columns [ScanRow] reads, in its order.
const RowColumns = `id, topic, event_id, key, type, source, subject, event_time, content_type, meta, payload, created_at, attempts`

// ScanRow scans one row selected with [RowColumns]. A row whose meta column
// is not an object of strings (possible only when written around [InsertTx]
// and pulsebus.publish) is returned with ID and Topic set and a
// [*RowDecodeError], so the relay can park it rather than stall on it.
func ScanRow(r pgx.CollectableRow) (Row, error) {
	var (
		row  Row
		env  = &row.Envelope
		meta []byte
	)
	if err := r.Scan(&row.ID, &row.Topic, &env.ID, &env.Key, &env.Type, &env.Source, &env.Subject,
		&env.Time, &env.ContentType, &meta, &env.Payload, &row.CreatedAt, &row.Attempts); err != nil {
		return Row{}, fmt.Errorf("scan outbox row: %w", err)
	}
	env.Time = env.Time.UTC()
	var m map[string]string
	if err := json.Unmarshal(meta, &m); err != nil {
		return row, &RowDecodeError{ID: row.ID, Err: fmt.Errorf("meta %s is not an object of strings: %w", meta, err)}
	}
	if len(m) > 0 {
		env.Meta = m
	}
	return row, nil
}

// RowDecodeError reports an outbox row whose columns do not form an
// envelope.
type RowDecodeError struct {
	ID  int64
	Err error
}

func (e *RowDecodeError) Error() string { return fmt.Sprintf("outbox row %d: %v", e.ID, e.Err) }

// Unwrap returns the cause.
func (e *RowDecodeError) Unwrap() error { return e.Err }
