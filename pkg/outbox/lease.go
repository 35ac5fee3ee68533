package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lease is one relay's handle on the leader row pulsebus.relay_leader(name).
//
// State machine: a relay is a follower until tryAcquire finds the row
// missing or expired and takes it with term+1; it is the leader while
// renewals (fenced by leader_id and term) keep expires_at ahead; it steps
// down when a renewal fails or when its local deadline, computed from the
// time it sent the last successful renewal, comes within the safety margin.
// PostgreSQL's clock decides expiry; the local deadline is never later than
// the row's expires_at, so the old leader always stops first.
//
// Fencing: every claim transaction locks the lease row FOR KEY SHARE after
// checking (leader_id, term, expires_at) and holds it until it commits or
// rolls back. tryAcquire locks the row FOR UPDATE, which waits for those
// transactions, so a new term can only begin when no claim of the old term
// is open. A hung old leader is cut off by idle_in_transaction_session_timeout
// (set on every claim transaction), which rolls its claim back.
//
// Connection: the lease has a connection of its own, taken out of the
// pool (so it is made the pool's way) and never returned to it, used by
// one goroutine (keepLease) at a time. A renewal therefore never waits for
// a pool connection behind batches, and no batch statement runs on it.
// Nor does a batch hold a lock a renewal waits for: claims lock the lease
// row FOR KEY SHARE, which an UPDATE of expires_at does not conflict with,
// and the FOR SHARE of the commit fence and of the settle statement is
// taken only once the batch's rows are locked (see settleLockSQL), held
// for one statement and COMMIT.
type lease struct {
	db   *pgxpool.Pool
	name string
	id   string
	ttl  time.Duration
	conn *pgx.Conn // nil until connected, and after an error
}

// connection returns the lease's connection, connecting when there is none.
func (l *lease) connection(ctx context.Context) (*pgx.Conn, error) {
	if l.conn != nil && !l.conn.IsClosed() {
		return l.conn, nil
	}
	pc, err := l.db.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	l.conn = pc.Hijack()
	return l.conn, nil
}

// failed closes the connection after an error, so the next operation
// starts on a fresh one: after a timeout, a lost connection or a
// terminated backend the old one is of no use, and for the rare plain
// SQL error a reconnect costs little.
func (l *lease) failed(err error) {
	if err != nil {
		l.close()
	}
}

// close closes the lease's connection.
func (l *lease) close() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = l.conn.Close(ctx)
	l.conn = nil
}

// leaseTerm is a held lease: its term and the local time it is safe until.
type leaseTerm struct {
	Term     int64
	Deadline time.Time
}

const acquireSQL = `
WITH ins AS (
	INSERT INTO pulsebus.relay_leader (name, leader_id, term, acquired_at, expires_at)
	VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + $3 * interval '1 millisecond')
	ON CONFLICT (name) DO NOTHING
	RETURNING term
)
SELECT term FROM ins`

// tryAcquire takes the lease when nobody holds it. It returns ok false when
// another relay holds an unexpired lease.
func (l *lease) tryAcquire(ctx context.Context) (leaseTerm, bool, error) {
	conn, err := l.connection(ctx)
	if err != nil {
		return leaseTerm{}, false, fmt.Errorf("acquire relay lease %q: connect: %w", l.name, err)
	}
	start := time.Now()
	ttlMS := l.ttl.Milliseconds()
	var term int64
	err = conn.QueryRow(ctx, acquireSQL, l.name, l.id, ttlMS).Scan(&term)
	if err == nil {
		return leaseTerm{Term: term, Deadline: start.Add(l.ttl)}, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		l.failed(err)
		return leaseTerm{}, false, fmt.Errorf("acquire relay lease %q: %w", l.name, err)
	}
	ok := false
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{
		// The lock waits for the old term's open claim; bound the wait and
		// try again at the next attempt.
		BeginQuery: fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = %d", max(l.ttl.Milliseconds(), 1000)),
	}, func(tx pgx.Tx) error {
		// Look without a lock first: a waiting FOR UPDATE would queue the
		// live leader's next claim behind it.
		var expired bool
		if err := tx.QueryRow(ctx, `SELECT expires_at <= clock_timestamp() FROM pulsebus.relay_leader WHERE name = $1`, l.name).Scan(&expired); err != nil {
			return err
		}
		if !expired {
			return nil
		}
		if err := tx.QueryRow(ctx, `SELECT expires_at <= clock_timestamp() FROM pulsebus.relay_leader WHERE name = $1 FOR UPDATE`, l.name).Scan(&expired); err != nil {
			return err
		}
		if !expired {
			return nil
		}
		start = time.Now()
		if err := tx.QueryRow(ctx, `
			UPDATE pulsebus.relay_leader
			   SET leader_id = $2, term = term + 1, acquired_at = clock_timestamp(),
			       expires_at = clock_timestamp() + $3 * interval '1 millisecond'
			 WHERE name = $1
			RETURNING term`, l.name, l.id, ttlMS).Scan(&term); err != nil {
			return err
		}
		ok = true
		return nil
	})
	if err != nil {
		l.failed(err)
		return leaseTerm{}, false, fmt.Errorf("acquire relay lease %q: %w", l.name, err)
	}
	if !ok {
		return leaseTerm{}, false, nil
	}
	return leaseTerm{Term: term, Deadline: start.Add(l.ttl)}, true, nil
}

// renew extends a held, unexpired lease. ok false means the term is over.
func (l *lease) renew(ctx context.Context, term int64) (leaseTerm, bool, error) {
	conn, err := l.connection(ctx)
	if err != nil {
		return leaseTerm{}, false, fmt.Errorf("renew relay lease %q term %d: connect: %w", l.name, term, err)
	}
	start := time.Now()
	tag, err := conn.Exec(ctx, `
		UPDATE pulsebus.relay_leader
		   SET expires_at = clock_timestamp() + $4 * interval '1 millisecond'
		 WHERE name = $1 AND leader_id = $2 AND term = $3 AND expires_at > clock_timestamp()`,
		l.name, l.id, term, l.ttl.Milliseconds())
	if err != nil {
		l.failed(err)
		return leaseTerm{}, false, fmt.Errorf("renew relay lease %q term %d: %w", l.name, term, err)
	}
	if tag.RowsAffected() == 0 {
		return leaseTerm{}, false, nil
	}
	return leaseTerm{Term: term, Deadline: start.Add(l.ttl)}, true, nil
}

// release ends the term now so a standby can take over at once.
func (l *lease) release(ctx context.Context, term int64) error {
	conn, err := l.connection(ctx)
	if err != nil {
		return fmt.Errorf("release relay lease %q term %d: connect: %w", l.name, term, err)
	}
	_, err = conn.Exec(ctx, `
		UPDATE pulsebus.relay_leader SET expires_at = clock_timestamp()
		 WHERE name = $1 AND leader_id = $2 AND term = $3 AND expires_at > clock_timestamp()`,
		l.name, l.id, term)
	if err != nil {
		l.failed(err)
		return fmt.Errorf("release relay lease %q term %d: %w", l.name, term, err)
	}
	return nil
}
