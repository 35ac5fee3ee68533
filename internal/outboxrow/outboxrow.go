// Package outboxrow holds the column list of a pulsebus.outbox row in the
// order the relay decodes it, for the relay (pkg/outbox) and for the
// benchmarks that run its statements.
package outboxrow

// Columns lists the outbox columns the relay's claim returns, in the order
// it scans them.
const Columns = `id, topic, event_id, key, type, source, subject, event_time, content_type, meta, payload, created_at, attempts, dataschema`
