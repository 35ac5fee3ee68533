package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
)

// handlerTx behaves as a pgx transaction whatever the handler calls first:
// its BEGIN goes with the first Exec or SendBatch, or on its own.
func TestHandlerTx(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE t (k int PRIMARY KEY, v text)`)
	require.NoError(t, err)

	// run gives fn a fresh handlerTx and commits (or, on error, rolls back)
	// as the worker does.
	run := func(t *testing.T, fn func(tx *handlerTx) error) error {
		t.Helper()
		pc, err := db.Pool.Acquire(ctx)
		require.NoError(t, err)
		defer pc.Release()
		tx := &handlerTx{conn: pc.Conn(), setup: txSetup(1500 * time.Millisecond)}
		ferr := fn(tx)
		status := pc.Conn().PgConn().TxStatus()
		if ferr != nil {
			if status != 'I' {
				_, err := pc.Exec(ctx, "ROLLBACK")
				require.NoError(t, err)
			}
			return ferr
		}
		if tx.begun() {
			require.Equal(t, byte('T'), status, "in a transaction")
			_, err := pc.Exec(ctx, "COMMIT")
			require.NoError(t, err)
		}
		return nil
	}
	count := func(t *testing.T) int {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n))
		return n
	}
	idle := func(t *testing.T, tx *handlerTx) string {
		var s string
		require.NoError(t, tx.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&s))
		return s
	}

	t.Run("Exec first", func(t *testing.T) {
		require.NoError(t, run(t, func(tx *handlerTx) error {
			tag, err := tx.Exec(ctx, `INSERT INTO t VALUES ($1, 'a'), ($2, 'b')`, 1, 2)
			require.NoError(t, err)
			require.Equal(t, int64(2), tag.RowsAffected())
			require.True(t, tx.begun())
			require.Equal(t, "1500ms", idle(t, tx))
			_, err = tx.Exec(ctx, `INSERT INTO t VALUES (3, 'c')`)
			return err
		}))
		require.Equal(t, 3, count(t))
	})
	t.Run("rolled back on error", func(t *testing.T) {
		err := run(t, func(tx *handlerTx) error {
			_, err := tx.Exec(ctx, `INSERT INTO t VALUES (10, 'x')`)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, `INSERT INTO t VALUES (1, 'dup')`)
			return err
		})
		var pe *pgconn.PgError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, "23505", pe.Code)
		require.Equal(t, 3, count(t))
	})
	t.Run("first Exec fails", func(t *testing.T) {
		err := run(t, func(tx *handlerTx) error {
			_, err := tx.Exec(ctx, `INSERT INTO t VALUES (1, 'dup')`)
			return err
		})
		require.ErrorContains(t, err, "23505")
		require.Equal(t, 3, count(t))
	})
	t.Run("SendBatch first", func(t *testing.T) {
		require.NoError(t, run(t, func(tx *handlerTx) error {
			b := &pgx.Batch{}
			var tagged int64
			b.Queue(`INSERT INTO t VALUES (4, 'd')`).Exec(func(ct pgconn.CommandTag) error { tagged = ct.RowsAffected(); return nil })
			b.Queue(`INSERT INTO t VALUES (5, 'e')`)
			var v string
			b.Queue(`SELECT v FROM t WHERE k = 4`).QueryRow(func(row pgx.Row) error { return row.Scan(&v) })
			br := tx.SendBatch(ctx, b)
			require.Nil(t, br.Tx())
			require.NoError(t, br.Close())
			require.Equal(t, int64(1), tagged)
			require.Equal(t, "d", v)
			require.Equal(t, "1500ms", idle(t, tx))
			return nil
		}))
		require.Equal(t, 5, count(t))
		require.NoError(t, run(t, func(tx *handlerTx) error {
			b := &pgx.Batch{}
			b.Queue(`INSERT INTO t VALUES (6, 'f')`)
			b.Queue(`SELECT v FROM t WHERE k = 5`)
			br := tx.SendBatch(ctx, b)
			tag, err := br.Exec()
			require.NoError(t, err)
			require.Equal(t, "INSERT 0 1", tag.String())
			var v string
			require.NoError(t, br.QueryRow().Scan(&v))
			require.Equal(t, "e", v)
			return br.Close()
		}))
		require.Equal(t, 6, count(t))
	})
	t.Run("Query, QueryRow, CopyFrom, savepoints and large objects first", func(t *testing.T) {
		require.NoError(t, run(t, func(tx *handlerTx) error {
			rows, err := tx.Query(ctx, `SELECT k FROM t ORDER BY k`)
			require.NoError(t, err)
			ks, err := pgx.CollectRows(rows, pgx.RowTo[int32])
			require.NoError(t, err)
			require.Len(t, ks, 6)
			require.Equal(t, "1500ms", idle(t, tx))
			return nil
		}))
		require.NoError(t, run(t, func(tx *handlerTx) error {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"k", "v"}, pgx.CopyFromRows([][]any{{7, "g"}, {8, "h"}}))
			require.Equal(t, int64(2), n)
			return err
		}))
		require.Equal(t, 8, count(t))
		require.NoError(t, run(t, func(tx *handlerTx) error {
			sp, err := tx.Begin(ctx)
			require.NoError(t, err)
			_, err = sp.Exec(ctx, `INSERT INTO t VALUES (9, 'i')`)
			require.NoError(t, err)
			require.NoError(t, sp.Rollback(ctx))
			return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				_, err := sp.Exec(ctx, `INSERT INTO t VALUES (11, 'k')`)
				return err
			})
		}))
		require.Equal(t, 9, count(t))
		require.NoError(t, run(t, func(tx *handlerTx) error {
			lo := tx.LargeObjects()
			oid, err := lo.Create(ctx, 0)
			require.NoError(t, err)
			require.NotZero(t, oid)
			return lo.Unlink(ctx, oid)
		}))
	})
	t.Run("options force a plain begin", func(t *testing.T) {
		require.NoError(t, run(t, func(tx *handlerTx) error {
			_, err := tx.Exec(ctx, `INSERT INTO t VALUES (12, 'l')`, pgx.QueryExecModeSimpleProtocol)
			require.True(t, tx.begun())
			return err
		}))
		require.Equal(t, 10, count(t))
	})
	t.Run("no transaction control", func(t *testing.T) {
		err := run(t, func(tx *handlerTx) error {
			if err := tx.Commit(ctx); !errors.Is(err, errTxControl) {
				return err
			}
			return tx.Rollback(ctx)
		})
		require.ErrorIs(t, err, errTxControl)
	})
	t.Run("without an idle timeout", func(t *testing.T) {
		pc, err := db.Pool.Acquire(ctx)
		require.NoError(t, err)
		defer pc.Release()
		var server string
		require.NoError(t, pc.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&server))
		for _, first := range []string{"Exec", "SendBatch", "Query"} {
			tx := &handlerTx{conn: pc.Conn(), setup: txSetup(-1)}
			switch first {
			case "Exec":
				_, err = tx.Exec(ctx, `INSERT INTO t VALUES (100, 'z')`)
			case "SendBatch":
				b := &pgx.Batch{}
				b.Queue(`INSERT INTO t VALUES (100, 'z')`)
				err = tx.SendBatch(ctx, b).Close()
			case "Query":
				var rows pgx.Rows
				if rows, err = tx.Query(ctx, `SELECT 1`); err == nil {
					rows.Close()
				}
			}
			require.NoError(t, err, first)
			require.Equal(t, server, idle(t, tx), first)
			_, err = pc.Exec(ctx, "ROLLBACK")
			require.NoError(t, err)
		}
	})
	t.Run("nothing written, nothing begun", func(t *testing.T) {
		require.NoError(t, run(t, func(tx *handlerTx) error {
			require.NotNil(t, tx.Conn())
			_, err := tx.Prepare(ctx, "p", `SELECT 1`)
			require.False(t, tx.begun())
			return err
		}))
	})
}
