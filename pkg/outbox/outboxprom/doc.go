// Package outboxprom exports the relay's observations as Prometheus metrics.
// It provides [outbox.Hooks], so the relay engine itself never imports
// Prometheus (franz-go's plugin/kprom follows the same split).
//
//	m := outboxprom.New()
//	registry.MustRegister(m, outboxprom.NewParkedGauges(pool, outboxprom.StateOptions{}))
//	relay, err := outbox.NewRelay(outbox.RelayConfig{Hooks: m.Hooks(), ...})
//
// The metrics, their names fixed because the Grafana dashboard and alert
// rules in deploy/ use them:
//
//	pulsebus_relay_events_published_total{topic}      counter: events the broker acknowledged
//	pulsebus_relay_publish_errors_total{reason}       counter: failed publish attempts (outbox.Reason*)
//	pulsebus_relay_batch_size                         histogram: rows per claimed batch (1..10000)
//	pulsebus_relay_publish_duration_seconds           histogram: first produce request to last ack, per batch
//	pulsebus_relay_commit_to_ack_seconds              histogram: outbox row created_at to broker ack, per event
//	pulsebus_relay_backlog_rows                       gauge: rows in the outbox at the last measurement
//	pulsebus_relay_backlog_oldest_age_seconds         gauge: age of the oldest outbox row (0 when empty)
//	pulsebus_relay_leader                             gauge: 1 while this relay holds the leader lease
//	pulsebus_relay_parked_total{topic,reason}         counter: rows moved to pulsebus.outbox_parked
//
// and, from [NewParkedGauges], state read from PostgreSQL when Prometheus
// scrapes, which holds while rows stay parked and across restarts:
//
//	pulsebus_relay_parked_rows                        gauge: rows in pulsebus.outbox_parked (counted up to a limit)
//	pulsebus_relay_parked_oldest_age_seconds          gauge: time since the oldest of them was parked (0 when none)
//	pulsebus_relay_parked_read_errors_total           counter: reads of those gauges that failed or timed out
//
// Latency histograms have buckets from 0.5 ms to 30 s (WithLatencyBuckets
// changes them). The reason label of
// publish_errors_total starts at zero for every reason the outbox package
// defines, so rate() and increase() see the first error. Every relay replica
// reports the backlog it measures and the parked rows it reads, leader or
// not: aggregate those gauges with max(), not sum(); sum the counters.
package outboxprom
