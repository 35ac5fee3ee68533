package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/pulsebus/pkg/outbox"
)

// claimDeleteSQL is the relay's claim, run bare: it takes the oldest batch
// of rows and deletes them in one auto-committed statement. Sent with the
// simple protocol so it is planned per call (DESIGN.md §3: a cached generic
// plan for it can degenerate into a nested loop).
const claimDeleteSQL = `DELETE FROM pulsebus.outbox WHERE id IN (
	SELECT id FROM pulsebus.outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
) RETURNING ` + outbox.RowColumns

func init() {
	registerContender("sql-claim-delete", runSQLClaimDelete)
}

// runSQLClaimDelete drains the outbox with the bare claim+DELETE loop and
// no Kafka: the rate PostgreSQL allows. Rows are scanned into outbox.Row as
// the relay would. It reports done once spec.Events rows are gone.
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
			return nil, fmt.Errorf("claim+delete: %w", err)
		}
		got, err := pgx.CollectRows(rows, outbox.ScanRow)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return nil, fmt.Errorf("claim+delete: %w", err)
		}
		statements++
		deleted += int64(len(got))
		if !reported && deleted >= spec.Events {
			reported = true
			done(childMsg{Handled: deleted, LastSec: time.Since(t0).Seconds()})
		}
		if len(got) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Millisecond):
			}
		}
	}
	return map[string]float64{"deleted": float64(deleted), "statements": float64(statements)}, nil
}
