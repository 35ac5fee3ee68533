// Package dispatch is the consumer side of PulseBus: it reads a consumer
// group's topics and fans every message out to the handlers registered for
// its event type, each with its own progress.
//
// # Offsets
//
// The truth is pulsebus.handler_offsets(group, handler, topic, partition) →
// next_offset, not the Kafka group offset. When the group assigns a
// partition, every handler starts on it at its own next_offset (or, without
// a row, at the group's committed offset, else Config.StartOffset). A message
// below a handler's next_offset is never run again for it: it is reported as
// skipped_duplicate. The Kafka group offset is committed as the minimum over
// the handlers, for tooling only.
//
// Every write of an offset row is fenced: it applies only while the row is
// as the worker last saw it (next_offset and updated_at). A replay, or a
// member that took the partition over, changes the row; the worker's next
// write then fails, it drops its uncommitted work and reloads. For
// transactional handlers that write is the first statement of the handler's
// own transaction, so two members can never both commit an event's effects.
//
// # One reader per handler and partition
//
// Each (handler, partition) pair has its own worker with its own kafka-go
// reader, positioned at that handler's next_offset, and a bounded buffer
// (Config.QueueCapacity messages). Handlers therefore never wait for one
// another: a handler stuck in retries or parking messages holds only its
// own cursor, and a replay re-reads the partition for that handler alone.
// The price is that the partition is fetched once per handler; with the few
// handlers a service has that is cheap next to the handlers' own work, and
// it keeps memory bounded by handlers × partitions × QueueCapacity.
//
// # Handlers and guarantees
//
//   - Plain handlers ([Consumer.Handle]) are at-least-once. Their progress
//     is saved in batches (Config.FlushInterval, Config.FlushMessages), so a
//     crash re-delivers at most that much; they get env.ID as an
//     idempotency key.
//   - Transactional handlers ([Consumer.HandleTx], [Consumer.HandleBatchTx])
//     write through the given pgx.Tx; the offset advance commits in the same
//     transaction, so each event takes effect exactly once, across crashes
//     and rebalances.
//   - Per partition and handler, events are handled in Kafka order.
//
// # Failures
//
// A failing handler is retried with exponential back-off (cenkalti/backoff)
// up to its RetryPolicy's attempts and elapsed time. Errors wrapped with
// [Permanent], and invalid envelopes ([envelope.ErrInvalid]), are not
// retried. Then the message is parked in pulsebus.dead_letters for that
// handler — with its raw key, headers and value, the error and the attempt
// count — and the handler moves on. A message that is not a valid envelope
// is parked with its decode error by every handler that would have wanted
// it (all of them when it has no readable ce_type). [Consumer.Redrive] runs
// a handler again on parked messages.
//
// # Replay
//
// [Admin.Replay] rewrites a handler's rows to earliest, latest, a time
// (Kafka ListOffsets) or an offset and NOTIFYs [NotifyChannel]; running
// consumers reload that handler's workers at once, so it alone re-handles
// the events.
//
// The package does not import Prometheus: it reports through [Hooks].
package dispatch
