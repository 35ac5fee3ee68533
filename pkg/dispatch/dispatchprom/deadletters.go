package dispatchprom

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/pulsebus/internal/pgstate"
)

// Names of the dead-letter state gauges ([NewDeadLetterGauges]).
const (
	NameDeadLettersStored    = "pulsebus_consumer_dead_letters_stored"
	NameDeadLetterOldestAge  = "pulsebus_consumer_dead_letter_oldest_age_seconds"
	NameDeadLetterReadErrors = "pulsebus_consumer_dead_letter_read_errors_total"
	NameHeldEvents           = "pulsebus_consumer_held_events"
)

// DefaultStateLimit is how many dead letters per handler the gauges count
// at most; a count that reaches it means "this many or more".
const DefaultStateLimit = 10_000

// Querier runs a query; *pgxpool.Pool satisfies it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// StateOptions tune [NewDeadLetterGauges]; zero values take the defaults.
type StateOptions struct {
	// MaxAge is how long values read are served before a scrape reads
	// again. Defaults to 10 s.
	MaxAge time.Duration
	// Timeout bounds one read, waiting for a pool connection included.
	// Defaults to 2 s.
	Timeout time.Duration
	// Limit is how many dead letters per handler are counted at most.
	// Defaults to DefaultStateLimit.
	Limit int
}

// deadLettersSQL reads, per handler of $2, its stored dead letters in group
// $1 counted up to $3, the age of the oldest, and its held events counted
// up to $3. The dead-letter subqueries use index
// dead_letters_group_handler_created_at: the count is an index-only scan of
// at most $3 entries of that handler, the oldest one probe; the held count
// scans at most $3 entries of held_events_key. The cost does not grow with
// the tables.
const deadLettersSQL = `
SELECT h.handler,
       (SELECT count(*) FROM (SELECT 1 FROM pulsebus.dead_letters d
                               WHERE d.group_id = $1 AND d.handler = h.handler LIMIT $3) AS capped),
       coalesce(extract(epoch FROM clock_timestamp() - (SELECT min(d.created_at) FROM pulsebus.dead_letters d
                               WHERE d.group_id = $1 AND d.handler = h.handler)), 0)::float8,
       (SELECT count(*) FROM (SELECT 1 FROM pulsebus.held_events e
                               WHERE e.group_id = $1 AND e.handler = h.handler LIMIT $3) AS capped)
  FROM unnest($2::text[]) AS h(handler)`

// NewDeadLetterGauges returns a collector of gauges read from
// pulsebus.dead_letters through db when Prometheus scrapes (at most once
// per opts.MaxAge), for each of handlers in consumer group group:
//
//	pulsebus_consumer_dead_letters_stored{group,handler}             dead letters stored, counted up to opts.Limit
//	pulsebus_consumer_dead_letter_oldest_age_seconds{group,handler}  time since the oldest was stored; 0 when none
//	pulsebus_consumer_held_events{group,handler}                     events held behind a dead letter of their key
//	                                                                 (dispatch.WithKeyOrder), counted up to opts.Limit
//	pulsebus_consumer_dead_letter_read_errors_total{group}           reads that failed or timed out
//
// Every handler's series exist from the first scrape, at 0 when it has no
// dead letters. Unlike pulsebus_consumer_dead_letters_total they hold while
// the rows stay, and after a restart, so an alert on them fires until an
// operator redrives or deletes the dead letters. Every member of the group
// reports the same rows: aggregate with max(). group is a constant label,
// so one process can register the gauges of several groups. A failed read
// keeps the last values and counts an error.
func NewDeadLetterGauges(db Querier, group string, handlers []string, opts StateOptions) prometheus.Collector {
	if opts.Limit <= 0 {
		opts.Limit = DefaultStateLimit
	}
	constLabels := prometheus.Labels{"group": group}
	stored := prometheus.NewDesc(NameDeadLettersStored,
		"Dead letters in pulsebus.dead_letters, by handler, waiting for a redrive or delete; counted up to a limit (10000 by default), which means that many or more.",
		[]string{"handler"}, constLabels)
	age := prometheus.NewDesc(NameDeadLetterOldestAge,
		"Time since the handler's oldest dead letter was stored; 0 when it has none.", []string{"handler"}, constLabels)
	held := prometheus.NewDesc(NameHeldEvents,
		"Events in pulsebus.held_events, by handler: not run because an earlier event of the same key is dead-lettered (on-failure=hold-key); they run once it is redriven or deleted. Counted up to a limit (10000 by default).",
		[]string{"handler"}, constLabels)
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: NameDeadLetterReadErrors, ConstLabels: constLabels,
		Help: "Reads of pulsebus.dead_letters for the dead-letter gauges that failed or timed out; the gauges keep their last values."})
	handlers = append([]string(nil), handlers...)
	read := func(ctx context.Context) ([]prometheus.Metric, error) {
		rows, err := db.Query(ctx, deadLettersSQL, group, handlers, opts.Limit)
		if err != nil {
			return nil, fmt.Errorf("read pulsebus.dead_letters: %w", err)
		}
		defer rows.Close()
		var out []prometheus.Metric
		for rows.Next() {
			var handler string
			var n, nHeld int64
			var ageSeconds float64
			if err := rows.Scan(&handler, &n, &ageSeconds, &nHeld); err != nil {
				return nil, fmt.Errorf("read pulsebus.dead_letters: %w", err)
			}
			out = append(out,
				prometheus.MustNewConstMetric(stored, prometheus.GaugeValue, float64(n), handler),
				prometheus.MustNewConstMetric(age, prometheus.GaugeValue, ageSeconds, handler),
				prometheus.MustNewConstMetric(held, prometheus.GaugeValue, float64(nHeld), handler))
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read pulsebus.dead_letters: %w", err)
		}
		return out, nil
	}
	return pgstate.New([]*prometheus.Desc{stored, age, held}, errs, read, pgstate.Options{MaxAge: opts.MaxAge, Timeout: opts.Timeout})
}
