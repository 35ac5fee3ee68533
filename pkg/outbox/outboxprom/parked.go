package outboxprom

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/pulsebus/internal/pgstate"
)

// DefaultStateLimit is how many rows a state gauge counts at most; a count
// that reaches it means "this many or more".
const DefaultStateLimit = 10_000

// Querier runs one query returning one row; *pgxpool.Pool satisfies it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// StateOptions tune [NewParkedGauges]; zero values take the defaults.
type StateOptions struct {
	// MaxAge is how long values read are served before a scrape reads
	// again. Defaults to 10 s.
	MaxAge time.Duration
	// Timeout bounds one read, waiting for a pool connection included.
	// Defaults to 2 s.
	Timeout time.Duration
	// Limit is how many parked (and held) rows are counted at most.
	// Defaults to DefaultStateLimit.
	Limit int
	// HoldKeys says the relay holds the later rows of a parked row's key
	// (RelayConfig.OnRefused hold-key): pulsebus_relay_held_rows counts
	// them. Without it the gauge is 0.
	HoldKeys bool
}

// parkedSQL counts the parked rows up to $1 (the LIMIT bounds the scan
// whatever the plan), finds the oldest parked_at (one probe of index
// outbox_parked_parked_at) and, when $2, counts up to $1 outbox rows held
// behind a parked row of their topic and key. That count scans the outbox
// with one probe of index outbox_parked_held_keys per row, so it runs only
// while some parked row has a key (one probe of the same index).
const parkedSQL = `
SELECT (SELECT count(*) FROM (SELECT 1 FROM pulsebus.outbox_parked LIMIT $1) AS capped),
       coalesce(extract(epoch FROM clock_timestamp() - (SELECT min(parked_at) FROM pulsebus.outbox_parked)), 0)::float8,
       CASE WHEN $2::boolean AND EXISTS (SELECT 1 FROM pulsebus.outbox_parked WHERE key <> '') THEN
         (SELECT count(*) FROM (
            SELECT 1 FROM pulsebus.outbox o
             WHERE o.key <> '' AND EXISTS (SELECT 1 FROM pulsebus.outbox_parked p
                                            WHERE p.topic = o.topic AND p.key = o.key AND p.key <> '' AND p.id < o.id)
             LIMIT $1) AS held)
       ELSE 0 END`

// NewParkedGauges returns a collector of gauges read from
// pulsebus.outbox_parked through db when Prometheus scrapes (at most once
// per opts.MaxAge):
//
//	pulsebus_relay_parked_rows                  rows parked, counted up to opts.Limit
//	pulsebus_relay_parked_oldest_age_seconds    time since the oldest of them was parked; 0 when none
//	pulsebus_relay_held_rows                    outbox rows held behind a parked row of their key (opts.HoldKeys)
//	pulsebus_relay_parked_read_errors_total     reads that failed or timed out
//
// Unlike pulsebus_relay_parked_total they hold while rows stay parked, and
// after a restart, so an alert on them fires until an operator requeues or
// deletes the rows. Every replica reports the same table: aggregate with
// max(). A failed read keeps the last values and counts an error.
func NewParkedGauges(db Querier, opts StateOptions) prometheus.Collector {
	if opts.Limit <= 0 {
		opts.Limit = DefaultStateLimit
	}
	name := func(n string) string { return prometheus.BuildFQName(Namespace, Subsystem, n) }
	rows := prometheus.NewDesc(name("parked_rows"),
		"Rows in pulsebus.outbox_parked, waiting for an operator; counted up to a limit (10000 by default), which means that many or more.", nil, nil)
	age := prometheus.NewDesc(name("parked_oldest_age_seconds"),
		"Time since the oldest row in pulsebus.outbox_parked was parked; 0 when there is none.", nil, nil)
	held := prometheus.NewDesc(name("held_rows"),
		"Outbox rows held behind a parked row of their topic and key (--on-refused hold-key), waiting for it to be requeued or deleted; counted up to the same limit.", nil, nil)
	errs := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: Subsystem,
		Name: "parked_read_errors_total",
		Help: "Reads of pulsebus.outbox_parked for the parked gauges that failed or timed out; the gauges keep their last values."})
	read := func(ctx context.Context) ([]prometheus.Metric, error) {
		var n, heldRows int64
		var ageSeconds float64
		if err := db.QueryRow(ctx, parkedSQL, opts.Limit, opts.HoldKeys).Scan(&n, &ageSeconds, &heldRows); err != nil {
			return nil, fmt.Errorf("read pulsebus.outbox_parked: %w", err)
		}
		return []prometheus.Metric{
			prometheus.MustNewConstMetric(rows, prometheus.GaugeValue, float64(n)),
			prometheus.MustNewConstMetric(age, prometheus.GaugeValue, ageSeconds),
			prometheus.MustNewConstMetric(held, prometheus.GaugeValue, float64(heldRows)),
		}, nil
	}
	return pgstate.New([]*prometheus.Desc{rows, age, held}, errs, read, pgstate.Options{MaxAge: opts.MaxAge, Timeout: opts.Timeout})
}
