package outbox_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// oldClaimSQL is the claim shape of the first relay version, kept here to
// show what TestClaim_PlanIsSafe guards against.
const oldClaimSQL = `
WITH lease AS (
	SELECT 1 FROM pulsebus.relay_leader
	 WHERE name = $1 AND leader_id = $2 AND term = $3 AND expires_at > clock_timestamp()
	   FOR KEY SHARE
)
DELETE FROM pulsebus.outbox
 WHERE id IN (SELECT id FROM pulsebus.outbox
               WHERE EXISTS (SELECT 1 FROM lease)
               ORDER BY id LIMIT $4
                 FOR UPDATE SKIP LOCKED)
RETURNING id`

// claimBoundsArgs are the claim's arguments after the row limit: no batch
// in hand, no topic backing off, a byte bound no test row reaches, the
// first row taken whatever its size, keys held behind parked rows.
const claimBoundsArgs = `, '{}', '{}', 1000000000, true, true`

// TestClaim_PlanIsSafe reproduces the trap of docs/design.md#claim-plan: statistics
// taken while the outbox was empty, a plan made from them, then a backlog.
// The relay's claim must use index scans only and delete exactly LIMIT
// rows, the oldest, whether PostgreSQL uses a generic plan (cached prepared
// statement) or a custom one (the relay's QueryExecModeCacheDescribe).
func TestClaim_PlanIsSafe(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `INSERT INTO pulsebus.relay_leader VALUES ('default', 'me', 1, now(), now() + interval '1 hour')`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `ANALYZE pulsebus.outbox`) // empty
	require.NoError(t, err)
	begin := outbox.BeginClaimSQLForTest(outbox.RelayConfig{Pool: db.Pool, Brokers: []string{"x:1"}})

	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `PREPARE claim(text, text, bigint, int, bigint[], text[], bigint, boolean, boolean) AS `+outbox.ClaimSQLForTest)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `PREPARE old_claim(text, text, bigint, int) AS `+oldClaimSQL)
	require.NoError(t, err)

	// Plan and run both while the table is empty, generic plans forced as
	// they would be after five executions of a cached statement.
	inClaimTx := func(mode string, f func(tx pgx.Tx)) {
		t.Helper()
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: begin})
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, `SET LOCAL plan_cache_mode = `+mode)
		require.NoError(t, err)
		f(tx)
	}
	args := map[string]string{"claim": claimBoundsArgs, "old_claim": ""}
	for _, stmt := range []string{"claim", "old_claim"} {
		inClaimTx("force_generic_plan", func(tx pgx.Tx) {
			_, err := tx.Exec(ctx, `EXECUTE `+stmt+`('default', 'me', 1, 100`+args[stmt]+`)`)
			require.NoError(t, err)
		})
	}

	_, err = db.Pool.Exec(ctx, `
		INSERT INTO pulsebus.outbox (event_id, topic, type, source, event_time, payload)
		SELECT gen_random_uuid(), 'lessons', 'x.y', 's', now(), '\x00' FROM generate_series(1, 1500)`)
	require.NoError(t, err)

	for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
		t.Run(mode, func(t *testing.T) {
			inClaimTx(mode, func(tx pgx.Tx) {
				rows, err := tx.Query(ctx, `EXPLAIN EXECUTE claim('default', 'me', 1, 100`+claimBoundsArgs+`)`)
				require.NoError(t, err)
				lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
				require.NoError(t, err)
				plan := strings.Join(lines, "\n")
				require.NotContains(t, plan, "Seq Scan", plan)
				require.NotContains(t, plan, "Semi Join", plan)

				start := time.Now()
				rows, err = tx.Query(ctx, `EXECUTE claim('default', 'me', 1, 100`+claimBoundsArgs+`)`)
				require.NoError(t, err)
				ids, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (int64, error) {
					r, err := outbox.ScanRowForTest(row)
					return r.ID, err
				})
				require.NoError(t, err)
				require.Len(t, ids, 100, "a claim deletes LIMIT rows, no more")
				for _, id := range ids {
					require.LessOrEqual(t, id, int64(100), "the oldest rows")
				}
				t.Logf("claim of 100 of 1500 rows: %s\n%s", time.Since(start), plan)
			})
			// The old shape under the same conditions, for the record.
			inClaimTx(mode, func(tx pgx.Tx) {
				start := time.Now()
				tag, err := tx.Exec(ctx, `EXECUTE old_claim('default', 'me', 1, 100)`)
				t.Logf("old claim shape: LIMIT 100 deleted %d rows in %s (err %v)", tag.RowsAffected(), time.Since(start), err)
			})
		})
	}
}
