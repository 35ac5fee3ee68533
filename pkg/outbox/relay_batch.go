package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/internal/outboxrow"
	"github.com/edupulse/pulsebus/internal/tracing"
)

// claimSQL deletes the oldest rows in id order inside the caller's
// transaction, which commits only after the broker acknowledged every
// message; a rollback puts the rows back. It first locks the lease row for
// (name, leader_id, term) FOR KEY SHARE, checking the lease is unexpired,
// and holds that lock to the end of the transaction: tryAcquire's FOR
// UPDATE waits for it, so no new term can begin while a claim of this one
// is open.
//
// Parameters: $1 name, $2 leader_id, $3 term; $4 the most rows; $5 the ids
// of the relay's other open claim (the batch in hand, when this is the
// claim-ahead), never taken; $6 topics backing off, skipped; $7 the most
// bytes (rowSizeSQL summed over the rows); $8 whether the first row is
// taken even when it alone is larger than $7; $9 whether rows are held
// behind a parked row of their topic and key (OnRefusedHoldKey): a row
// with a key is skipped while outbox_parked holds an earlier row (a lower
// id) of the same topic and key. The index outbox_parked_held_keys
// answers that per row; with no parked rows it costs one index probe of
// an empty index.
//
// The byte bound is a running sum over the head of the outbox, read
// without locks, so no row beyond the claimed prefix is locked: a locked,
// unclaimed row would be skipped by a later claim and published out of
// order. The DELETE then locks exactly the rows within the bound. It waits
// for a row another transaction holds rather than skipping it (bounded by
// the claim transaction's statement_timeout): the batch in hand's rows are
// excluded by id ($5), not by their locks, so the claim-ahead never meets
// them, even after that batch rolled back; what remains is an operator's
// statement (relay outbox park/delete, which skips the relay's rows and
// ends at once), and waiting for it keeps the claimed rows a prefix of the
// outbox where skipping would publish around them. Locking first (FOR
// UPDATE SKIP LOCKED) and deleting second cost a third pass over the rows:
// 3.3-3.5 ms against 2.1-2.4 ms per 1,000-row claim (EXPLAIN ANALYZE).
//
// Its shape cannot be planned badly: the ids are uncorrelated ARRAY(...)
// sublinks, InitPlans that run exactly once, so no plan can re-run the
// LIMIT per outer row (the nested-loop semi join a generic plan made on an
// empty table picks for "id IN (SELECT ...)", which also deletes far more
// than LIMIT rows, because each re-run skips the rows the previous ones
// locked). And the claim transaction sets enable_seqscan = off, so neither
// the ordered LIMIT nor the delete by id can become a sequential scan of a
// large table whose statistics say it is empty. The plans are index scans
// whatever the statistics and whether the plan is custom or generic
// (TestClaim_PlanIsSafe).
const claimSQL = `
WITH lease AS (
	SELECT 1 FROM pulsebus.relay_leader
	 WHERE name = $1 AND leader_id = $2 AND term = $3 AND expires_at > clock_timestamp()
	   FOR KEY SHARE
)
DELETE FROM pulsebus.outbox
 WHERE id = ANY (ARRAY(
		SELECT id FROM (
			SELECT id, sum(size) OVER (ORDER BY id) AS upto, row_number() OVER (ORDER BY id) AS n
			  FROM (SELECT id, ` + rowSizeSQL + ` AS size FROM pulsebus.outbox
			         WHERE EXISTS (SELECT 1 FROM lease)
			           AND id NOT IN (SELECT unnest($5::bigint[]))
			           AND topic <> ALL ($6::text[])
			           AND NOT ($9::boolean AND key <> '' AND EXISTS (
			                   SELECT 1 FROM pulsebus.outbox_parked p
			                    WHERE p.topic = outbox.topic AND p.key = outbox.key AND p.key <> '' AND p.id < outbox.id))
			         ORDER BY id LIMIT $4) AS head
		) AS sized
		 WHERE upto <= $7::bigint OR (n = 1 AND $8::boolean)))
RETURNING ` + outboxrow.Columns

// rowSizeSQL is the size a claimed row counts for against
// RelayConfig.MaxBatchBytes: its payload, key and meta and a fixed
// allowance for the other columns. octet_length of a bytea reads the
// stored length without decompressing it.
const rowSizeSQL = `(octet_length(payload) + octet_length(key) + pg_column_size(meta) + 128)`

// fenceSQL runs just before a batch transaction commits: it fails the
// transaction (division by zero, so the COMMIT is never reached) unless the
// lease row still names this relay and term, and it locks the row FOR
// SHARE to the commit so nothing can change it in between. The claim's FOR
// KEY SHARE keeps out relays taking the lease the normal way; this also
// stops the commit when the term was ended by anything else (an operator's
// UPDATE, or a takeover after PostgreSQL cut this relay's connection).
// Expiry is not checked: an expired lease that nobody took over yet still
// protects the batch.
const fenceSQL = `
SELECT 1 / count(*) FROM (
	SELECT 1 FROM pulsebus.relay_leader
	 WHERE name = $1 AND leader_id = $2 AND term = $3
	   FOR SHARE) AS held`

// settleSQL finishes a batch that did not go through whole, as one atomic
// statement fenced like fenceSQL, in its own transaction after the claim
// rolled back: it deletes the acknowledged rows, moves the refused ones to
// outbox_parked with their errors and counts an attempt on the rest, which
// stay, each with its own error. It returns whether the term was still
// held; when it was not, nothing changed.
//
// It runs after settleLockSQL locked the batch's rows, so it never waits
// for a row lock while it holds the lease row FOR SHARE (which a renewal
// would queue behind).
const settleSQL = `
WITH lease AS (
	SELECT 1 FROM pulsebus.relay_leader
	 WHERE name = $1 AND leader_id = $2 AND term = $3
	   FOR SHARE
), acked AS (
	DELETE FROM pulsebus.outbox WHERE id = ANY($4::bigint[]) AND EXISTS (SELECT 1 FROM lease)
), parked AS (
	DELETE FROM pulsebus.outbox o
	 USING unnest($5::bigint[], $6::text[]) AS p(id, error)
	 WHERE o.id = p.id AND EXISTS (SELECT 1 FROM lease)
	RETURNING o.*, p.error
), moved AS (
	INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time,
	                                    content_type, meta, payload, dataschema, created_at, attempts, error)
	SELECT id, event_id, topic, key, type, source, subject, event_time,
	       content_type, meta, payload, dataschema, created_at, attempts + 1, error
	  FROM parked
), failed AS (
	UPDATE pulsebus.outbox o SET attempts = o.attempts + 1, last_error = f.error
	  FROM unnest($7::bigint[], $8::text[]) AS f(id, error)
	 WHERE o.id = f.id AND EXISTS (SELECT 1 FROM lease)
)
SELECT EXISTS (SELECT 1 FROM lease)`

// settleLockSQL locks a failed batch's rows before settleSQL touches the
// lease row. A lock wait here (an operator's statement on the same rows)
// holds no lock that a lease renewal needs; statement_timeout bounds it.
const settleLockSQL = `SELECT count(*) FROM (SELECT 1 FROM pulsebus.outbox WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE) AS locked`

// txSettings are the claim and settle transactions' settings:
//   - bounds on a hung holder: a claim that stalls, or a relay that stops
//     between claim and commit, is rolled back and its lock on the lease row
//     released;
//   - index scans only (see claimSQL);
//   - no wait for the WAL flush at commit. Deleting published rows need not
//     be durable: if PostgreSQL loses the last commits in a crash, their
//     rows are back and published again, duplicates as after any crash
//     between ack and commit. It saves a disk flush per batch.
func txSettings(leaseTTL time.Duration) string {
	ms := leaseTTL.Milliseconds()
	return fmt.Sprintf("SELECT set_config('idle_in_transaction_session_timeout', '%d', true), "+
		"set_config('statement_timeout', '%d', true), set_config('enable_seqscan', 'off', true), "+
		"set_config('synchronous_commit', 'off', true)", ms, ms)
}

// beginSQL begins a transaction with txSettings, in one simple-protocol
// round trip.
func beginSQL(leaseTTL time.Duration) string {
	return "BEGIN; " + txSettings(leaseTTL)
}

// claimedBatch is an open claim transaction and the rows it deleted, in id
// order. The transaction is driven by hand on a pooled connection so that
// BEGIN and the claim, and the fence and COMMIT, each take one round trip.
type claimedBatch struct {
	conn      *pgxpool.Conn // nil once the transaction ended
	term      leaseTerm
	rows      []outboxRow
	bytes     int             // rowBytes summed over rows
	full      bool            // the claim hit its row or byte bound: more rows may be waiting
	decodeErr map[int64]error // row id → why it does not form an envelope
}

// rowBytes is what a claimed row counts for against MaxBatchBytes, the Go
// side of rowSizeSQL: payload, key, meta and an allowance for the rest.
func rowBytes(row *outboxRow) int {
	n := len(row.Envelope.Payload) + len(row.Envelope.Key) + 128
	for k, v := range row.Envelope.Meta {
		n += len(k) + len(v) + 8
	}
	return n
}

// claimBounds bound one claim.
type claimBounds struct {
	maxBytes   int      // most bytes (rowSizeSQL) claimed
	atLeastOne bool     // take the first row even when it alone exceeds maxBytes
	exclude    []int64  // ids of the batch in hand, never claimed ahead
	skipTopics []string // topics backing off
}

// ids returns the batch's row ids.
func (b *claimedBatch) ids() []int64 {
	ids := make([]int64, len(b.rows))
	for i := range b.rows {
		ids[i] = b.rows[i].ID
	}
	return ids
}

// rollback ends the transaction if it is still open: its rows go back to
// the outbox, claimed by no one.
func (b *claimedBatch) rollback() {
	if b.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// On failure the connection is not idle, and Release closes it:
	// PostgreSQL rolls back a transaction whose connection ends.
	_, _ = b.conn.Exec(ctx, "ROLLBACK")
	b.conn.Release()
	b.conn = nil
}

// commit runs the fence and COMMIT in one round trip. An error means
// nothing was deleted (or, for a lost answer, that it is unknown).
func (b *claimedBatch) commit(ctx context.Context, name, id string) error {
	batch := &pgx.Batch{}
	batch.Queue(fenceSQL, name, id, b.term.Term)
	batch.Queue("COMMIT")
	br := b.conn.SendBatch(ctx, batch)
	_, ferr := br.Exec()
	tag, cerr := br.Exec()
	if err := br.Close(); cerr == nil {
		cerr = err
	}
	switch {
	case ferr != nil:
		return ferr
	case cerr != nil:
		return cerr
	case tag.String() != "COMMIT":
		return fmt.Errorf("COMMIT answered %q", tag.String())
	}
	b.conn.Release()
	b.conn = nil
	return nil
}

// batchResult is what became of a batch.
type batchResult struct {
	claimed, published, parked int
	// waiting are the topics with rows neither acknowledged nor parked
	// (their partition or the topic failed transiently), with the error:
	// their rows stay in the outbox and the topic backs off.
	waiting map[string]error
	// held counts the rows not sent because an earlier row of their topic
	// and key was refused in the batch (OnRefusedHoldKey).
	held int
}

// claim opens a claim transaction and deletes up to BatchSize of the
// oldest visible rows within bounds, in one round trip. The caller must
// finish or roll back the batch.
func (r *Relay) claim(ctx context.Context, term leaseTerm, bounds claimBounds) (*claimedBatch, error) {
	r.claims.Add(1)
	conn, err := r.cfg.Pool.Acquire(ctx)
	if err != nil {
		r.hooks.publishFailed(ReasonDatabase)
		return nil, fmt.Errorf("claim outbox batch: %w", err)
	}
	b := &claimedBatch{conn: conn, term: term}
	if err := r.claimRows(ctx, b, bounds); err != nil {
		b.rollback()
		r.hooks.publishFailed(ReasonDatabase)
		return nil, fmt.Errorf("claim outbox batch: %w", err)
	}
	// DELETE ... RETURNING hands rows back in no set order.
	slices.SortFunc(b.rows, func(x, y outboxRow) int { return cmp.Compare(x.ID, y.ID) })
	for i := range b.rows {
		b.bytes += rowBytes(&b.rows[i])
	}
	// Full by bytes: the next row did not fit; rows are rarely so large
	// that a batch stops below half its byte bound for that.
	b.full = len(b.rows) >= r.cfg.BatchSize || (len(b.rows) > 0 && b.bytes >= bounds.maxBytes/2)
	return b, nil
}

func (r *Relay) claimRows(ctx context.Context, b *claimedBatch, bounds claimBounds) error {
	exclude, skip := bounds.exclude, bounds.skipTopics
	if exclude == nil {
		exclude = []int64{}
	}
	if skip == nil {
		skip = []string{}
	}
	batch := &pgx.Batch{}
	batch.Queue("BEGIN")
	batch.Queue(r.txSettings)
	batch.Queue(claimSQL, r.cfg.Name, r.cfg.ID, b.term.Term, r.cfg.BatchSize, exclude, skip, int64(bounds.maxBytes), bounds.atLeastOne,
		r.cfg.OnRefused == OnRefusedHoldKey)
	br := b.conn.SendBatch(ctx, batch)
	defer br.Close()
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	b.rows = make([]outboxRow, 0, min(r.cfg.BatchSize, 1024))
	in := &interner{}
	for rows.Next() {
		row, err := scanRow(rows, in)
		var rde *rowDecodeError
		if errors.As(err, &rde) {
			if b.decodeErr == nil {
				b.decodeErr = map[int64]error{}
			}
			b.decodeErr[row.ID] = err
		} else if err != nil {
			return err
		}
		b.rows = append(b.rows, row)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	return br.Close()
}

// finish publishes a claimed batch and ends its transaction: it commits
// (deleting the rows) only if every row was acknowledged or refused for
// good, and only while the term is still this relay's; otherwise it rolls
// back and settles what was acknowledged or refused. Rows that failed
// transiently stay in the outbox with their own error, and res.waiting
// names their topics, for the caller to back off per topic; an error is
// returned only when the batch as a whole failed (the database, the lease,
// or Stop abandoning it). ctx ends only the sending of further produce
// requests.
//
// afterAck, when not nil, runs once every row was acknowledged, before the
// commit: the loop claims the next batch there, overlapping the commit.
// beforeSettle, when not nil, runs before a batch that did not go through
// whole is rolled back and settled: the loop discards its claim-ahead
// there, so no other claim of this relay is open while it settles.
func (r *Relay) finish(ctx context.Context, b *claimedBatch, afterAck, beforeSettle func()) (res batchResult, err error) {
	defer b.rollback() // no-op after a commit
	res.claimed = len(b.rows)
	if len(b.rows) == 0 {
		return res, nil
	}
	safe := r.safeUntil(b.term.Term)
	if _, ok := safe(); !ok {
		r.hooks.publishFailed(ReasonLeaseLost)
		return res, fmt.Errorf("publish outbox batch: %w before producing", ErrLeaseLost)
	}
	start := time.Now()
	span := r.startPublishSpan(ctx, b.rows)
	out := r.pub.publish(ctx, b.rows, b.decodeErr, safe)
	ackedAt := time.Now()
	endPublishSpan(span, &out)
	r.hooks.batch(len(b.rows), ackedAt.Sub(start))

	// The rest are database statements: give them their own bound, so an
	// abandoned batch still records what the broker acknowledged.
	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.LeaseTTL)
	defer cancel()
	if out.allAcked() {
		if afterAck != nil {
			afterAck()
		}
		if err := r.commit(dbCtx, b); err != nil {
			return res, err
		}
		res.published = len(b.rows)
		r.reportAcked(b.rows, &out, ackedAt)
		return res, nil
	}
	if beforeSettle != nil {
		beforeSettle()
	}
	return r.settle(dbCtx, b, &out, ackedAt)
}

// commit ends a fully acknowledged batch: the fence, then COMMIT.
func (r *Relay) commit(ctx context.Context, b *claimedBatch) error {
	if err := b.commit(ctx, r.cfg.Name, r.cfg.ID); err != nil {
		if isDivisionByZero(err) {
			r.hooks.publishFailed(ReasonLeaseLost)
			return fmt.Errorf("delete published outbox batch: %w: term %d ended; the next leader publishes its rows again", ErrLeaseLost, b.term.Term)
		}
		r.hooks.publishFailed(ReasonDatabase)
		return fmt.Errorf("delete published outbox batch (its rows will be published again): %w", err)
	}
	return nil
}

// settle rolls the claim back and, in one fenced statement, deletes the
// acknowledged rows, parks the refused ones and counts an attempt on the
// others, each with its own error. The caller must have ended every other
// claim transaction of the relay: settling waits for the locks on the
// batch's rows, which after the rollback nothing but a claim of this
// relay could take.
func (r *Relay) settle(ctx context.Context, b *claimedBatch, out *publishOutcome, ackedAt time.Time) (res batchResult, err error) {
	res.claimed = len(b.rows)
	b.rollback()
	abandoned := errors.Is(out.err, errAbandoned)
	var ackedIDs, parkedIDs, failedIDs []int64
	var parkedErrs, failedErrs []string
	for i, row := range b.rows {
		switch {
		case out.acked[i]:
			ackedIDs = append(ackedIDs, row.ID)
		case out.parked[i] != nil:
			parkedIDs = append(parkedIDs, row.ID)
			parkedErrs = append(parkedErrs, out.parked[i].Error())
		case out.held[i]:
			// Waits behind its key's parked row: untouched, and not a
			// failure of its topic.
			res.held++
		case abandoned:
			// Not an attempt: the relay stopped before sending it.
		default:
			ferr := out.failed[i]
			if ferr == nil {
				ferr = out.err
			}
			if ferr == nil { // cannot happen: a row neither acked nor parked has an error
				ferr = fmt.Errorf("topic %s: not acknowledged", row.Topic)
			}
			failedIDs = append(failedIDs, row.ID)
			failedErrs = append(failedErrs, ferr.Error())
			if !errors.Is(ferr, ErrLeaseLost) {
				if res.waiting == nil {
					res.waiting = map[string]error{}
				}
				if _, seen := res.waiting[row.Topic]; !seen {
					res.waiting[row.Topic] = ferr
				}
			}
		}
	}
	settled := append(append(slices.Clone(ackedIDs), parkedIDs...), failedIDs...)
	var held bool
	err = pgx.BeginTxFunc(ctx, r.cfg.Pool, pgx.TxOptions{BeginQuery: r.beginSQL}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, settleLockSQL, pgx.QueryExecModeCacheDescribe, settled); err != nil {
			return err
		}
		return tx.QueryRow(ctx, settleSQL, pgx.QueryExecModeCacheDescribe, r.cfg.Name, r.cfg.ID, b.term.Term,
			ackedIDs, parkedIDs, parkedErrs, failedIDs, failedErrs).Scan(&held)
	})
	if err != nil {
		r.hooks.publishFailed(ReasonDatabase)
		return res, fmt.Errorf("settle partial outbox batch (acknowledged rows will be published again): %w", err)
	}
	if !held {
		r.hooks.publishFailed(ReasonLeaseLost)
		return res, fmt.Errorf("settle partial outbox batch: %w: term %d ended; the next leader publishes its rows again", ErrLeaseLost, b.term.Term)
	}
	res.published, res.parked = len(ackedIDs), len(parkedIDs)
	r.reportAcked(b.rows, out, ackedAt)
	for i, row := range b.rows {
		if perr := out.parked[i]; perr != nil {
			r.hooks.parked(row.Topic, perr.Reason)
			if r.cfg.OnRefused == OnRefusedHoldKey && row.Envelope.Key != "" {
				r.log.Error("outbox row parked: the broker refuses it for good; the later rows of its key wait behind it until it is requeued or deleted",
					"id", row.ID, "event_id", row.Envelope.ID, "topic", row.Topic, "key", row.Envelope.Key, "reason", perr.Reason, "err", perr.Err)
				continue
			}
			r.log.Error("outbox row parked: the broker refuses it for good",
				"id", row.ID, "event_id", row.Envelope.ID, "topic", row.Topic, "reason", perr.Reason, "err", perr.Err)
		}
	}
	// The batch as a whole failed: the caller backs off. Otherwise the
	// topics in res.waiting back off, each on its own.
	if abandoned || errors.Is(out.err, ErrLeaseLost) {
		return res, out.err
	}
	return res, nil
}

// reportAcked reports the acknowledged rows; ackedAt is when the broker's
// last answer for the batch arrived.
func (r *Relay) reportAcked(rows []outboxRow, out *publishOutcome, ackedAt time.Time) {
	n, topic := 0, ""
	for i := range rows {
		if !out.acked[i] {
			continue
		}
		r.hooks.commitToAck(ackedAt.Sub(rows[i].CreatedAt))
		if rows[i].Topic != topic {
			if n > 0 {
				r.hooks.published(topic, n)
			}
			n, topic = 0, rows[i].Topic
		}
		n++
	}
	if n > 0 {
		r.hooks.published(topic, n)
	}
}

// startPublishSpan starts the batch's publish span, linked to the trace
// context of each event that carries one.
func (r *Relay) startPublishSpan(ctx context.Context, rows []outboxRow) trace.Span {
	var links []trace.Link
	topics := make([]string, 0, 1)
	for i := range rows {
		if l, ok := tracing.Link(rows[i].Envelope.Meta); ok {
			links = append(links, l)
		}
		if !slices.Contains(topics, rows[i].Topic) {
			topics = append(topics, rows[i].Topic)
		}
	}
	attrs := []attribute.KeyValue{
		tracing.MessagingSystem.String(tracing.MessagingSystemKafka),
		tracing.MessagingOperationType.String(tracing.OperationTypeSend),
		tracing.MessagingOperationName.String(tracing.OperationNamePublish),
		tracing.MessagingBatchCount.Int(len(rows)),
	}
	name := tracing.OperationNamePublish
	if len(topics) == 1 {
		attrs = append(attrs, tracing.MessagingDestination.String(topics[0]))
		name += " " + topics[0]
	}
	_, span := r.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(links...), trace.WithAttributes(attrs...))
	return span
}

// endPublishSpan records what the broker did with the batch and ends span.
func endPublishSpan(span trace.Span, out *publishOutcome) {
	var acked, parked, held int
	for i := range out.acked {
		switch {
		case out.acked[i]:
			acked++
		case out.parked[i] != nil:
			parked++
		case out.held[i]:
			held++
		}
	}
	span.SetAttributes(attribute.Int("pulsebus.acknowledged", acked), attribute.Int("pulsebus.parked", parked), attribute.Int("pulsebus.held", held))
	if out.err != nil {
		span.RecordError(out.err)
		span.SetStatus(codes.Error, out.err.Error())
	}
	span.End()
}
