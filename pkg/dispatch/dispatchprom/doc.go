// Package dispatchprom exports a [dispatch.Consumer]'s hooks as Prometheus
// metrics, the way franz-go's plugin/kprom does for its client: the consumer
// engine knows nothing of Prometheus; [Metrics.Hooks] feeds this adapter,
// a [prometheus.Collector].
//
//	m := dispatchprom.New()
//	prometheus.MustRegister(m)
//	c, err := dispatch.New(dispatch.Config{..., Hooks: m.Hooks()})
//	// after registering the handlers:
//	m.InitHandlers("search-indexer", "crm")
//	prometheus.MustRegister(dispatchprom.NewDeadLetterGauges(pool, group,
//		[]string{"search-indexer", "crm"}, dispatchprom.StateOptions{}))
//
// The metrics, with the names the PulseBus dashboard and alert rules use:
//
//	pulsebus_consumer_events_handled_total{handler,outcome}   counter
//	pulsebus_consumer_handler_duration_seconds{handler}       histogram
//	pulsebus_consumer_retries_total{handler}                  counter
//	pulsebus_consumer_dead_letters_total{handler}             counter
//	pulsebus_consumer_rebalances_total                        counter
//	pulsebus_consumer_lag{handler,topic,partition}            gauge
//	pulsebus_consumer_commit_to_handle_seconds{handler}       histogram
//	pulsebus_consumer_stalled_workers{handler}                gauge
//	pulsebus_consumer_offset_resets_total{handler}            counter
//
// [Metrics.InitHandlers] creates the counters of each handler at 0, so
// that increase() sees the first event, retry and dead letter. From
// [NewDeadLetterGauges], state read from PostgreSQL when Prometheus
// scrapes, which holds while the dead letters stay and across restarts:
//
//	pulsebus_consumer_dead_letters_stored{group,handler}             gauge (counted up to a limit)
//	pulsebus_consumer_dead_letter_oldest_age_seconds{group,handler}  gauge (0 when none)
//	pulsebus_consumer_held_events{group,handler}                     gauge (counted up to a limit)
//	pulsebus_consumer_dead_letter_read_errors_total{group}           counter
//
// outcome is one of ok, retried, dead_lettered, skipped_duplicate and held
// ([dispatch.Outcome]); a held event is counted again with its outcome when
// it runs. The handler duration covers the handler, its transaction and its
// retries, for every outcome but skipped_duplicate and held. The
// commit-to-handle latency runs from the event's ce_time (set when the
// producer wrote it to the outbox) to the moment the handler succeeded, so
// it spans the outbox, the relay, Kafka and the consumer; it is observed
// for ok and retried events only, and clock skew between hosts shows in it.
//
// Lag is a gauge per handler and partition this member owns: the high
// watermark minus the handler's next offset, as the consumer last saw it.
// After a rebalance the series of partitions this member no longer owns
// are deleted, so summing over members does not count a partition twice.
package dispatchprom
