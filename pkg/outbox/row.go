package outbox

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// outboxRow is one outbox row: an envelope addressed to a topic, with the relay's
// bookkeeping.
type outboxRow struct {
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

// scanRow scans one row selected with outboxrow.Columns, sharing the
// strings that repeat from row to row (topic, type, source, content type,
// meta) through in, when not nil. A row whose meta column is not an object
// of strings (possible only when written around [InsertTx] and
// pulsebus.publish) is returned with ID and Topic set and a
// [*rowDecodeError], so the relay can park it rather than stall on it.
//
// When the columns arrive in PostgreSQL's binary format with the schema's
// types, as they do for the relay's claim, it decodes them straight from
// the wire bytes: no per-column scan plans, and only the allocations the
// outboxRow itself needs. Anything else goes through pgx's Scan.
func scanRow(r pgx.CollectableRow, in *interner) (outboxRow, error) {
	if row, ok, err := scanRowBinary(r, in); ok {
		return row, err
	}
	var (
		row  outboxRow
		env  = &row.Envelope
		id   uuid.UUID
		meta []byte
	)
	if err := r.Scan(&row.ID, &row.Topic, &id, &env.Key, &env.Type, &env.Source, &env.Subject,
		&env.Time, &env.ContentType, &meta, &env.Payload, &row.CreatedAt, &row.Attempts, &env.DataSchema); err != nil {
		return outboxRow{}, fmt.Errorf("scan outbox row: %w", err)
	}
	env.ID = id.String()
	env.Time = env.Time.UTC()
	return row, decodeMeta(&row, meta, in)
}

// rowColumnOIDs are the types of outboxrow.Columns, in order.
var rowColumnOIDs = [14]uint32{
	pgtype.Int8OID, pgtype.TextOID, pgtype.UUIDOID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID,
	pgtype.TimestamptzOID, pgtype.TextOID, pgtype.JSONBOID, pgtype.ByteaOID, pgtype.TimestamptzOID, pgtype.Int4OID,
	pgtype.TextOID,
}

// scanRowBinary decodes a row whose columns are outboxrow.Columns in binary
// format. ok is false when they are not, and the caller must Scan.
func scanRowBinary(r pgx.CollectableRow, in *interner) (row outboxRow, ok bool, err error) {
	fds := r.FieldDescriptions()
	if len(fds) != len(rowColumnOIDs) {
		return row, false, nil
	}
	for i := range fds {
		if fds[i].DataTypeOID != rowColumnOIDs[i] {
			return row, false, nil
		}
		// Text is the same in both formats; pgx asks for jsonb as text.
		if fds[i].Format != pgtype.BinaryFormatCode && rowColumnOIDs[i] != pgtype.TextOID && rowColumnOIDs[i] != pgtype.JSONBOID {
			return row, false, nil
		}
	}
	v := r.RawValues()
	if len(v) != len(rowColumnOIDs) || len(v[0]) != 8 || len(v[2]) != 16 || len(v[7]) != 8 || len(v[11]) != 8 || len(v[12]) != 4 {
		return row, false, nil // NULLs: let Scan report them
	}
	meta := v[9]
	if fds[9].Format == pgtype.BinaryFormatCode {
		if len(meta) < 1 || meta[0] != 1 {
			return row, false, nil // a jsonb binary version this code does not know
		}
		meta = meta[1:]
	}
	eventTime, ok1 := pgTime(v[7])
	createdAt, ok2 := pgTime(v[11])
	if !ok1 || !ok2 {
		return row, false, nil // infinity
	}
	env := &row.Envelope
	row.ID = int64(binary.BigEndian.Uint64(v[0]))
	row.Topic = in.string(v[1])
	env.ID = uuid.UUID(v[2]).String()
	env.Key = string(v[3])
	env.Type = in.string(v[4])
	env.Source = in.string(v[5])
	env.Subject = in.string(v[6])
	env.Time = eventTime.UTC()
	env.ContentType = in.string(v[8])
	env.DataSchema = in.string(v[13])
	env.Payload = append(make([]byte, 0, len(v[10])), v[10]...) // the wire buffer is reused
	row.CreatedAt = createdAt
	row.Attempts = int(int32(binary.BigEndian.Uint32(v[12])))
	return row, true, decodeMeta(&row, meta, in)
}

// pgTime decodes a binary timestamptz: microseconds since 2000-01-01 UTC.
func pgTime(b []byte) (time.Time, bool) {
	const (
		y2kUnixMicros = 946_684_800 * 1_000_000
		infinity      = 1<<63 - 1
		negInfinity   = -1 << 63
	)
	us := int64(binary.BigEndian.Uint64(b))
	if us == infinity || us == negInfinity {
		return time.Time{}, false
	}
	us += y2kUnixMicros
	return time.Unix(us/1_000_000, (us%1_000_000)*1000), true
}

// decodeMeta sets the envelope's meta from the JSON object of strings that
// PostgreSQL returns for a jsonb meta column, or reports a
// [*rowDecodeError].
func decodeMeta(row *outboxRow, meta []byte, in *interner) error {
	m, ok := parseFlatJSON(meta, in)
	if !ok {
		// Escapes, other value types or malformed input: the general
		// decoder, which also explains what is wrong.
		if err := json.Unmarshal(meta, &m); err != nil {
			return &rowDecodeError{ID: row.ID, Err: fmt.Errorf("meta %s is not an object of strings: %w", meta, err)}
		}
	}
	if len(m) > 0 {
		row.Envelope.Meta = m
	}
	return nil
}

// parseFlatJSON parses a JSON object whose values are all strings and whose
// keys and values have no escapes, as PostgreSQL prints a jsonb of tenant,
// correlation id, traceparent and the like. ok is false for anything else.
func parseFlatJSON(b []byte, in *interner) (m map[string]string, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, skipSpace(b, i+1) == len(b)
	}
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		val, j, ok := plainString(b, skipSpace(b, i+1))
		if !ok {
			return nil, false
		}
		if m == nil {
			m = make(map[string]string, 2)
		}
		k := in.string(key)
		if _, dup := m[k]; dup {
			return nil, false
		}
		m[k] = in.string(val)
		i = skipSpace(b, j)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return m, skipSpace(b, i+1) == len(b)
		default:
			return nil, false
		}
	}
}

// plainString reads a JSON string without escapes or control characters,
// in valid UTF-8, at b[i:], returning its contents and the index after it.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			// encoding/json replaces invalid UTF-8; leave that to it.
			return s, j + 1, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// interner shares the strings that repeat across the rows of a batch. A
// nil interner allocates every string.
type interner struct {
	m map[string]string
}

// maxInterned bounds an interner: values that do not repeat (ids in meta)
// must not grow it without end.
const maxInterned = 256

func (in *interner) string(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if in == nil {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if in.m == nil {
		in.m = make(map[string]string, 16)
	}
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

// rowDecodeError reports an outbox row whose columns do not form an
// envelope.
type rowDecodeError struct {
	ID  int64
	Err error
}

func (e *rowDecodeError) Error() string { return fmt.Sprintf("outbox row %d: %v", e.ID, e.Err) }

// Unwrap returns the cause.
func (e *rowDecodeError) Unwrap() error { return e.Err }
