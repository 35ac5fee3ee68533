package dispatch

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// errTxControl is returned when a handler commits or rolls back the
// transaction it was given: the consumer does, with the offset move.
var errTxControl = errors.New("dispatch: a handler must not commit or roll back its transaction; return an error to roll back")

// handlerTx is the pgx.Tx a transactional handler runs in. Its BEGIN is not
// sent on its own: it goes out with the handler's first Exec or SendBatch,
// in one round trip (pgx.Batch.BeginTx); the offset move goes out with
// COMMIT (see worker.inTx). A handler writing with one statement so costs
// two round trips where pgx.BeginFunc and a separate offset update cost
// four. Any other first call (Query, QueryRow, CopyFrom, Begin,
// LargeObjects) begins the transaction on its own first, as pgx would.
// Once begun, every call goes to the pgx transaction.
type handlerTx struct {
	conn  *pgx.Conn
	setup string // run right after BEGIN, if not empty: the idle timeout (see txSetup)
	tx    pgx.Tx // the transaction once begun
}

// queueBegin queues BEGIN and the setup statement in front of b's queries
// and returns how many results they have.
func (t *handlerTx) queueBegin(b *pgx.Batch) int {
	b.BeginTx(pgx.TxOptions{})
	if t.setup == "" {
		return 1
	}
	b.Queue(t.setup)
	return 2
}

// begun reports whether BEGIN was sent.
func (t *handlerTx) begun() bool { return t.tx != nil }

// start begins the transaction on its own, if it has not begun.
func (t *handlerTx) start(ctx context.Context) (pgx.Tx, error) {
	if t.tx != nil {
		return t.tx, nil
	}
	begin := "BEGIN"
	if t.setup != "" {
		begin += "; " + t.setup
	}
	tx, err := t.conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: begin})
	if err != nil {
		return nil, err
	}
	t.tx = tx
	return tx, nil
}

// batchable reports whether args can go in a pgx.Batch, which takes no
// query options (pgx.QueryExecMode and the like).
func batchable(args []any) bool {
	if len(args) == 0 {
		return true
	}
	switch args[0].(type) {
	case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID, pgx.QueryRewriter:
		return false
	}
	return true
}

// Exec runs sql in the transaction; a first Exec carries the BEGIN.
func (t *handlerTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.tx == nil && batchable(args) {
		b := &pgx.Batch{}
		n := t.queueBegin(b)
		b.Queue(sql, args...)
		br := t.conn.SendBatch(ctx, b)
		t.tx = br.Tx()
		for ; n > 0; n-- {
			_, _ = br.Exec() // an error stays in the results
		}
		tag, err := br.Exec()
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		return tag, err
	}
	tx, err := t.start(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return tx.Exec(ctx, sql, args...)
}

// SendBatch sends b in the transaction; a first batch carries the BEGIN.
func (t *handlerTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.tx != nil {
		return t.tx.SendBatch(ctx, b)
	}
	nb := &pgx.Batch{}
	n := t.queueBegin(nb)
	nb.QueuedQueries = append(nb.QueuedQueries, b.QueuedQueries...)
	br := t.conn.SendBatch(ctx, nb)
	t.tx = br.Tx()
	return &afterBegin{BatchResults: br, pending: n}
}

// afterBegin hides the results of the statements handlerTx put before a
// handler's batch.
type afterBegin struct {
	pgx.BatchResults
	pending int
}

func (a *afterBegin) skip() {
	for ; a.pending > 0; a.pending-- {
		_, _ = a.BatchResults.Exec() // an error stays in the results
	}
}

func (a *afterBegin) Exec() (pgconn.CommandTag, error) { a.skip(); return a.BatchResults.Exec() }
func (a *afterBegin) Query() (pgx.Rows, error)         { a.skip(); return a.BatchResults.Query() }
func (a *afterBegin) QueryRow() pgx.Row                { a.skip(); return a.BatchResults.QueryRow() }
func (a *afterBegin) Tx() pgx.Tx                       { return nil }

// Query runs sql in the transaction.
func (t *handlerTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	tx, err := t.start(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Query(ctx, sql, args...)
}

// QueryRow runs sql in the transaction.
func (t *handlerTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	tx, err := t.start(ctx)
	if err != nil {
		return errRow{err}
	}
	return tx.QueryRow(ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// CopyFrom copies rows into tableName in the transaction.
func (t *handlerTx) CopyFrom(ctx context.Context, tableName pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	tx, err := t.start(ctx)
	if err != nil {
		return 0, err
	}
	return tx.CopyFrom(ctx, tableName, columns, src)
}

// Begin starts a pseudo nested transaction (a savepoint).
func (t *handlerTx) Begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := t.start(ctx)
	if err != nil {
		return nil, err
	}
	return tx.Begin(ctx)
}

// LargeObjects returns the large objects API of the transaction. It begins
// the transaction without a context; if that fails, the returned value
// panics when used (a panic the consumer turns into a handler error).
func (t *handlerTx) LargeObjects() pgx.LargeObjects {
	tx, err := t.start(context.Background())
	if err != nil {
		return pgx.LargeObjects{}
	}
	return tx.LargeObjects()
}

// Prepare prepares a statement on the transaction's connection.
func (t *handlerTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.conn.Prepare(ctx, name, sql)
}

// Conn returns the transaction's connection.
func (t *handlerTx) Conn() *pgx.Conn { return t.conn }

// Commit returns an error: the consumer commits, with the offset move.
func (t *handlerTx) Commit(context.Context) error { return errTxControl }

// Rollback returns an error: a handler returns an error to roll back.
func (t *handlerTx) Rollback(context.Context) error { return errTxControl }
