package dispatchprom_test

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/dispatch/dispatchprom"
)

// Register the metrics and pass them to the consumer as its hooks.
func Example() {
	m := dispatchprom.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)

	cfg := dispatch.Config{Hooks: m.Hooks() /* Brokers, Group, Topics, Pool, ... */}
	_ = cfg

	// What the consumer reports while it runs:
	hooks := m.Hooks()
	hooks.OnHandled(dispatch.HandledEvent{Handler: "search-indexer", Outcome: dispatch.OutcomeOK,
		Duration: 3 * time.Millisecond, EventTime: time.Now().Add(-40 * time.Millisecond)})
	hooks.OnLag("search-indexer", "edupulse.events", 0, 12)

	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		fmt.Println(mf.GetName(), len(mf.GetMetric()))
	}
	// Output:
	// pulsebus_consumer_commit_to_handle_seconds 1
	// pulsebus_consumer_events_handled_total 1
	// pulsebus_consumer_handler_duration_seconds 1
	// pulsebus_consumer_lag 1
	// pulsebus_consumer_offset_resets_total 1
	// pulsebus_consumer_rebalances_total 1
	// pulsebus_consumer_stalled_workers 1
}
