package outbox_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/outboxrow"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// TestScanRow_BinaryMatchesScan: the relay's decoding of claimed rows
// straight from the binary wire format gives what pgx's Scan gives (text
// format, via the simple protocol), for every kind of row, and reports the
// same rows as undecodable.
func TestScanRow_BinaryMatchesScan(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `
		INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, attempts)
		VALUES (gen_random_uuid(), 'lessons', 'course-1', 'lesson.published', 'svc', '', '2024-02-29 23:59:59.123456+00', 'application/json', '{"tenant": "acme"}', '{"a":1}', 0),
		       (gen_random_uuid(), 'lessons', '', 'x.y', 'svc', 'sub', '0001-01-01 00:00:00+00', '', '{}', '', 3),
		       (gen_random_uuid(), 'other', 'ключ', 'x.y', 'сервис', 'ünï', '9999-12-31 23:59:59.999999+00', 'text/plain', '{"a": "1", "bb": "caf\u00e9", "c": "\"q\""}', '\x00ff00', 2147483647),
		       (gen_random_uuid(), 'lessons', 'k', 'x.y', 's', '', now(), '', '{"n": 1}', 'x', 0),
		       (gen_random_uuid(), 'lessons', 'k', 'x.y', 's', '', now(), '', '{"Bad Key": "v", "o": {"x": "y"}}', 'x', 0)`)
	require.NoError(t, err)
	const q = `SELECT ` + outboxrow.Columns + ` FROM pulsebus.outbox ORDER BY id`

	rows, err := db.Pool.Query(ctx, q)
	require.NoError(t, err)
	type result struct {
		row outbox.RowForTest
		err string
	}
	var fast []result
	for rows.Next() {
		row, ok, err := outbox.ScanRowBinaryForTest(rows)
		require.True(t, ok, "the extended protocol row takes the binary path")
		fast = append(fast, result{row, errString(err)})
	}
	require.NoError(t, rows.Err())

	rows, err = db.Pool.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	var slow []result
	for rows.Next() {
		_, ok, _ := outbox.ScanRowBinaryForTest(rows)
		require.False(t, ok, "text format goes through Scan")
		row, err := outbox.ScanRowForTest(rows)
		slow = append(slow, result{row, errString(err)})
	}
	require.NoError(t, rows.Err())

	require.Len(t, fast, 5)
	require.Len(t, slow, 5)
	for i := range fast {
		f, s := fast[i], slow[i]
		require.Equal(t, s.err, f.err, "row %d error", i)
		require.True(t, f.row.CreatedAt.Equal(s.row.CreatedAt), "row %d created_at", i)
		require.Equal(t, s.row.Envelope.Time, f.row.Envelope.Time, "row %d event time, in UTC", i)
		f.row.CreatedAt = s.row.CreatedAt
		require.Equal(t, s.row, f.row, "row %d", i)
	}
	require.Equal(t, map[string]string{"a": "1", "bb": "café", "c": `"q"`}, fast[2].row.Envelope.Meta)
	require.Empty(t, fast[0].err)
	require.Contains(t, fast[3].err, "not an object of strings")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
