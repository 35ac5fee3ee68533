package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// publisher produces one claimed batch to Kafka through kafka-go's
// Transport, with produce requests it builds itself rather than through
// kafka.Writer, so that it controls exactly what is sent when:
//
//   - Per partition, the batch's messages go out in row order, one request
//     at a time; a partition stops at its first failed request. So for every
//     partition (and so every key) the acknowledged messages are a prefix of
//     the batch's messages for it, and what stays in the outbox comes after
//     them. Different partitions go in one request per leader broker.
//   - Every request has a deadline no later than the lease's safe time, and
//     the relay never stops waiting for a request before its deadline: once
//     the relay gives up on a batch, none of its requests can still be
//     written to the broker (kafka-go sets the deadline on the socket).
//   - No internal retries and no batching timer: a transient failure returns
//     to the relay loop, which backs off, re-claims from the head of the
//     outbox and tries again.
type publisher struct {
	transport   kafka.RoundTripper
	addr        net.Addr
	compression kafka.Compression
	maxBytes    int
	timeout     time.Duration
	limits      *envelope.Limits
	autoCreate  func(ctx context.Context, topics []string) error // nil: report missing topics
	hooks       Hooks
	holdKeys    bool // RelayConfig.OnRefused is OnRefusedHoldKey
}

// publishOutcome is what happened to each row of a batch.
type publishOutcome struct {
	acked  []bool
	parked []*PublishError
	// held marks a row not sent because an earlier row of its topic and
	// key in the batch was refused (OnRefusedHoldKey): it stays in the
	// outbox untouched, and the claim skips it while that row is parked.
	held []bool
	// failed is, for a row neither acknowledged nor parked, why: an error
	// naming its topic (and partition, once it had one).
	failed []error
	err    error // the first transient error, if any row was neither acked nor parked
}

func (o *publishOutcome) complete() bool {
	if o.err != nil {
		return false
	}
	for i := range o.acked {
		if !o.acked[i] && o.parked[i] == nil && !o.held[i] {
			return false
		}
	}
	return true
}

func (o *publishOutcome) allAcked() bool {
	for _, a := range o.acked {
		if !a {
			return false
		}
	}
	return o.err == nil
}

// safeUntil returns the time until which the relay may have produce
// requests in flight for the batch's lease term, and false once the term is
// over for this relay.
type safeUntil func() (time.Time, bool)

// recordBatchOverhead is the size of a v2 record batch header plus the
// per-partition framing of a produce request, an upper bound.
const recordBatchOverhead = 61 + 4 + 4

// partQueue is the messages of one partition in a batch, in row order.
type partQueue struct {
	topic     string
	partition int32
	msgs      []int           // indexes into the publish call's msgs
	next      int             // first message not yet acknowledged or parked
	done      bool            // all sent, or stopped by a failure
	err       error           // why it stopped short, naming topic and partition
	held      map[string]bool // keys with a refused message (OnRefusedHoldKey)
}

// stop ends the queue at its first message not yet acknowledged or
// parked, for err.
func (q *partQueue) stop(err error) {
	q.done = true
	q.err = fmt.Errorf("%s/%d: %w", q.topic, q.partition, err)
}

type pubMsg struct {
	msg  kafka.Message
	row  int // index into the batch
	size int
}

// publish produces rows and reports, per row, whether the broker
// acknowledged it, refused it for good (parked), or neither. ctx ends only
// the sending of further requests (Stop abandoning the batch); requests
// already sent are waited for until their deadline.
func (p *publisher) publish(ctx context.Context, rows []outboxRow, decodeErr map[int64]error, safe safeUntil) publishOutcome {
	out := publishOutcome{acked: make([]bool, len(rows)), parked: make([]*PublishError, len(rows)),
		held: make([]bool, len(rows)), failed: make([]error, len(rows))}
	msgs, topics := p.buildMessages(rows, decodeErr, &out)
	if len(msgs) == 0 {
		return out
	}
	meta, err := p.metadata(ctx, topics, safe)
	if err != nil {
		pe := classifyPublishError(err)
		if !errors.Is(err, errAbandoned) {
			p.hooks.publishFailed(pe.Reason)
		}
		out.err = pe
		for _, m := range msgs {
			out.failed[m.row] = fmt.Errorf("topic %s: %w", m.msg.Topic, pe)
		}
		return out
	}
	var first firstError
	queues, byPart := assignPartitions(msgs, meta, &out)
	for topic, tm := range meta {
		if tm.err != nil {
			p.hooks.publishFailed(tm.err.Reason)
			if !tm.err.Permanent {
				first.set(fmt.Errorf("topic %s: %w", topic, tm.err))
			}
		}
	}
	p.produceToLeaders(ctx, queues, msgs, &out, safe, first.set)
	out.err = first.get()
	for _, q := range byPart {
		for _, j := range q.msgs[q.next:] {
			if row := msgs[j].row; !out.acked[row] && out.parked[row] == nil && !out.held[row] {
				out.failed[row] = q.err
			}
		}
	}
	if out.err == nil && !out.complete() {
		// Cannot happen: every message is acked, parked or failed with an
		// error. Guard the invariant anyway: never delete what was not sent.
		out.err = errors.New("outbox relay: publish ended with messages neither acknowledged nor failed")
	}
	return out
}

// firstError keeps the first of the errors set from concurrent goroutines.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// buildMessages maps rows to messages and returns them with their topics.
// A row that cannot be sent (it does not decode, does not validate or is
// too large) is parked in out without a message; with OnRefusedHoldKey the
// later rows of its topic and key are held.
func (p *publisher) buildMessages(rows []outboxRow, decodeErr map[int64]error, out *publishOutcome) ([]pubMsg, []string) {
	msgs := make([]pubMsg, 0, len(rows))
	topics := make([]string, 0, 1)
	mb := newMessageBuilder(p.limits)
	var refusedKeys map[topicKey]bool // keys with a row refused before sending (OnRefusedHoldKey)
	for i := range rows {
		row := &rows[i]
		if refusedKeys[topicKey{row.Topic, row.Envelope.Key}] {
			out.held[i] = true
			continue
		}
		msg, err := p.message(mb, row, decodeErr[row.ID])
		if err != nil {
			out.parked[i] = classifyPublishError(err)
			if p.holdKeys && row.Envelope.Key != "" {
				if refusedKeys == nil {
					refusedKeys = map[topicKey]bool{}
				}
				refusedKeys[topicKey{row.Topic, row.Envelope.Key}] = true
			}
			continue
		}
		msgs = append(msgs, pubMsg{msg: msg, row: i, size: messageSize(&msg)})
		if !slices.Contains(topics, row.Topic) {
			topics = append(topics, row.Topic)
		}
	}
	return msgs, topics
}

// message builds row's message, or returns why it cannot be sent: its
// decoding error, an invalid envelope, or a size over maxBytes.
func (p *publisher) message(mb *messageBuilder, row *outboxRow, decodeErr error) (kafka.Message, error) {
	if decodeErr != nil {
		return kafka.Message{}, decodeErr
	}
	msg, err := mb.build(&row.Envelope)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("row %d: %w", row.ID, err)
	}
	msg.Topic = row.Topic
	if size := messageSize(&msg); size+recordBatchOverhead > p.maxBytes {
		return kafka.Message{}, fmt.Errorf("row %d: %d bytes, more than the relay's max message bytes %d: %w",
			row.ID, size, p.maxBytes, kafka.MessageTooLargeError{Message: msg})
	}
	return msg, nil
}

// assignPartitions puts each message in the queue of its partition and
// groups the queues by leader broker. A message of a topic whose metadata
// failed is parked (permanent) or failed in out instead.
func assignPartitions(msgs []pubMsg, meta map[string]topicMeta, out *publishOutcome) (map[int32][]*partQueue, map[partKey]*partQueue) {
	queues := map[int32][]*partQueue{} // leader → partitions
	byPart := map[partKey]*partQueue{}
	for j := range msgs {
		m := &msgs[j]
		tm := meta[m.msg.Topic]
		if tm.err != nil {
			if tm.err.Permanent {
				out.parked[m.row] = tm.err
			} else {
				out.failed[m.row] = tm.err
			}
			continue
		}
		part := int32(murmur2Balancer.Balance(kafka.Message{Key: m.msg.Key}, tm.plist...))
		k := partKey{m.msg.Topic, part}
		q := byPart[k]
		if q == nil {
			q = &partQueue{topic: k.topic, partition: part}
			byPart[k] = q
			leader := tm.partitions[part]
			queues[leader] = append(queues[leader], q)
		}
		q.msgs = append(q.msgs, j)
	}
	return queues, byPart
}

// produceToLeaders produces to every leader broker at once, one goroutine
// each, and waits for them. The queues of partitions without a leader stop
// at once.
func (p *publisher) produceToLeaders(ctx context.Context, queues map[int32][]*partQueue, msgs []pubMsg, out *publishOutcome, safe safeUntil, fail func(error)) {
	var wg sync.WaitGroup
	for leader, qs := range queues {
		if leader < 0 {
			pe := &PublishError{Reason: ReasonBrokerError, Err: fmt.Errorf("no leader: %w", kafka.LeaderNotAvailable)}
			for _, q := range qs {
				q.stop(pe)
			}
			p.hooks.publishFailed(ReasonBrokerError)
			fail(qs[0].err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.produceToLeader(ctx, qs, msgs, out, safe, fail)
		}()
	}
	wg.Wait()
}

type partKey struct {
	topic     string
	partition int32
}

// topicKey is a topic and a partition key: the unit of order.
type topicKey struct{ topic, key string }

// produceToLeader sends the queues' messages in rounds of one request to
// their leader broker, each carrying the next messages of every partition
// that is not done, within maxBytes.
func (p *publisher) produceToLeader(ctx context.Context, qs []*partQueue, msgs []pubMsg, out *publishOutcome, safe safeUntil, fail func(error)) {
	for {
		round := p.nextRound(qs, msgs)
		if len(round) == 0 {
			return
		}
		res, err := p.send(ctx, p.roundRequest(round, msgs), safe)
		if err != nil {
			pe := classifyPublishError(err)
			if !errors.Is(err, errAbandoned) {
				p.hooks.publishFailed(pe.Reason)
			}
			// Nothing of this request counts as acknowledged; its
			// partitions stop here and keep their order.
			for _, s := range round {
				s.q.stop(pe)
			}
			fail(pe)
			continue
		}
		for _, s := range round {
			p.recordSlice(ctx, s, partitionError(res, s.q.topic, s.q.partition), msgs, out, safe, fail)
		}
	}
}

// roundSlice is the messages q.msgs[from:to] of one partition in a round.
type roundSlice struct {
	q        *partQueue
	from, to int
}

// nextRound takes the next messages of every queue that is not done, in
// order, while they fit maxBytes; the first message of a round is taken
// whatever its size.
func (p *publisher) nextRound(qs []*partQueue, msgs []pubMsg) []roundSlice {
	var round []roundSlice
	budget := p.maxBytes
	for _, q := range qs {
		if q.done {
			continue
		}
		from, to := q.next, q.next
		for to < len(q.msgs) {
			n := msgs[q.msgs[to]].size
			if to == from {
				n += recordBatchOverhead
			}
			if n > budget && (to > from || len(round) > 0) {
				break
			}
			budget -= n
			to++
		}
		if to > from {
			round = append(round, roundSlice{q, from, to})
		}
	}
	return round
}

// roundRequest is the produce request of a round: one record batch per
// partition, grouped by topic.
func (p *publisher) roundRequest(round []roundSlice, msgs []pubMsg) *produceAPI.Request {
	req := &produceAPI.Request{Acks: int16(kafka.RequireAll)}
	for _, s := range round {
		var t *produceAPI.RequestTopic
		for i := range req.Topics {
			if req.Topics[i].Topic == s.q.topic {
				t = &req.Topics[i]
			}
		}
		if t == nil {
			req.Topics = append(req.Topics, produceAPI.RequestTopic{Topic: s.q.topic})
			t = &req.Topics[len(req.Topics)-1]
		}
		t.Partitions = append(t.Partitions, produceAPI.RequestPartition{
			Partition: s.q.partition,
			RecordSet: protocol.RecordSet{
				Attributes: protocol.Attributes(p.compression) & 0x7,
				Records:    &recordReader{msgs: msgs, idx: s.q.msgs[s.from:s.to]},
			},
		})
	}
	return req
}

// recordSlice records the broker's answer for one partition's slice of a
// round: acknowledged, stopped by a transient error, or, refused for good,
// sent again one message at a time to park only the refused ones.
func (p *publisher) recordSlice(ctx context.Context, s roundSlice, perr error, msgs []pubMsg, out *publishOutcome, safe safeUntil, fail func(error)) {
	if perr == nil {
		for _, j := range s.q.msgs[s.from:s.to] {
			out.acked[msgs[j].row] = true
		}
		s.q.next = s.to
		s.q.done = s.q.next == len(s.q.msgs)
		return
	}
	pe := classifyPublishError(perr)
	p.hooks.publishFailed(pe.Reason)
	if !pe.Permanent {
		s.q.stop(pe)
		fail(s.q.err)
		return
	}
	// The broker refused the record batch for good. Nothing of it was
	// appended: send it one message at a time, in order, to find and park
	// the refused message(s) and publish the rest.
	if k, err := p.oneByOne(ctx, s.q, s.from, s.to, msgs, out, safe); err != nil {
		s.q.next = k
		s.q.stop(err)
		fail(s.q.err)
		return
	}
	s.q.next = s.to
	s.q.done = s.q.next == len(s.q.msgs)
}

// oneByOne sends q.msgs[from:to] one request each, parking the refused
// ones. On a transient failure it returns the index in q.msgs it stopped
// at and the error.
//
// With OnRefusedHoldKey, a refused message's key is held: its later
// messages in the queue, here and in later rounds, are not sent (held).
// All of a key's messages are in one queue, its partition's.
func (p *publisher) oneByOne(ctx context.Context, q *partQueue, from, to int, msgs []pubMsg, out *publishOutcome, safe safeUntil) (int, error) {
	for k := from; k < to; k++ {
		j := q.msgs[k]
		if q.held[string(msgs[j].msg.Key)] {
			out.held[msgs[j].row] = true
			continue
		}
		req := &produceAPI.Request{Acks: int16(kafka.RequireAll), Topics: []produceAPI.RequestTopic{{
			Topic: q.topic,
			Partitions: []produceAPI.RequestPartition{{
				Partition: q.partition,
				RecordSet: protocol.RecordSet{
					Attributes: protocol.Attributes(p.compression) & 0x7,
					Records:    &recordReader{msgs: msgs, idx: q.msgs[k : k+1]},
				},
			}},
		}}}
		res, err := p.send(ctx, req, safe)
		if err == nil {
			err = partitionError(res, q.topic, q.partition)
		}
		if err == nil {
			out.acked[msgs[j].row] = true
			continue
		}
		pe := classifyPublishError(err)
		if !errors.Is(err, errAbandoned) {
			p.hooks.publishFailed(pe.Reason)
		}
		if !pe.Permanent {
			return k, pe
		}
		out.parked[msgs[j].row] = pe
		if key := msgs[j].msg.Key; p.holdKeys && len(key) > 0 {
			if q.held == nil {
				q.held = map[string]bool{}
			}
			q.held[string(key)] = true
		}
	}
	q.dropHeld(to, msgs, out)
	return to, nil
}

// dropHeld takes the messages of held keys out of q.msgs[from:], marking
// them held, so later rounds do not send them.
func (q *partQueue) dropHeld(from int, msgs []pubMsg, out *publishOutcome) {
	if len(q.held) == 0 {
		return
	}
	kept := q.msgs[:from]
	for _, j := range q.msgs[from:] {
		if q.held[string(msgs[j].msg.Key)] {
			out.held[msgs[j].row] = true
			continue
		}
		kept = append(kept, j)
	}
	q.msgs = kept
}

// errAbandoned stops a batch when the relay is stopping and gave up on it.
var errAbandoned = errors.New("relay stopping: batch abandoned")

// send sends one produce request with a deadline no later than the
// lease's safe time, and waits for its answer or its deadline.
func (p *publisher) send(ctx context.Context, req *produceAPI.Request, safe safeUntil) (*produceAPI.Response, error) {
	if ctx.Err() != nil {
		return nil, errAbandoned
	}
	until, ok := safe()
	deadline := time.Now().Add(p.timeout)
	if !ok || !time.Now().Before(until) {
		return nil, fmt.Errorf("%w: not producing after the lease's safe time", ErrLeaseLost)
	}
	deadline = minTime(deadline, until)
	// Not ctx: once written, a request is waited for until its deadline,
	// never abandoned while it could still reach the broker.
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	req.Timeout = int32(max(1, time.Until(deadline).Milliseconds()))
	m, err := p.transport.RoundTrip(rctx, p.addr, req)
	if err != nil {
		return nil, fmt.Errorf("produce: %w", err)
	}
	res, ok := m.(*produceAPI.Response)
	if !ok {
		return nil, fmt.Errorf("produce: unexpected response %T", m)
	}
	return res, nil
}

func partitionError(res *produceAPI.Response, topic string, partition int32) error {
	for i := range res.Topics {
		t := &res.Topics[i]
		if t.Topic != topic {
			continue
		}
		for j := range t.Partitions {
			pr := &t.Partitions[j]
			if pr.Partition == partition {
				if pr.ErrorCode == 0 {
					return nil
				}
				msg := pr.ErrorMessage
				for _, re := range pr.RecordErrors {
					msg += fmt.Sprintf(" (record %d: %s)", re.BatchIndex, re.BatchIndexErrorMessage)
				}
				if msg == "" {
					return kafka.Error(pr.ErrorCode)
				}
				return fmt.Errorf("%w: %s", kafka.Error(pr.ErrorCode), msg)
			}
		}
	}
	return fmt.Errorf("produce: no answer for %s/%d: %w", topic, partition, io.ErrUnexpectedEOF)
}

// topicMeta is what the publisher needs of a topic: the leader of each
// partition, or why it cannot be produced to.
type topicMeta struct {
	partitions []int32 // leader broker id per partition, -1 if none
	plist      []int   // 0 .. len(partitions)-1, for the balancer
	err        *PublishError
}

// metadata looks the topics up (kafka.Transport answers from its cache),
// creating missing ones when configured to.
func (p *publisher) metadata(ctx context.Context, topics []string, safe safeUntil) (map[string]topicMeta, error) {
	until, ok := safe()
	if !ok || !time.Now().Before(until) {
		return nil, fmt.Errorf("%w before producing", ErrLeaseLost)
	}
	mctx, cancel := context.WithDeadline(ctx, minTime(time.Now().Add(p.timeout), until))
	defer cancel()
	res, err := p.lookup(mctx, topics)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, t := range topics {
		if tm := res[t]; tm.err != nil && tm.err.Reason == ReasonUnknownTopic {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return res, nil
	}
	if p.autoCreate == nil {
		for _, t := range missing {
			res[t] = topicMeta{err: classifyPublishError(&UnknownTopicError{Topics: []string{t}})}
		}
		return res, nil
	}
	if err := p.autoCreate(mctx, missing); err != nil {
		return nil, err
	}
	return p.lookup(mctx, topics)
}

func (p *publisher) lookup(ctx context.Context, topics []string) (map[string]topicMeta, error) {
	m, err := p.transport.RoundTrip(ctx, p.addr, &metadataAPI.Request{TopicNames: topics})
	if err != nil {
		return nil, fmt.Errorf("kafka metadata for %v: %w", topics, err)
	}
	resp, ok := m.(*metadataAPI.Response)
	if !ok {
		return nil, fmt.Errorf("kafka metadata: unexpected response %T", m)
	}
	res := make(map[string]topicMeta, len(topics))
	for _, t := range resp.Topics {
		if t.ErrorCode != 0 {
			res[t.Name] = topicMeta{err: classifyPublishError(fmt.Errorf("topic %s: %w", t.Name, kafka.Error(t.ErrorCode)))}
			continue
		}
		if len(t.Partitions) == 0 {
			res[t.Name] = topicMeta{err: classifyPublishError(fmt.Errorf("topic %s: %w", t.Name, kafka.UnknownTopicOrPartition))}
			continue
		}
		leaders := make([]int32, len(t.Partitions))
		for i := range leaders {
			leaders[i] = -1
		}
		for _, pm := range t.Partitions {
			if pm.PartitionIndex >= 0 && int(pm.PartitionIndex) < len(leaders) && pm.ErrorCode == 0 {
				leaders[pm.PartitionIndex] = pm.LeaderID
			}
		}
		plist := make([]int, len(leaders))
		for i := range plist {
			plist[i] = i
		}
		res[t.Name] = topicMeta{partitions: leaders, plist: plist}
	}
	for _, t := range topics {
		if _, ok := res[t]; !ok {
			res[t] = topicMeta{err: classifyPublishError(fmt.Errorf("topic %s: %w", t, kafka.UnknownTopicOrPartition))}
		}
	}
	return res, nil
}

// murmur2Balancer picks a key's partition as the Java client does; a
// message without a key goes to a random partition.
var murmur2Balancer = &kafka.Murmur2Balancer{}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// recordReader hands a partition's messages to kafka-go's record batch
// encoder without copying them.
type recordReader struct {
	msgs       []pubMsg
	idx        []int
	i          int
	rec        kafka.Record
	key, value bytesReader
}

func (r *recordReader) ReadRecord() (*kafka.Record, error) {
	if r.i >= len(r.idx) {
		return nil, io.EOF
	}
	m := &r.msgs[r.idx[r.i]].msg
	r.i++
	r.rec = kafka.Record{Headers: m.Headers}
	if m.Key != nil {
		r.key.Reset(m.Key)
		r.rec.Key = &r.key
	}
	if m.Value != nil {
		r.value.Reset(m.Value)
		r.rec.Value = &r.value
	}
	return &r.rec, nil
}

type bytesReader struct{ bytes.Reader }

func (*bytesReader) Close() error { return nil }

// messageSize is an upper bound of a message's size in a v2 record batch.
func messageSize(m *kafka.Message) int {
	n := 5 + 1 + 10 + 5 + 5 + len(m.Key) + 5 + len(m.Value) + 5
	for _, h := range m.Headers {
		n += 5 + len(h.Key) + 5 + len(h.Value)
	}
	return n
}

// createTopics creates missing topics with the configured partitions and
// replication factor.
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
