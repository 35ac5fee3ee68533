// Package dispatch is the consumer side of PulseBus: it reads a consumer
// group's topics and fans every message out to the handlers registered for
// its event type, each with its own progress. The design notes behind what
// follows — offset rows and fencing, the dedupe window, one reader per
// handler, dead letters, hold-key, stalls, replays — are in
// docs/design.md, section "Consumer".
//
// # Handlers and guarantees
//
//   - Plain handlers ([Consumer.Handle]) are at-least-once. Their progress
//     is saved in batches (Config.FlushInterval, Config.FlushMessages), so a
//     crash re-delivers at most that much; they get env.ID as an
//     idempotency key.
//   - Transactional handlers ([Consumer.HandleTx], [Consumer.HandleBatchTx])
//     write through the given pgx.Tx; the offset advance commits in the same
//     transaction, fenced so that of two members only one can commit, so
//     each Kafka message takes effect exactly once, across crashes and
//     rebalances.
//   - An event republished by the relay (same ce_id) within the last
//     Config.DedupeWindow messages of its partition is skipped
//     ([OutcomeSkippedDuplicate]), the same after a restart.
//   - Per partition and handler, events are handled in Kafka order; with
//     [WithKeyOrder], per key also through a dead letter.
//
// The offsets that count are the handlers' rows in pulsebus.handler_offsets;
// the Kafka group offset (their minimum) is committed for tooling only.
//
// # A member and its workers
//
// [Consumer.Run] joins the group. Each generation it is given starts, for
// every assigned partition and handler, a worker with its own Kafka reader,
// so handlers never wait for one another; plus a committer of the Kafka group
// offsets and a watcher that ends the generation when a topic's partition
// count changes, so that a rebalance assigns new partitions. A worker goes
// through these states until its generation ends:
//
//	          +---------+  a failure of its own (fetch, offset row,
//	start --->| loading |<-- connection, commit): back-off 100 ms..10 s
//	          +---------+<-- a reload: a replay or a released key
//	               |         notified, or the row moved (fenced write)
//	               | row read (or created), held keys read and the
//	               | released ones run, dedupe window re-read
//	               v
//	          +---------+  tick, or FlushMessages in memory   +--------+
//	          | reading |------------------------------------>| saving |
//	          |         |<------------------------------------|        |
//	          +---------+                                     +--------+
//	           |       ^
//	  a batch  |       | the offset advanced (in the handler's transaction,
//	           v       | or in memory for a plain handler)
//	          +----------+  failed          +----------+
//	          | handling |----------------->| retrying |  transient: holds the
//	          |          |<-----------------|          |  partition up to RetryFor
//	          +----------+  back-off passed +----------+
//	               ^                             | policy spent, or permanent
//	               +-----------------------------+ → dead letter (with
//	                                               WithKeyOrder: the key's head)
//
// Any state can be "stalled": a monitor reports a worker that has not
// advanced for Config.StallTimeout while messages wait ([Hooks] OnStall,
// [Consumer.Stalled]). When the generation ends the batch in hand finishes,
// the progress is saved and the worker returns.
//
// # Failures
//
// A failing handler is retried with exponential back-off according to what
// its error says, per its [RetryPolicy]:
//
//   - permanent: errors wrapped with [Permanent], and invalid envelopes
//     ([envelope.ErrInvalid], which [envelope.Decode] errors match too), are
//     not retried;
//   - transient ([IsTransient]): errors wrapped with [Transient] or
//     [TransientAfter] (the webhook handler's network errors, timeouts, 5xx,
//     408 and 429), network errors and timeouts, and PostgreSQL errors that
//     blame the moment rather than the statement are retried until
//     RetryPolicy.RetryFor has passed since the first attempt, holding the
//     partition for that handler: an outage of what the handler calls
//     delays its events, in order, and dead-letters none;
//   - anything else is retried up to RetryPolicy.MaxAttempts such failures
//     within MaxElapsed.
//
// When the policy is spent the message is stored in pulsebus.dead_letters
// for that handler, raw, and the handler moves on; dead-lettering never fails on
// the message's content. A failure of the consumer's own database work is
// not the handler's: it dead-letters nothing, and the worker restarts from its
// saved offset. [Admin] lists, redrives ([Admin.Redrive]) and deletes dead
// letters, lists the events held behind them, shows lag and replays a
// handler ([Admin.Replay]): running consumers reload that handler's
// workers at once, so it alone re-handles the events.
//
// # Stopping
//
// When the context given to [Consumer.Run] ends, workers stop taking new
// messages, the batches in hand finish (up to Config.DrainTimeout, after
// which the handlers' context is cancelled and those messages are left for
// the next run, not dead-lettered), progress is saved and the member leaves the
// group. A handler waiting between retries stops waiting at once; its
// message is left for the next run too. A rebalance stops a generation the
// same way.
//
// The package does not import Prometheus: it reports through [Hooks]
// (see package dispatchprom).
package dispatch
