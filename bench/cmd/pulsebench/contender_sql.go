package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/pulsebus/internal/outboxrow"
)

// claimDeleteSQL is the relay's claim without the relay's lease and fence:
// the oldest batch of rows, locked with SKIP LOCKED and deleted in one
// auto-committed statement. It has the relay's plan-proof shape (= ANY of
// an ARRAY subquery, index-only whatever the statistics) and is sent with
// the simple protocol, so it is planned per call.
const claimDeleteSQL = `DELETE FROM pulsebus.outbox
 WHERE id = ANY (ARRAY(SELECT id FROM pulsebus.outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
RETURNING ` + outboxrow.Columns

func init() {
	registerContender("sql-claim-delete", runSQLClaimDelete)
}

// runSQLClaimDelete drains the outbox with the bare claim+DELETE loop and
// no Kafka: the rate PostgreSQL allows. The rows come back over the wire in
// full but are not decoded (as the engine's BenchmarkClaimDelete does), so
// this is the database's limit, not Go's. It reports done once spec.Events
// rows are gone.
func runSQLClaimDelete(ctx context.Context, spec Spec, ready func(), start <-chan struct{}, done func(childMsg)) (map[string]float64, error) {
	conn, err := pgx.Connect(ctx, spec.DBURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	ready()
	select {
	case <-start:
	case <-ctx.Done():
		return nil, nil
	}
	t0 := time.Now()
	var deleted, statements int64
	reported := false
	for ctx.Err() == nil {
		rows, err := conn.Query(ctx, claimDeleteSQL, pgx.QueryExecModeSimpleProtocol, spec.Batch)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return nil, fmt.Errorf("claim+delete: %w", err)
		}
		got := 0
		for rows.Next() {
			_ = rows.RawValues()
			got++
		}
		if err := rows.Err(); err != nil {
			if ctx.Err() != nil {
				break
			}
			return nil, fmt.Errorf("claim+delete: %w", err)
		}
		statements++
		deleted += int64(got)
		if !reported && deleted >= spec.Events {
			reported = true
			done(childMsg{Handled: deleted, LastSec: time.Since(t0).Seconds()})
		}
		if got == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Millisecond):
			}
		}
	}
	return map[string]float64{"deleted": float64(deleted), "statements": float64(statements)}, nil
}
