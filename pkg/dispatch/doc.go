// Package dispatch is the consumer side of PulseBus: it reads a consumer
// group's topics and fans every message out to the handlers registered for
// its event type, each with its own progress.
//
// # Offsets
//
// The truth is pulsebus.handler_offsets(group, handler, topic, partition) →
// next_offset, not the Kafka group offset. When the group assigns a
// partition, every handler starts on it at its own next_offset (or, without
// a row, at the group's committed offset, else Config.StartOffset). The
// Kafka group offset is committed as the minimum over the handlers, for
// tooling only; resetting it changes nothing for handlers that have rows.
//
// Every write of an offset row is fenced: it applies only while the row is
// where the worker last saw it. A replay, or a member that took the
// partition over, moves the row; the worker's next write then fails, it
// drops what it holds and reloads. For transactional handlers that write is
// the last statement of the handler's own transaction, sent with its COMMIT
// in one round trip (and the BEGIN goes with the handler's first
// statement), so of two members handling the same event only one can
// commit: the other's update waits for the row lock, then finds the row
// moved, and its transaction rolls back. A member frozen inside a
// transaction (a stopped process, a paused VM) holds the locks its handler
// took; Config.TxIdleTimeout has PostgreSQL end its session so the member
// that took the partition over goes on.
//
// # Duplicates
//
// Each handler remembers the event ids (ce_id) of the last
// Config.DedupeWindow messages of each partition. A message whose id is
// among them — the relay republishes a batch after a crash between the
// broker's ack and its commit — is skipped and reported as
// OutcomeSkippedDuplicate. The window depends on the log alone: when a
// handler (re)starts on a partition it reads the window's messages before
// its next offset again to rebuild it, so a restart changes no decision.
//
// # Life of a member and of a worker
//
// [Consumer.Run] joins the group (kafka-go ConsumerGroup). Each generation
// it is given starts, for every assigned partition and handler, a worker;
// plus a committer of the Kafka group offsets and a watcher that ends the
// generation when a topic's partition count changes (a topic created
// later included), so that a rebalance assigns the new partitions. A
// generation ends on a rebalance, a lost coordinator or that watcher;
// kafka-go waits for all of them to return, then joins the next one.
//
// A worker runs sessions until its generation ends:
//
//	load      read the handler's row; without one, create it at the group's
//	          committed offset (else Config.StartOffset)
//	fill      read the dedupe window's messages before next_offset
//	handle    per batch: skip duplicates and other types, decode, run the
//	          handler (retry, park), advance next_offset — in the handler's
//	          transaction for a transactional one, in memory for the rest
//	flush     every Config.FlushInterval or Config.FlushMessages, and on
//	          the way out, save what is only in memory
//	→ load    after a replay notification, or when a fenced write found the
//	          row moved
//	→ load    after a failure of its own (fetching, loading or saving the
//	          offset, a handler transaction's connection, begin or commit),
//	          with a back-off from 100 ms to 10 s; nothing is parked for it
//	→ exit    when the generation ends: the batch in hand finishes, the
//	          progress is flushed
//
// # One reader per handler and partition
//
// Each (handler, partition) pair has its own worker with its own kafka-go
// reader, positioned at that handler's next offset (less the dedupe
// window), and a bounded buffer (Config.QueueCapacity messages, plus the
// batch in hand). Handlers therefore never wait for one another: a handler
// stuck in retries or parking messages holds only its own cursor, and a
// replay re-reads the partition for that handler alone. The price is that
// the partition is fetched and decoded once per handler, over one
// connection per handler and partition: about 3 µs of CPU per event and
// handler with kfake on the development machine (three no-op handlers cost
// three times one). With the few handlers a service has that is small next
// to the handlers' own work (a one-event transaction costs about 280 µs),
// and memory stays bounded by handlers × partitions × (QueueCapacity +
// batch) messages (see Config.QueueCapacity).
//
// # Handlers and guarantees
//
//   - Plain handlers ([Consumer.Handle]) are at-least-once. Their progress
//     is saved in batches (Config.FlushInterval, Config.FlushMessages), so a
//     crash re-delivers at most that much; they get env.ID as an
//     idempotency key.
//   - Transactional handlers ([Consumer.HandleTx], [Consumer.HandleBatchTx])
//     write through the given pgx.Tx; the offset advance commits in the same
//     transaction, so each Kafka message takes effect exactly once, across
//     crashes and rebalances, and a republished event within the dedupe
//     window is skipped.
//   - Per partition and handler, events are handled in Kafka order.
//
// # Failures
//
// A failing handler is retried with exponential back-off (cenkalti/backoff)
// according to what its error says, per its [RetryPolicy]:
//
//   - permanent: errors wrapped with [Permanent], and invalid envelopes
//     ([envelope.ErrInvalid], which [envelope.Decode] errors match too), are
//     not retried;
//   - transient ([IsTransient]): errors wrapped with [Transient] or
//     [TransientAfter] (the webhook handler's network errors, timeouts, 5xx,
//     408 and 429), network errors and timeouts, and PostgreSQL errors that
//     blame the moment rather than the statement (a lost connection, a
//     serialization failure, a deadlock, a server shutting down) are
//     retried until RetryPolicy.RetryFor (default 10 minutes) has passed
//     since the first attempt, at least as far apart as a [TransientAfter]
//     asks. The worker holds its partition for that handler meanwhile:
//     an outage of what the handler calls delays its events, in order,
//     and dead-letters none, and the other handlers go on;
//   - anything else, a constraint violation of the handler's own SQL
//     included (the handler knows whether it is permanent), is retried up
//     to RetryPolicy.MaxAttempts such failures within MaxElapsed.
//
// When the policy is spent the message is parked in pulsebus.dead_letters
// for that handler — with its raw key, headers and value, the error and the
// attempt count — and the handler moves on. Parking never fails on the
// message's content: key, header keys and values and value are stored as
// bytes, the text columns derived from them are made valid text (U+FFFD for
// invalid UTF-8 and NUL), and a row PostgreSQL refuses anyway is replaced by
// one holding only the message's position and the errors
// ([DeadLetter].MessageStored false), so one message never stops its
// partition. A message that is not a valid envelope is parked with its
// decode error by every handler that would have wanted it (all of them when
// it has no readable ce_type). A failure of the consumer's own database
// work (a lost connection, begin, commit) is not the handler's: it does not
// count as an attempt, and the worker restarts from its saved offset after
// a back-off, so a database outage parks nothing. [Admin.Redrive] runs
// a handler again on parked messages; [Admin.DeleteDeadLetters] drops them.
//
// # Per-key order through a dead letter
//
// By default a handler goes on after a dead letter with the same key's
// later events, so a redrive applies the failed event after them. A
// handler registered with [WithKeyOrder] keeps per-key order instead: the
// dead letter of an event with a non-empty Kafka key K becomes K's head
// (DeadLetter.HoldsKey), and the handler's later events of K on that
// partition are not run but stored in pulsebus.held_events, raw, in Kafka
// order (reported as [OutcomeHeld]); the handler goes on with every other
// key. Events without a key are never held. The worker keeps the held keys
// of its partition in memory, read when a session starts, so the check
// costs nothing for keys that are not held.
//
// A successful [Admin.Redrive] of a head, or [Admin.DeleteDeadLetters],
// removes it and NOTIFYs the consumers in the same transaction; the
// worker that owns the partition reloads and, before it reads on, runs the
// events of every held key that has no head any more, oldest first (a
// consumer that is not running does it when it starts). One that fails for
// good is dead-lettered as the key's new head, and the rest stay behind
// it. Holding and releasing are transactional for transactional handlers:
// a held event is stored in the transaction that moves the offset past it,
// and a released one is removed in the handler's transaction (fenced: of
// two members running it, one commits), so each event still takes effect
// exactly once, across crashes and rebalances. Plain handlers stay
// at-least-once.
//
// A replay leaves heads and held events alone: replayed events of a held
// key before its head run (they precede it), the head's own message is
// skipped, and those after it are held again (an event already held is not
// stored twice). A handler registered without WithKeyOrder runs at its next
// start what it held before, and its heads stop holding. Holding is per
// partition, as Kafka's order is.
//
// # Stalls
//
// A worker that has not advanced its saved offset for Config.StallTimeout
// while messages wait on its partition is stalled (a database write that
// keeps failing, a handler retried that long). A monitor looks at every
// worker each quarter of the timeout (at most every 5 s): a worker that has
// not advanced for two of those gets its lag measured from the broker's high
// watermark, since its own report stops while it is stuck; a stalled one is
// logged at error with the last error it met, reported through
// [Hooks].OnStall, and named by [Consumer.Stalled] until it advances again
// or ends.
//
// # Stopping
//
// When the context given to [Consumer.Run] ends, workers stop taking new
// messages, the batches in hand finish (up to Config.DrainTimeout, after
// which the handlers' context is cancelled and those messages are left for
// the next run, not parked), progress is saved and the member leaves the
// group. A handler waiting between retries stops waiting at once; its
// message is left for the next run too. A rebalance stops a generation the same way.
//
// # Replay
//
// [Admin.Replay] rewrites a handler's rows to earliest, latest, a time
// (Kafka ListOffsets) or an offset and NOTIFYs the consumers; running
// consumers reload that handler's workers at once, so it alone re-handles
// the events. An absolute offset names one partition and must lie within
// its low and high watermarks ([ReplayRangeError]).
//
// A saved offset beyond the partition's end (a recreated topic, a replay
// written by other means) would make Kafka return nothing until the
// partition grew past it. A worker that finds one — the broker's high
// watermark below it when nothing was fetched, or a fetch's — logs it at
// error, reports it through [Hooks].OnOffsetReset and moves the offset to
// the partition's low watermark: every event on the partition is handled,
// some perhaps again, rather than some skipped.
//
// The package does not import Prometheus: it reports through [Hooks].
package dispatch
