// Package outbox is the producer side of PulseBus: it writes events into the
// transactional outbox table pulsebus.outbox inside the caller's own
// PostgreSQL transaction, so the business change and the event commit or
// roll back together. That removes the dual write: no event is published for
// a change that did not commit, and none is lost for one that did.
//
// [InsertTx] writes any number of envelopes in one round trip and signals the
// relay on the channel [NotifyChannel]; PostgreSQL delivers the signal only
// when the transaction commits. Producers in other languages call the SQL
// function pulsebus.publish, which writes the same row.
//
// The package never imports Prometheus: components report through hooks,
// and the binaries wire metrics.
package outbox
