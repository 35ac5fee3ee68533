// Package outbox is the transactional outbox of PulseBus: a producer side
// that writes events into PostgreSQL inside the caller's transaction, and a
// relay that moves them to Kafka.
//
// # Producing
//
// [InsertTx] writes any number of envelopes into pulsebus.outbox in one
// round trip, inside the caller's transaction, so the business change and
// its events commit or roll back together: no event for a change that did
// not commit, none lost for one that did. It signals the relay on
// [NotifyChannel]; PostgreSQL delivers the signal only when the
// transaction commits. Producers in other languages call the SQL function
// pulsebus.publish, which writes the same row.
//
// Both refuse an event the relay could never publish: a topic Kafka refuses,
// or a key, attribute, header count or payload over the limits in the one
// row of pulsebus.limits, the single definition of the limits. The same SQL
// function (pulsebus.broken_event_rule) tests every row in both inserting
// statements, so they accept and refuse exactly the same events; a refusal
// is SQLSTATE 22023 naming the field, which InsertTx turns into the error Go
// validation gives. [LoadLimits] reads the row.
//
// InsertTx writes through the SQL function pulsebus.insert_events, which,
// like pulsebus.publish, runs as the schema's owner (SECURITY DEFINER) and
// checks every event: a producer's database role needs only membership in
// pulsebus_producer and no privilege on the outbox itself (README
// "Security"). An event whose id is already in the outbox is refused with
// [ErrDuplicateEventID].
//
// # The relay's state machine
//
// Relays sharing a [RelayConfig.Name] elect one leader through a lease row
// in pulsebus.relay_leader. A relay is a follower until it finds the lease
// missing or expired and takes it, starting a new term (term+1). As leader
// it renews the lease every LeaseTTL/3; it steps down when a renewal finds
// the term ended, or when its local deadline (the start of its last good
// renewal plus LeaseTTL, never later than the row's expiry) comes within
// LeaseTTL/5. Only the leader claims rows; a follower polls the lease and
// takes over within LeaseTTL plus one PollInterval after a leader died
// without releasing it, at once after a clean [Relay.Stop].
//
//	             lease missing or expired: take it (term+1)
//	+----------+ -----------------------------------> +--------+
//	| follower |                                      | leader |
//	+----------+ <----------------------------------- +--------+
//	 tries the     renewal finds the term ended, or    renews every
//	 lease every   the local deadline comes within     LeaseTTL/3; claims
//	 PollInterval  LeaseTTL/5                          and publishes
//	     |                                                 |
//	     | Stop                                            | Stop: finish the
//	     v                                                 v batch, release
//	+---------+ <------------------------------------------+ the lease
//	| stopped |
//	+---------+
//
// In code: keepLease alternates runFollower and runLeader; loop claims
// and publishes batches only while the relay is the leader (runBatch),
// and otherwise waits (waitForWork).
//
// The leader loops over batches. A batch is one transaction: delete (claim)
// the oldest visible rows in id order, up to BatchSize rows and
// MaxBatchBytes bytes, FOR UPDATE SKIP LOCKED; produce them; and commit
// the delete only after the broker acknowledged every message, or else
// settle: delete what was acknowledged, park what was refused for good,
// and leave the rest, with an attempt and its own error counted, for the
// next try. The next batch is claimed ahead, in a second transaction that
// excludes the batch in hand's rows by id and takes only what that batch
// leaves of MaxBatchBytes: while the batch is produced when it came back
// full (a backlog), or while it commits when notifications arrived
// meanwhile. It is produced only after the batch before it succeeded; if
// that one did not go through whole, the claim-ahead is rolled back
// unpublished before that batch is settled, so a settle never waits for a
// lock the relay itself holds.
//
// Back-off: rows that failed transiently (a missing topic, a partition
// without leader, a broker unreachable) make their topic back off on its
// own, exponentially from BackoffInitial to BackoffMax; claims skip the
// topic's rows until its back-off ends, so its rows keep their order and
// every other topic flows at full speed. A topic that succeeds again
// starts over. Only a failure of the whole batch (a database error, the
// lease lost) backs the whole relay off.
//
// # Waking the relay
//
// The leader claims at once after a full batch; otherwise it waits for a
// notification (LISTEN on a dedicated connection, reconnected with
// back-off; PollOnly turns it off), for a follow-up, or for the poll.
//
// PostgreSQL commits notifying transactions one at a time: they hold a
// global lock on the notification queue from just before their commit
// record to the end of the commit, so they lose group commit. A
// notification in every producer transaction held 16 concurrent
// single-event producers to a fifth to two fifths of the rate they reach
// without notifying. So a producer transaction notifies only if it takes
// the advisory lock 0x70626e6f74696679 ("pbnotify") without waiting
// (pg_try_advisory_xact_lock, held to the transaction's end, released with
// a rolled-back savepoint like the notification): while one open
// transaction is notifying, the others skip it and commit in parallel.
//
// A transaction that skipped is covered by the notifier's notification if
// it commits before the claim that notification wakes. If it commits
// after, no notification names its row; follow-up claims find it. After a
// claim that found rows the leader claims again NotifyDebounce later,
// notified or not; each claim that comes back empty doubles the delay, up
// to PollInterval; a notification, or a claim that finds rows, starts
// over. A skipper committing t after the notifier's claim is so found
// within about t plus NotifyDebounce. Notifications are debounced the same
// way: claims woken by them start at least NotifyDebounce apart, so a
// burst of commits is claimed as one batch, and under steady load the
// relay runs at most about one claim per NotifyDebounce (besides full
// batches), not one per commit.
//
// The worst case is bounded by PollInterval: between batches the leader
// never waits longer than one (jittered down by up to 20%; after a failed
// batch it backs off instead, as described above), so a committed row
// waits at most PollInterval, plus the batch in hand, for a claim. A
// row waits that long only when nothing covers it: its transaction skipped
// the notification and committed long after the notifier (having inserted
// early in a long transaction) or after the notifier rolled back, while no
// other activity kept the follow-ups fast; or LISTEN is down, or PollOnly.
// A transaction that stays open long after InsertTx holds the lock all
// that time and so silences the other producers' notifications: in long
// transactions, insert the events last. An idle relay claims once per
// PollInterval; after activity the follow-ups cost about
// log2(PollInterval/NotifyDebounce) empty claims before it settles back.
//
// # Guarantees
//
// At least once: a row is deleted only in the transaction that claimed it,
// after the broker acknowledged its message (or in a fenced settle
// statement after that). A relay crash, a lost database connection or a
// broker failure at any point leaves the row in the outbox or on Kafka, or
// both: duplicates are possible (after a crash or a failure between
// acknowledgement and commit, or a produce request the broker answered too
// late), losses are not. Duplicates carry the same ce_id.
//
// Order: per partition, and so per key, messages go out in row id order,
// one produce request at a time, and a partition stops at its first failed
// request, so what a batch leaves behind comes after what it published.
// Claims always start from the head of the table, so a row whose
// transaction committed after later ids (a late committer) is published in
// the next batch, never skipped. Row id order is commit order for events
// of one key as long as the transactions writing that key do not overlap
// (the usual case: they update the same aggregate row, which serializes
// them); for overlapping ones it is the order they inserted in. Among
// duplicates, the first occurrences are in order. Messages without a key
// go to a random partition and have no order; adding partitions to a topic
// moves keys, as with any Kafka producer.
//
// Fencing: deletes are fenced by the database. The claim locks the lease
// row FOR KEY SHARE after checking the term is live, and a relay taking
// over locks it FOR UPDATE, so no new term begins while a claim of the old
// one is open; and the commit first locks the row FOR SHARE and checks
// that (leader, term) is still this relay's, so a term ended by any other
// means (an operator's UPDATE, a takeover after PostgreSQL cut a paused
// relay's connection) makes the commit roll back. Publishing is fenced by
// time: every produce request has a deadline no later than the lease's
// local deadline less the safety margin, set on the socket, and the relay
// never gives up on a request before its deadline. A relay paused between
// its lease check and a produce therefore writes nothing once its lease
// could have expired. Kafka without transactions cannot reject a request
// the network delivered late; such a request only adds duplicates.
//
// Parking: a message Kafka refuses for good (too large, invalid topic, not
// authorized, invalid record) or a row that does not form a valid envelope
// moves to pulsebus.outbox_parked with its error, is counted through
// [Hooks.OnParked] and logged, and the rest of the stream keeps moving.
// With [OnRefusedHoldKey] (the default) the rest of its own key does not:
// within the batch the later rows of the refused row's topic and key are
// not sent, and every later claim skips a keyed row while outbox_parked
// holds an earlier row of its topic and key, so per-key order holds through
// a poison event; requeuing the parked row (under its old id, so it goes
// out first) or deleting it releases them. Everything else (broker down or slow, leader changes, a missing topic
// unless AutoCreateTopics) is transient: the rows stay.
//
// Shutdown: [Relay.Stop] stops claiming, lets the batch in hand finish,
// and when its context ends first abandons it: no further request is
// sent, the ones in flight are waited for (at most WriteTimeout), what was
// acknowledged is deleted and the rest stays in the outbox, claimed by no
// one. Then the lease is released.
//
// # Database use
//
// The relay holds up to three pool connections and two of its own (LISTEN
// and the lease), commits claims and settles with synchronous_commit = off,
// and its claim is shaped so that no statistics can make PostgreSQL plan
// it badly. docs/design.md#database-use and docs/design.md#claim-plan in
// the repository explain why.
//
// The package never imports Prometheus: the relay reports through
// [Hooks], and the binaries wire metrics (package outboxprom).
package outbox
