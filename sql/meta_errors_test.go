package schema_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/migrate"
)

// publishMeta calls pulsebus.publish with meta and returns its error.
func publishMeta(t *testing.T, db *testdb.DB, meta string) *pgconn.PgError {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), `SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}', $1::jsonb)`, meta)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "meta %s: want a PostgreSQL error, got %v", meta, err)
	return pgErr
}

// pulsebus.publish names the one rule a meta entry breaks, and blames the
// value, not the key, when the value is not a string.
func TestPublish_MetaErrorsNameTheBrokenRule(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	for _, c := range []struct {
		meta, message, column, hint string
	}{
		{`{"Tenant":"a"}`, `pulsebus.publish: meta key "Tenant": extension attribute names are lower-case ASCII letters and digits only`, "meta.Tenant", ""},
		{`{"ten-ant":"a"}`, `pulsebus.publish: meta key "ten-ant": extension attribute names are lower-case ASCII letters and digits only`, "meta.ten-ant", ""},
		{`{"id":"a"}`, `pulsebus.publish: meta key "id": "id" is a core CloudEvents attribute, not an extension`, "meta.id", ""},
		{`{"abcdefghijklmnopqrstu":"a"}`, `pulsebus.publish: meta key "abcdefghijklmnopqrstu": 21 characters: PulseBus writes extension names of at most 20`, "meta.abcdefghijklmnopqrstu", ""},
		{`{"":"a"}`, `pulsebus.publish: meta key "": an extension attribute name cannot be empty`, "meta.", ""},
		{`{"tenant":5}`, `pulsebus.publish: meta value of "tenant": must be a JSON string, got number 5`, "meta.tenant", `quote it: {"tenant": "5"}`},
		{`{"tenant":true}`, `pulsebus.publish: meta value of "tenant": must be a JSON string, got boolean true`, "meta.tenant", `quote it: {"tenant": "true"}`},
		{`{"tenant":null}`, `pulsebus.publish: meta value of "tenant": must be a JSON string, got null`, "meta.tenant", ""},
		{`{"tenant":{"a":1}}`, `pulsebus.publish: meta value of "tenant": must be a JSON string, got an object`, "meta.tenant", ""},
		// The first bad entry by name; its name before its value.
		{`{"b":1,"a":"ok","c":"ok","B":"x"}`, `pulsebus.publish: meta key "B": extension attribute names are lower-case ASCII letters and digits only`, "meta.B", ""},
		{`{"Tenant":5}`, `pulsebus.publish: meta key "Tenant": extension attribute names are lower-case ASCII letters and digits only`, "meta.Tenant", ""},
	} {
		e := publishMeta(t, db, c.meta)
		require.Equal(t, "22023", e.Code, c.meta)
		require.Equal(t, c.message, e.Message, c.meta)
		require.Equal(t, c.column, e.ColumnName, c.meta)
		require.Equal(t, c.hint, e.Hint, c.meta)
	}
	_, err := db.Pool.Exec(context.Background(), `SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}', '{"tenant":"5","region":"eu"}')`)
	require.NoError(t, err, "good meta still goes in")
}

// The migration's down restores the previous publish, and up again the new
// one.
func TestPublish_MetaErrorsMigrationReverts(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	migs, err := migrate.All()
	require.NoError(t, err)
	version := 0
	for _, m := range migs {
		if m.Name == "meta_errors" {
			version = m.Version
		}
	}
	require.NotZero(t, version, "the meta_errors migration")
	_, err = migrate.Down(ctx, db.Pool, version-1, migrate.DownOptions{})
	require.NoError(t, err)
	require.Contains(t, publishMeta(t, db, `{"tenant":5}`).Message, "must be 1-20 lower-case letters or digits, not a core attribute, with a string value")
	_, err = migrate.Up(ctx, db.Pool)
	require.NoError(t, err)
	require.Equal(t, `pulsebus.publish: meta value of "tenant": must be a JSON string, got number 5`, publishMeta(t, db, `{"tenant":5}`).Message)
}
