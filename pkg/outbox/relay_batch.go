package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
)

// claimSQL locks the lease row for (name, leader_id, term) FOR KEY SHARE,
// so no new term can begin until this transaction ends, and deletes the
// oldest rows in id order. The caller commits only after the broker
// acknowledged every message; a rollback puts the rows back.
//
// It runs with pgx.QueryExecModeCacheDescribe: the unnamed statement is
// planned for its actual parameters on every call. A cached generic plan,
// made while the table looked empty, can turn the IN (...) into a nested
// loop that re-runs the sorted subquery per row (DESIGN.md §3).
var claimSQL = `
WITH lease AS (
	SELECT 1 FROM pulsebus.relay_leader
	 WHERE name = $1 AND leader_id = $2 AND term = $3 AND expires_at > clock_timestamp()
	   FOR KEY SHARE
)
DELETE FROM pulsebus.outbox
 WHERE id IN (SELECT id FROM pulsebus.outbox
               WHERE EXISTS (SELECT 1 FROM lease)
               ORDER BY id LIMIT $4
                 FOR UPDATE SKIP LOCKED)
RETURNING ` + RowColumns

// settleSQL finishes a batch that did not go through whole, as one atomic
// statement fenced by the lease: it deletes the acknowledged rows, moves the
// refused ones to outbox_parked with their errors and counts an attempt on
// the rest, which stay. It returns whether the lease was still held.
const settleSQL = `
WITH lease AS (
	SELECT 1 FROM pulsebus.relay_leader
	 WHERE name = $1 AND leader_id = $2 AND term = $3 AND expires_at > clock_timestamp()
	   FOR KEY SHARE
), acked AS (
	DELETE FROM pulsebus.outbox WHERE id = ANY($4::bigint[]) AND EXISTS (SELECT 1 FROM lease)
), parked AS (
	DELETE FROM pulsebus.outbox o
	 USING unnest($5::bigint[], $6::text[]) AS p(id, error)
	 WHERE o.id = p.id AND EXISTS (SELECT 1 FROM lease)
	RETURNING o.*, p.error
), moved AS (
	INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time,
	                                    content_type, meta, payload, created_at, attempts, error)
	SELECT id, event_id, topic, key, type, source, subject, event_time,
	       content_type, meta, payload, created_at, attempts + 1, error
	  FROM parked
), failed AS (
	UPDATE pulsebus.outbox SET attempts = attempts + 1, last_error = $8
	 WHERE id = ANY($7::bigint[]) AND EXISTS (SELECT 1 FROM lease)
)
SELECT EXISTS (SELECT 1 FROM lease)`

type batchResult struct {
	claimed, published, parked int
}

// relayBatch claims up to BatchSize rows, publishes them and deletes them
// once acknowledged. A transient failure leaves the unacknowledged rows in
// the outbox and returns an error (the caller backs off); rows refused for
// good are parked and do not make it fail.
func (r *Relay) relayBatch(ctx context.Context, term leaseTerm) (res batchResult, err error) {
	tx, err := r.cfg.DB.BeginTx(ctx, pgx.TxOptions{BeginQuery: r.beginSQL()})
	if err != nil {
		r.hooks.PublishError(ReasonDatabase)
		return res, fmt.Errorf("claim outbox batch: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	rows, err := tx.Query(ctx, claimSQL, pgx.QueryExecModeCacheDescribe, r.cfg.Name, r.cfg.ID, term.Term, r.cfg.BatchSize)
	if err != nil {
		r.hooks.PublishError(ReasonDatabase)
		return res, fmt.Errorf("claim outbox batch: %w", err)
	}
	var (
		batch     []Row
		decodeErr = map[int64]error{} // row id → decode error
	)
	for rows.Next() {
		row, err := ScanRow(rows)
		var rde *RowDecodeError
		if errors.As(err, &rde) {
			decodeErr[row.ID] = err
		} else if err != nil {
			rows.Close()
			r.hooks.PublishError(ReasonDatabase)
			return res, fmt.Errorf("claim outbox batch: %w", err)
		}
		batch = append(batch, row)
	}
	if err := rows.Err(); err != nil {
		r.hooks.PublishError(ReasonDatabase)
		return res, fmt.Errorf("claim outbox batch: %w", err)
	}
	res.claimed = len(batch)
	if len(batch) == 0 {
		return res, nil
	}
	// DELETE ... RETURNING hands rows back in no set order.
	slices.SortFunc(batch, func(a, b Row) int { return cmp.Compare(a.ID, b.ID) })

	// Fence the publish: a relay paused past its lease must not produce.
	if time.Now().After(term.Deadline.Add(-r.safetyMargin())) {
		r.hooks.PublishError(ReasonLeaseLost)
		return res, fmt.Errorf("publish outbox batch: %w before producing", ErrLeaseLost)
	}
	pubCtx, cancel := context.WithDeadline(ctx, term.Deadline)
	start := time.Now()
	out := r.publish(pubCtx, batch, decodeErr)
	cancel()
	r.hooks.Batch(len(batch), time.Since(start))

	if out.complete() {
		if err := tx.Commit(ctx); err != nil {
			r.hooks.PublishError(ReasonDatabase)
			return res, fmt.Errorf("delete published outbox batch (rows will be published again): %w", err)
		}
		res.published = len(batch)
		r.reportAcked(batch, out)
		return res, nil
	}

	// Partial: undo the claim, then settle acknowledged, parked and failed
	// rows in one fenced statement.
	if err := tx.Rollback(ctx); err != nil {
		r.hooks.PublishError(ReasonDatabase)
		return res, fmt.Errorf("roll back partial outbox batch: %w", err)
	}
	var ackedIDs, parkedIDs, failedIDs []int64
	var parkedErrs []string
	for i, row := range batch {
		switch {
		case out.acked[i]:
			ackedIDs = append(ackedIDs, row.ID)
		case out.parked[i] != nil:
			parkedIDs = append(parkedIDs, row.ID)
			parkedErrs = append(parkedErrs, out.parked[i].Error())
		default:
			failedIDs = append(failedIDs, row.ID)
		}
	}
	lastErr := ""
	if out.err != nil {
		lastErr = out.err.Error()
	}
	var held bool
	if err := r.cfg.DB.QueryRow(ctx, settleSQL, r.cfg.Name, r.cfg.ID, term.Term,
		ackedIDs, parkedIDs, parkedErrs, failedIDs, lastErr).Scan(&held); err != nil {
		r.hooks.PublishError(ReasonDatabase)
		return res, fmt.Errorf("settle partial outbox batch (acknowledged rows will be published again): %w", err)
	}
	if !held {
		r.hooks.PublishError(ReasonLeaseLost)
		return res, fmt.Errorf("settle partial outbox batch: %w; a new leader publishes the rows again", ErrLeaseLost)
	}
	res.published, res.parked = len(ackedIDs), len(parkedIDs)
	r.reportAcked(batch, out)
	for i, row := range batch {
		if perr := out.parked[i]; perr != nil {
			r.hooks.Parked(row.Topic, perr.Reason)
			r.log.Error("outbox row parked: the broker refuses it for good",
				"id", row.ID, "event_id", row.Envelope.ID, "topic", row.Topic, "reason", perr.Reason, "err", perr.Err)
		}
	}
	if out.err != nil {
		return res, out.err
	}
	return res, nil
}

// beginSQL starts the claim transaction with bounds on a hung holder: a
// claim that stalls or a relay that stops between claim and commit is
// rolled back and its lock on the lease row released.
func (r *Relay) beginSQL() string {
	ms := r.cfg.LeaseTTL.Milliseconds()
	return fmt.Sprintf("BEGIN; SET LOCAL idle_in_transaction_session_timeout = %d; SET LOCAL statement_timeout = %d", ms, ms)
}

func (r *Relay) reportAcked(batch []Row, out publishOutcome) {
	now := time.Now()
	counts := map[string]int{}
	for i, row := range batch {
		if out.acked[i] {
			counts[row.Topic]++
			r.hooks.CommitToAck(now.Sub(row.CreatedAt))
		}
	}
	for topic, n := range counts {
		r.hooks.Published(topic, n)
	}
}

// publishOutcome is what happened to each message of a batch.
type publishOutcome struct {
	acked  []bool
	parked []*PublishError
	err    error // the transient error that stopped the batch, if any
}

func (o publishOutcome) complete() bool {
	if o.err != nil {
		return false
	}
	for i := range o.acked {
		if !o.acked[i] {
			return false
		}
	}
	return true
}

// publish produces batch in order and reports per message whether it was
// acknowledged, refused for good, or not sent.
//
// Order: the batch is cut into chunks that each fit in one produce request
// per partition (at most BatchSize messages and MaxMessageBytes bytes in
// all), sent one after the other. A partition's share of a chunk is one
// record batch, which the broker appends whole or not at all. Publishing
// stops at the first chunk with a transient failure, so for every partition
// (and so every key) the acknowledged messages are a prefix of its messages
// in the batch and the rows left behind come after them. A chunk with a
// permanent failure is retried one message at a time, in order, to find the
// refused message(s) and publish the rest.
func (r *Relay) publish(ctx context.Context, batch []Row, decodeErr map[int64]error) publishOutcome {
	out := publishOutcome{acked: make([]bool, len(batch)), parked: make([]*PublishError, len(batch))}
	msgs := make([]kafka.Message, 0, len(batch))
	idx := make([]int, 0, len(batch)) // message i is batch[idx[i]]
	for i, row := range batch {
		if e := decodeErr[row.ID]; e != nil {
			out.parked[i] = ClassifyPublishError(e)
			continue
		}
		msg, err := r.cfg.Limits.ToMessage(row.Envelope)
		if err != nil {
			out.parked[i] = ClassifyPublishError(fmt.Errorf("row %d: %w", row.ID, err))
			continue
		}
		msg.Topic = row.Topic
		if size := messageSize(&msg); size > r.cfg.MaxMessageBytes {
			out.parked[i] = ClassifyPublishError(fmt.Errorf("row %d: %d bytes, more than the relay's max message bytes %d: %w",
				row.ID, size, r.cfg.MaxMessageBytes, kafka.MessageTooLargeError{Message: msg}))
			continue
		}
		msgs = append(msgs, msg)
		idx = append(idx, i)
	}
	for start := 0; start < len(msgs); {
		end, bytes := start, 0
		for end < len(msgs) && end-start < r.cfg.BatchSize {
			n := messageSize(&msgs[end])
			if end > start && bytes+n > r.cfg.MaxMessageBytes {
				break
			}
			bytes += n
			end++
		}
		if err := r.publishChunk(ctx, msgs[start:end], idx[start:end], &out); err != nil {
			out.err = err
			return out
		}
		start = end
	}
	return out
}

// publishChunk sends one chunk. It returns a transient error when the chunk
// could not be fully acknowledged or parked.
func (r *Relay) publishChunk(ctx context.Context, msgs []kafka.Message, idx []int, out *publishOutcome) error {
	err := r.write(ctx, msgs)
	if err == nil {
		for _, i := range idx {
			out.acked[i] = true
		}
		return nil
	}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == len(msgs) {
		var failed []int
		permanent := false
		for j, e := range werrs {
			if e == nil {
				out.acked[idx[j]] = true
				continue
			}
			failed = append(failed, j)
			if ClassifyPublishError(e).Permanent {
				permanent = true
			}
		}
		if !permanent {
			first := ClassifyPublishError(werrs[failed[0]])
			r.hooks.PublishError(first.Reason)
			return fmt.Errorf("publish %d of %d messages: %w", len(failed), len(msgs), first)
		}
		// The failed messages are whole partitions of this chunk, nothing
		// of which was appended: sending them one by one in order keeps
		// each partition's order.
		return r.publishOneByOne(ctx, msgs, idx, failed, out)
	}
	pe := ClassifyPublishError(err)
	if !pe.Permanent {
		r.hooks.PublishError(pe.Reason)
		return pe
	}
	// A permanent error before anything was sent (a topic-level metadata
	// error): find the message(s) it belongs to.
	all := make([]int, len(msgs))
	for j := range all {
		all[j] = j
	}
	return r.publishOneByOne(ctx, msgs, idx, all, out)
}

func (r *Relay) publishOneByOne(ctx context.Context, msgs []kafka.Message, idx []int, which []int, out *publishOutcome) error {
	for _, j := range which {
		err := r.write(ctx, msgs[j:j+1])
		if err == nil {
			out.acked[idx[j]] = true
			continue
		}
		pe := ClassifyPublishError(err)
		r.hooks.PublishError(pe.Reason)
		if !pe.Permanent {
			return pe
		}
		out.parked[idx[j]] = pe
	}
	return nil
}

// write produces msgs, creating missing topics when configured to, or
// naming them.
func (r *Relay) write(ctx context.Context, msgs []kafka.Message) error {
	err := r.writer.WriteMessages(ctx, msgs...)
	if err == nil || !isUnknownTopic(err) {
		return err
	}
	topics := map[string]bool{}
	for i := range msgs {
		topics[msgs[i].Topic] = true
	}
	missing, merr := r.missingTopics(ctx, topics)
	if merr != nil || len(missing) == 0 {
		return err
	}
	if !r.cfg.AutoCreateTopics {
		return &UnknownTopicError{Topics: missing}
	}
	if cerr := r.createTopics(ctx, missing); cerr != nil {
		return cerr
	}
	return r.writer.WriteMessages(ctx, msgs...)
}

func isUnknownTopic(err error) bool {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if e != nil && errors.Is(e, kafka.UnknownTopicOrPartition) {
				return true
			}
		}
		return false
	}
	return errors.Is(err, kafka.UnknownTopicOrPartition)
}

func (r *Relay) missingTopics(ctx context.Context, topics map[string]bool) ([]string, error) {
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	slices.Sort(names)
	meta, err := r.client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, t := range meta.Topics {
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			missing = append(missing, t.Name)
		}
	}
	return missing, nil
}

func (r *Relay) createTopics(ctx context.Context, topics []string) error {
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{
			Topic: t, NumPartitions: r.cfg.TopicPartitions, ReplicationFactor: r.cfg.TopicReplicationFactor,
		})
	}
	resp, err := r.client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create Kafka topics %v: %w", topics, err)
	}
	for t, e := range resp.Errors {
		if e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create Kafka topic %s: %w", t, e)
		}
	}
	r.log.Info("created Kafka topics", "topics", topics, "partitions", r.cfg.TopicPartitions, "replication_factor", r.cfg.TopicReplicationFactor)
	return nil
}

// messageSize approximates a message's size in a record batch, as kafka-go
// counts it against Writer.BatchBytes.
func messageSize(m *kafka.Message) int {
	n := 4 + 1 + 1 + 8 + 4 + len(m.Key) + 4 + len(m.Value)
	for _, h := range m.Headers {
		n += 2 + len(h.Key) + 4 + len(h.Value)
	}
	return n
}
