package schema_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
)

// pulsebus.publish stores a dataschema and refuses one that is not an
// absolute URI; it takes the caller's trace context from the transaction's
// settings when meta has none, and keeps meta's own.
func TestPublish_DataSchemaAndTraceContext(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL pulsebus.traceparent = '`+tp+`'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL pulsebus.tracestate = 'vendor=1'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pulsebus.publish('lessons', 'a', 'lesson.published', '{}', dataschema => 'https://schemas.example.com/l.json')`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pulsebus.publish('lessons', 'b', 'lesson.published', '{}', '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}')`)
		return err
	})
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `SELECT pulsebus.publish('lessons', 'c', 'lesson.published', '{}')`)
	require.NoError(t, err)

	rows, err := db.Pool.Query(ctx, `SELECT key, dataschema, coalesce(meta->>'traceparent', ''), coalesce(meta->>'tracestate', '') FROM pulsebus.outbox ORDER BY id`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Key, DataSchema, TraceParent, TraceState string }])
	require.NoError(t, err)
	require.Equal(t, []struct{ Key, DataSchema, TraceParent, TraceState string }{
		{"a", "https://schemas.example.com/l.json", tp, "vendor=1"},
		{"b", "", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""},
		{"c", "", "", ""}, // the settings were local to the transaction
	}, got)

	_, err = db.Pool.Exec(ctx, `SELECT pulsebus.publish('lessons', 'k', 'x.y', '{}', dataschema => 'schemas/l.json')`)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "22023", pgErr.Code)
	require.Equal(t, "ce_dataschema", pgErr.ColumnName)
	require.Contains(t, pgErr.Message, `dataschema "schemas/l.json" is not an absolute URI`)
}
