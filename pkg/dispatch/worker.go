package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/internal/tracing"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

var (
	// errReload asks the worker to re-read its offset row and re-seek.
	errReload = errors.New("dispatch: reload requested")
	// errStopped reports that the generation ended (or the drain timeout
	// passed) while a handler was waiting for a retry; the message is left
	// for the next owner.
	errStopped = errors.New("dispatch: stopped")
)

// infraError is a failure of the consumer's own database work around a
// handler (a connection, begin, commit, a lost connection), not of the
// handler: it does not count as an attempt. The worker restarts from its
// saved offset after a back-off.
type infraError struct {
	op  string
	err error
}

func (e *infraError) Error() string { return e.op + ": " + e.err.Error() }
func (e *infraError) Unwrap() error { return e.err }

func isInfra(err error) bool {
	var ie *infraError
	return errors.As(err, &ie)
}

// plainFetchBatch is how many buffered messages a plain handler's worker
// takes per loop turn.
const plainFetchBatch = 128

// worker runs one handler over one assigned partition: its own reader,
// starting at the handler's next offset, so handlers never wait for or
// repeat each other. It lives for one group generation.
type worker struct {
	c           *Consumer
	h           *registration
	key         offsetKey
	log         *slog.Logger    // the consumer's, with the handler, topic and partition
	txSetup     string          // see txSetup
	workCtx     context.Context // handlers and their transactions run under it
	groupOffset int64           // the group's committed offset at assignment
	reload      chan struct{}
	durable     atomic.Int64 // the persisted next offset, -1 before it is known
	items       []item       // reused by classify

	// Keys held behind a dead letter (WithKeyOrder): read when a session
	// starts (loadHeld); pendingHeads are those dead-lettered in the transaction
	// in hand (see commitHeads).
	held         map[string]keyHead
	pendingHeads map[string]keyHead

	// For the stall monitor (see Consumer.watchStalls): when the worker
	// last advanced its offset or found nothing to do (Unix nanoseconds),
	// and the last error it met since.
	progressAt atomic.Int64
	causeMu    sync.Mutex
	cause      error

	// span is the trace span of the event being handled (plain and
	// per-event transactional handlers), for retry and dead-letter events.
	span trace.Span
}

func newWorker(c *Consumer, h *registration, workCtx context.Context, topic string, pa kafka.PartitionAssignment) *worker {
	w := &worker{
		c: c, h: h, workCtx: workCtx, groupOffset: pa.Offset,
		key:    offsetKey{group: c.cfg.Group, handler: h.name, topic: topic, partition: pa.ID},
		reload: make(chan struct{}, 1),
		log:    c.log.With("handler", h.name, "topic", topic, "partition", pa.ID),
	}
	w.txSetup = txSetup(c.cfg.TxIdleTimeout)
	w.durable.Store(-1)
	w.progressAt.Store(time.Now().UnixNano())
	return w
}

// setDurable records the persisted next offset; a change is progress.
func (w *worker) setDurable(next int64) {
	if w.durable.Swap(next) != next {
		w.progressed()
	}
}

// progressed records that the worker advanced, or has nothing to do.
func (w *worker) progressed() {
	w.progressAt.Store(time.Now().UnixNano())
	w.setCause(nil)
}

// setCause records the last error the worker met, for a stall report.
func (w *worker) setCause(err error) {
	w.causeMu.Lock()
	w.cause = err
	w.causeMu.Unlock()
}

// lastCause returns what setCause recorded.
func (w *worker) lastCause() error {
	w.causeMu.Lock()
	defer w.causeMu.Unlock()
	return w.cause
}

// run keeps a session going until the generation ends, restarting it after
// a reload or an error.
func (w *worker) run(ctx context.Context) {
	delay := 100 * time.Millisecond
	for {
		err := w.session(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, errReload):
			delay = 100 * time.Millisecond
			continue
		case errors.Is(err, errMoved):
			w.log.Info("handler offset changed by a replay or another member; reloading it")
			delay = 100 * time.Millisecond
			continue
		}
		w.setCause(err)
		w.log.Warn("handler worker failed; restarting from its saved offset", "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// load reads the handler's offset row, creating it at the group's committed
// offset (or Config.StartOffset) when there is none.
func (w *worker) load(ctx context.Context) (cursor, error) {
	pool := w.c.cfg.Pool
	cur, ok, err := loadOffset(ctx, pool, w.key)
	if err != nil || ok {
		return cur, err
	}
	start := w.groupOffset
	if start < 0 {
		start = w.c.cfg.StartOffset
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	abs, err := w.c.offs.resolve(rctx, w.key.topic, w.key.partition, start)
	cancel()
	if err != nil {
		return cursor{}, err
	}
	if err := insertOffset(ctx, pool, w.key, abs); err != nil {
		return cursor{}, err
	}
	cur, ok, err = loadOffset(ctx, pool, w.key)
	if err == nil && !ok {
		err = errMoved // deleted right after the insert
	}
	return cur, err
}

// session is one pass of a worker over its partition, from loading the
// offset row to a reload, a failure or the generation's end.
type session struct {
	cur   cursor
	seen  *window // the dedupe window; nil when deduplication is off
	fetch *fetcher
	batch []kafka.Message // reused by take
	limit int             // most messages per batch

	hwm      int64     // the partition's high watermark as last seen; -1 before
	askedHWM time.Time // when the broker was last asked for it
	started  bool      // a batch was read
}

// session reads the partition from the handler's saved offset (less the
// dedupe window, re-read to rebuild it) and handles what it reads until
// the generation ends, a reload is asked for, or something fails. It saves
// the progress made before it returns.
func (w *worker) session(ctx context.Context) error {
	s, err := w.openSession(ctx)
	if err != nil {
		return err
	}
	defer s.fetch.stop()
	tick := time.NewTicker(w.c.cfg.FlushInterval)
	defer tick.Stop()
	for {
		var end bool
		select {
		case <-ctx.Done():
			return w.flush(&s.cur)
		case <-w.reload:
			return w.reloadRequested(s)
		case err := <-s.fetch.errs:
			return w.fetchFailed(ctx, s, err)
		case <-tick.C:
			end, err = w.onTick(ctx, s)
		case m := <-s.fetch.msgs:
			end, err = w.onMessage(ctx, s, m)
		}
		if end {
			return err
		}
	}
}

// openSession loads the handler's offset row and held keys, and starts
// fetching the partition where the dedupe window begins.
func (w *worker) openSession(ctx context.Context) (*session, error) {
	cur, err := w.load(ctx)
	if err != nil {
		return nil, err
	}
	w.setDurable(cur.durable)
	if err := w.loadHeld(ctx, &cur); err != nil {
		return nil, err
	}
	s := &session{cur: cur, seen: newWindow(w.c.cfg.DedupeWindow), limit: w.batchLimit(), hwm: -1}
	from := cur.next
	if s.seen != nil {
		from = max(0, cur.next-int64(w.c.cfg.DedupeWindow))
	}
	r := w.newReader()
	if err := r.SetOffset(from); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("seek %s/%d to %d: %w", w.key.topic, w.key.partition, from, err)
	}
	s.fetch = startFetcher(ctx, r, s.limit)
	s.batch = make([]kafka.Message, 0, s.limit)
	return s, nil
}

// batchLimit is how many messages the worker takes per turn: a plain
// handler plainFetchBatch, a transactional one its batch size.
func (w *worker) batchLimit() int {
	if w.h.kind == kindPlain {
		return plainFetchBatch
	}
	return w.h.batchSize
}

// newReader returns a reader of the worker's partition, not yet positioned.
func (w *worker) newReader() *kafka.Reader {
	cfg := &w.c.cfg
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:        cfg.Brokers,
		Dialer:         cfg.Dialer,
		Topic:          w.key.topic,
		Partition:      w.key.partition,
		MinBytes:       1,
		MaxBytes:       cfg.FetchMaxBytes,
		MaxWait:        cfg.FetchMaxWait,
		QueueCapacity:  cfg.QueueCapacity,
		ReadBackoffMin: 50 * time.Millisecond,
		ReadBackoffMax: time.Second,
		ErrorLogger: kafka.LoggerFunc(func(f string, a ...any) {
			w.log.Debug("kafka reader: " + fmt.Sprintf(f, a...))
		}),
	})
}

// fetcher reads a partition in its own goroutine into a bounded channel,
// so that a session can wait for messages, its ticker and a reload at once.
type fetcher struct {
	r      *kafka.Reader
	msgs   chan kafka.Message
	errs   chan error // the error that ended the fetching
	cancel context.CancelFunc
	done   chan struct{}
}

func startFetcher(ctx context.Context, r *kafka.Reader, buffer int) *fetcher {
	ctx, cancel := context.WithCancel(ctx)
	f := &fetcher{r: r, msgs: make(chan kafka.Message, buffer), errs: make(chan error, 1), cancel: cancel,
		done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				f.errs <- err
				return
			}
			select {
			case f.msgs <- m:
			case <-ctx.Done():
				f.errs <- ctx.Err()
				return
			}
		}
	}()
	return f
}

// stop ends the fetching and closes the reader.
func (f *fetcher) stop() {
	f.cancel()
	<-f.done
	_ = f.r.Close()
}

// take returns a batch of m and the messages already buffered behind it,
// up to the session's limit.
func (s *session) take(m kafka.Message) []kafka.Message {
	s.batch = append(s.batch[:0], m)
	for len(s.batch) < s.limit {
		select {
		case m := <-s.fetch.msgs:
			s.batch = append(s.batch, m)
		default:
			return s.batch
		}
	}
	return s.batch
}

// reloadRequested ends the session for a reload (a replay, a released
// key): it saves the progress first, unless the row already moved.
func (w *worker) reloadRequested(s *session) error {
	if err := w.flush(&s.cur); err != nil && !errors.Is(err, errMoved) {
		return err
	}
	return errReload
}

// fetchFailed ends the session when reading the partition failed, saving
// the progress; the end of the generation is no failure.
func (w *worker) fetchFailed(ctx context.Context, s *session, err error) error {
	if ctx.Err() != nil {
		return w.flush(&s.cur)
	}
	_ = w.flush(&s.cur)
	return fmt.Errorf("fetch %s/%d: %w", w.key.topic, w.key.partition, err)
}

// onTick saves a plain handler's progress and reports the lag. Until a
// batch is read (a caught-up handler after a start, or an offset beyond
// the partition's end) it asks the broker for the high watermark, so the
// lag series exists at 0 rather than not at all, and an offset past the
// end is not waited on. end reports that the session ends with err.
func (w *worker) onTick(ctx context.Context, s *session) (end bool, err error) {
	if err := w.flush(&s.cur); err != nil {
		return true, err
	}
	if s.hwm < 0 && time.Since(s.askedHWM) >= hwmAskInterval {
		s.askedHWM = time.Now()
		s.hwm = w.highWatermark(ctx)
		if s.hwm >= 0 && s.cur.next > s.hwm {
			return true, w.resetBeyondEnd(ctx, &s.cur, s.hwm)
		}
	}
	w.reportLag(s.hwm, &s.cur)
	if s.hwm >= 0 && s.cur.durable >= s.hwm {
		w.progressed() // nothing waits
	}
	return false, nil
}

// onMessage handles m and the messages buffered behind it as one batch,
// and saves a plain handler's progress every Config.FlushMessages. end
// reports that the session ends with err.
func (w *worker) onMessage(ctx context.Context, s *session, m kafka.Message) (end bool, err error) {
	if ctx.Err() != nil {
		// The generation ended while messages were buffered: take no more
		// (select picks among ready cases at random).
		return true, w.flush(&s.cur)
	}
	batch := s.take(m)
	if !s.started {
		s.started = true
		if off := batch[0].Offset; off > s.cur.next {
			w.log.Warn("offsets missing on the broker (deleted by retention, or compacted): the handler skips them",
				"from", s.cur.next, "to", off-1)
		}
	}
	s.hwm = batch[len(batch)-1].HighWaterMark
	if s.cur.next > s.hwm {
		// Read while rebuilding the dedupe window: the partition ends
		// before the handler's offset.
		return true, w.resetBeyondEnd(ctx, &s.cur, s.hwm)
	}
	if err := w.process(ctx, &s.cur, s.seen, batch); err != nil {
		return true, w.processFailed(&s.cur, err)
	}
	if s.cur.next-s.cur.durable >= int64(w.c.cfg.FlushMessages) {
		if err := w.flush(&s.cur); err != nil {
			return true, err
		}
		w.reportLag(s.hwm, &s.cur)
	}
	return false, nil
}

// processFailed is how a session ends when handling a batch returned err:
// errStopped (the generation ended during a retry) saves the progress and
// ends it cleanly; any other error saves what it can, except when the row
// moved, which nothing may overwrite.
func (w *worker) processFailed(cur *cursor, err error) error {
	if errors.Is(err, errStopped) {
		return w.flush(cur)
	}
	if !errors.Is(err, errMoved) {
		_ = w.flush(cur)
	}
	return err
}

// flush persists progress not yet saved (plain handlers, and messages a
// handler is not interested in).
func (w *worker) flush(cur *cursor) error {
	if cur.next == cur.durable {
		return nil
	}
	if err := advanceOffset(w.workCtx, w.c.cfg.Pool, w.key, cur, cur.next, w.h.kind == kindPlain); err != nil {
		return err
	}
	w.setDurable(cur.durable)
	return nil
}

// hwmAskInterval is how often a session that has fetched nothing asks the
// broker for the partition's high watermark.
const hwmAskInterval = 5 * time.Second

// resetBeyondEnd handles a saved offset beyond the partition's end (high):
// the topic was recreated, or a replay went past the end. Kafka would
// return nothing until the partition grew past it, so the handler would
// silently miss everything written until then. It moves the offset to the
// partition's start (its low watermark): every event still on the
// partition is handled, at the risk of handling again some that were
// handled before the offset moved past the end. It returns errReload to
// start a session there.
func (w *worker) resetBeyondEnd(ctx context.Context, cur *cursor, high int64) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	low, err := w.c.offs.resolve(rctx, w.key.topic, w.key.partition, kafka.FirstOffset)
	cancel()
	if err != nil {
		return fmt.Errorf("offset %d of %s is beyond the end (%d) of %s/%d, and its start could not be read: %w",
			cur.durable, w.key.handler, high, w.key.topic, w.key.partition, err)
	}
	saved := cur.durable
	if err := advanceOffset(w.workCtx, w.c.cfg.Pool, w.key, cur, low, true); err != nil {
		return err
	}
	w.setDurable(cur.durable)
	w.log.Error("handler offset beyond the partition's end (the topic was recreated, or a replay went past the end): resuming from the partition's start",
		"saved_offset", saved, "high_watermark", high, "resumed_at", low)
	w.c.cfg.Hooks.offsetReset(OffsetResetEvent{Handler: w.key.handler, Topic: w.key.topic, Partition: w.key.partition,
		Saved: saved, Low: low, High: high})
	return errReload
}

// highWatermark asks the partition's leader for its high watermark; -1 if
// it cannot tell within a few seconds.
func (w *worker) highWatermark(ctx context.Context) int64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	off, err := w.c.offs.resolve(ctx, w.key.topic, w.key.partition, kafka.LastOffset)
	if err != nil {
		w.log.Debug("high watermark for the lag gauge", "err", err)
		return -1
	}
	return off
}

func (w *worker) reportLag(hwm int64, cur *cursor) {
	if hwm >= 0 {
		w.c.cfg.Hooks.lag(w.key.handler, w.key.topic, w.key.partition, max(0, hwm-cur.next))
	}
}

// item is one message a handler is interested in: decoded, or with the
// reason it could not be.
type item struct {
	msg kafka.Message
	env envelope.Envelope
	bad error
}

// classify sorts a batch. Messages below the cursor were handled before:
// they only rebuild the dedupe window. Of the rest, it drops the
// duplicates (reported as skipped) and the types the handler does not
// want, and decodes what remains.
func (w *worker) classify(cur *cursor, seen *window, batch []kafka.Message) []item {
	items := w.items[:0]
	for i := range batch {
		m := &batch[i]
		id, hasID := headerID(m)
		dup := hasID && seen.observe(id)
		if m.Offset < cur.next {
			continue
		}
		typ, hasType := headerType(m)
		if hasType && !w.h.matches(typ) {
			continue
		}
		if dup {
			w.c.cfg.Hooks.handled(HandledEvent{Handler: w.key.handler, Topic: m.Topic, Partition: m.Partition,
				Offset: m.Offset, EventType: string(typ), Outcome: OutcomeSkippedDuplicate})
			continue
		}
		env, err := w.c.cfg.Limits.FromMessage(*m)
		if err == nil && !hasType {
			// The structured mode carries its attributes in the value:
			// filter and deduplicate after decoding. (Messages below the
			// cursor are not decoded, so after a restart the window holds
			// only binary-mode ids.)
			if !w.h.matches([]byte(env.Type)) {
				continue
			}
			if !hasID && seen.observe(env.ID) {
				w.c.cfg.Hooks.handled(HandledEvent{Handler: w.key.handler, Topic: m.Topic, Partition: m.Partition,
					Offset: m.Offset, EventType: env.Type, Outcome: OutcomeSkippedDuplicate})
				continue
			}
		}
		items = append(items, item{msg: *m, env: env, bad: err})
	}
	w.items = items[:0]
	return items
}

func (w *worker) process(ctx context.Context, cur *cursor, seen *window, batch []kafka.Message) error {
	end := batch[len(batch)-1].Offset + 1
	items := w.classify(cur, seen, batch)
	if end <= cur.next {
		return nil
	}
	if w.h.kind == kindPlain {
		for _, it := range items {
			if err := w.plain(ctx, cur, it); err != nil {
				return err
			}
		}
		cur.next = end
		return nil
	}
	switch len(items) {
	case 0:
	case 1:
		if err := w.single(ctx, cur, items[0]); err != nil {
			return err
		}
	default:
		if err := w.batchTx(ctx, cur, items, end); err != nil {
			return err
		}
	}
	cur.next = max(cur.next, end)
	return nil
}

func (w *worker) plain(ctx context.Context, cur *cursor, it item) error {
	start := time.Now()
	if head, d := w.holdFor(it); d != runEvent {
		if d == holdEvent {
			if err := w.hold(w.c.cfg.Pool, it, head); err != nil {
				return err
			}
			w.heldEvent(it, head)
		}
		cur.next = it.msg.Offset + 1
		return nil
	}
	if it.bad != nil {
		if err := w.deadLetter(w.c.cfg.Pool, it, it.bad, 0, start); err != nil {
			w.dropHeads()
			return err
		}
		w.commitHeads()
		w.deadLettered(it, it.bad, 0, time.Since(start))
		cur.next = it.msg.Offset + 1
		return nil
	}
	defer w.endSpan(w.startSpan(it))
	attempts, err := w.retry(ctx, cur, start, func(hctx context.Context) error {
		return safeCall(func() error { return w.h.run.Handle(withMessage(w.inSpan(hctx), it.msg), it.env) })
	})
	if errors.Is(err, errStopped) {
		return err
	}
	if err != nil {
		if perr := w.deadLetter(w.c.cfg.Pool, it, err, attempts, start); perr != nil {
			w.dropHeads()
			return perr
		}
		w.commitHeads()
		w.deadLettered(it, err, attempts, time.Since(start))
	} else {
		w.handled(it, attempts, time.Since(start))
	}
	cur.next = it.msg.Offset + 1
	return nil
}

// single handles one message of a transactional handler in its own
// transaction, with retries, dead-lettering it (also transactionally) when they
// are spent.
func (w *worker) single(ctx context.Context, cur *cursor, it item) error {
	start := time.Now()
	end := it.msg.Offset + 1
	if head, d := w.holdFor(it); d != runEvent {
		// Held, or the head itself: the offset moves past it in the
		// transaction that stores it.
		err := w.inTx(cur, end, func(tx pgx.Tx) error {
			if d == holdEvent {
				return w.hold(tx, it, head)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if d == holdEvent {
			w.heldEvent(it, head)
		}
		return nil
	}
	if it.bad != nil {
		err := w.inTx(cur, end, func(tx pgx.Tx) error { return w.deadLetter(tx, it, it.bad, 0, start) })
		if err != nil {
			return err
		}
		w.deadLettered(it, it.bad, 0, time.Since(start))
		return nil
	}
	defer w.endSpan(w.startSpan(it))
	attempts, err := w.retry(ctx, cur, start, func(hctx context.Context) error {
		return w.inTx(cur, end, func(tx pgx.Tx) error { return w.runTx(w.inSpan(hctx), tx, it) })
	})
	if errors.Is(err, errStopped) || errors.Is(err, errMoved) || isInfra(err) {
		return err
	}
	if err != nil {
		herr := err
		if err := w.inTx(cur, end, func(tx pgx.Tx) error { return w.deadLetter(tx, it, herr, attempts, start) }); err != nil {
			return err
		}
		w.deadLettered(it, herr, attempts, time.Since(start))
		return nil
	}
	w.handled(it, attempts, time.Since(start))
	return nil
}

// runTx runs a transactional handler on one event.
func (w *worker) runTx(ctx context.Context, tx pgx.Tx, it item) error {
	return safeCall(func() error {
		if w.h.kind == kindTx {
			return w.h.runOne(withMessage(ctx, it.msg), tx, it.env)
		}
		return w.h.runBatch(ctx, tx, []envelope.Envelope{it.env})
	})
}

// batchTx tries the items in one transaction; on failure it handles them
// one by one so a bad event is retried and dead-lettered alone.
func (w *worker) batchTx(ctx context.Context, cur *cursor, items []item, end int64) error {
	start := time.Now()
	fates := make([]holdDecision, len(items))
	heads := make([]keyHead, len(items))
	err := w.inTx(cur, end, func(tx pgx.Tx) error {
		goods := make([]envelope.Envelope, 0, len(items)) // the handler may keep it
		for i, it := range items {
			heads[i], fates[i] = w.holdFor(it)
			switch {
			case fates[i] == holdEvent:
				if err := w.hold(tx, it, heads[i]); err != nil {
					return err
				}
			case fates[i] == skipHead:
			case it.bad != nil:
				if err := w.deadLetter(tx, it, it.bad, 0, start); err != nil {
					return err
				}
			case w.h.kind == kindTx:
				if err := safeCall(func() error { return w.h.runOne(withMessage(w.workCtx, it.msg), tx, it.env) }); err != nil {
					return err
				}
			default:
				goods = append(goods, it.env)
			}
		}
		if len(goods) == 0 {
			return nil
		}
		return safeCall(func() error { return w.h.runBatch(w.workCtx, tx, goods) })
	})
	if errors.Is(err, errMoved) || isInfra(err) {
		return err
	}
	if err == nil {
		per := time.Since(start) / time.Duration(len(items))
		for i, it := range items {
			switch {
			case fates[i] == holdEvent:
				w.heldEvent(it, heads[i])
				continue
			case fates[i] == skipHead:
				continue
			}
			if it.bad != nil {
				w.deadLettered(it, it.bad, 0, per)
			} else {
				w.handled(it, 1, per)
			}
		}
		return nil
	}
	w.log.Debug("batch failed; handling its events one by one", "size", len(items), "err", err)
	for _, it := range items {
		if it.msg.Offset < cur.next {
			continue
		}
		if err := w.single(ctx, cur, it); err != nil {
			return err
		}
	}
	return nil
}

// inTx runs fn in a transaction that also moves the handler's offset row
// from the cursor's durable offset to end, so both commit together or not
// at all. BEGIN goes out with the handler's first statement (handlerTx);
// the move is fenced (fenceCommitSQL) and goes out with COMMIT: a
// one-statement handler costs two round trips. When the row is not where
// the cursor says, nothing commits and inTx returns errMoved.
func (w *worker) inTx(cur *cursor, end int64, fn func(tx pgx.Tx) error) error {
	args := []any{w.key.group, w.key.handler, w.key.topic, w.key.partition, end, cur.durable}
	if err := w.fencedTx(fn, "move offset", fenceCommitSQL, args); err != nil {
		return err
	}
	cur.durable = end
	cur.next = max(cur.next, end)
	w.setDurable(end)
	return nil
}

// fencedTx runs fn in a handler transaction and commits it with fence (what
// names it in errors), a statement that fails with division_by_zero
// (isFenced) when what the transaction depends on changed; it returns
// errMoved then, and nothing commits. See inTx.
func (w *worker) fencedTx(fn func(tx pgx.Tx) error, what, fence string, args []any) (err error) {
	ctx := w.workCtx
	defer func() {
		// Heads dead-lettered in the transaction hold their keys once it commits.
		if err == nil {
			w.commitHeads()
		} else {
			w.dropHeads()
		}
	}()
	pc, err := w.c.cfg.Pool.Acquire(ctx)
	if err != nil {
		return &infraError{op: "acquire a connection", err: err}
	}
	defer pc.Release()
	conn := pc.Conn()
	tx := &handlerTx{conn: conn, setup: w.txSetup}
	ended := false
	defer func() {
		if !ended && !conn.IsClosed() && conn.PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
	}()
	if err := fn(tx); err != nil {
		if conn.IsClosed() {
			return &infraError{op: "handler transaction lost its connection", err: err}
		}
		return err
	}
	var ferr, cerr error
	if !tx.begun() {
		// The handler wrote nothing: the fence alone, autocommitted.
		_, ferr = conn.Exec(ctx, fence, args...)
	} else {
		b := &pgx.Batch{}
		b.Queue(fence, args...)
		b.Queue("COMMIT")
		br := conn.SendBatch(ctx, b)
		_, ferr = br.Exec()
		_, cerr = br.Exec()
		if err := br.Close(); cerr == nil {
			cerr = err
		}
	}
	var pe *pgconn.PgError
	switch {
	case ferr != nil && isFenced(ferr):
		return errMoved
	case ferr != nil && errors.As(ferr, &pe):
		// 25P02: the handler left its transaction aborted (it swallowed
		// an error): the handler's failure, not ours.
		return fmt.Errorf("%s of %s on %s/%d: %w", what, w.key.handler, w.key.topic, w.key.partition, ferr)
	case ferr != nil:
		return &infraError{op: what, err: ferr}
	case cerr != nil && errors.As(cerr, &pe):
		// PostgreSQL refused the commit (a deferred constraint, a
		// serialization failure): the handler's doing, retried as such.
		return fmt.Errorf("commit: %w", cerr)
	case cerr != nil:
		return &infraError{op: "commit", err: cerr}
	}
	ended = true
	return nil
}

// retry runs fn until it succeeds, returns a permanent error, or the
// handler's retry policy is spent for the kind of failure it returned
// (RetryPolicy.nextRetry); it returns the attempts made. It returns
// errStopped when ctx ends during a back-off or the work context is
// cancelled (the drain timeout), and errMoved and infrastructure errors at
// once. Before it first holds the partition for a transient failure it
// saves the cursor's progress, so the messages handled before the held one
// are not re-delivered after a crash however long the hold lasts.
func (w *worker) retry(ctx context.Context, cur *cursor, start time.Time, fn func(context.Context) error) (int, error) {
	p := w.h.retry
	var b *backoff.ExponentialBackOff
	others := 0 // failures neither permanent nor transient
	held := false
	for attempt := 1; ; attempt++ {
		err := fn(w.workCtx)
		if err == nil || errors.Is(err, errMoved) || isInfra(err) {
			return attempt, err
		}
		if w.workCtx.Err() != nil {
			return attempt, errStopped
		}
		if IsPermanent(err) {
			return attempt, err
		}
		transient := IsTransient(err)
		if !transient {
			others++
		}
		if b == nil {
			b = &backoff.ExponentialBackOff{
				InitialInterval:     p.InitialInterval,
				RandomizationFactor: 0.5,
				Multiplier:          1.5,
				MaxInterval:         p.MaxInterval,
				Stop:                backoff.Stop,
				Clock:               backoff.SystemClock,
			}
			b.Reset()
		}
		d, ok := p.nextRetry(err, transient, time.Since(start), b.NextBackOff(), others)
		if !ok {
			return attempt, err
		}
		w.c.cfg.Hooks.retry(w.key.handler, attempt, err)
		if w.span != nil {
			w.span.AddEvent("retry", trace.WithAttributes(tracing.PulseBusAttempt.Int(attempt),
				attribute.Bool("pulsebus.transient", transient), attribute.String("exception.message", err.Error())))
		}
		w.setCause(fmt.Errorf("handler failed (attempt %d), retrying: %w", attempt, err))
		if transient && !held {
			held = true
			if err := w.flush(cur); err != nil {
				w.log.Debug("saving progress before holding the partition", "err", err)
			}
			w.log.Warn("handler failed transiently; holding the partition for it and retrying", "retry_for", p.RetryFor,
				"err", err)
		}
		w.log.Debug("handler failed; retrying", "attempt", attempt, "in", d, "transient", transient, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, errStopped
		case <-t.C:
		}
	}
}

// deadLetter stores the message in the dead letters for this handler. It fails
// only when the database cannot be reached (see insertDeadLetter); a
// message that cannot be stored whole is recorded by its position, logged
// at error.
func (w *worker) deadLetter(db dbtx, it item, cause error, attempts int, first time.Time) error {
	if w.span != nil {
		w.span.AddEvent("dead_letter", trace.WithAttributes(tracing.PulseBusAttempt.Int(attempts),
			attribute.String("exception.message", cause.Error())))
		w.span.SetStatus(codes.Error, "dead-lettered: "+cause.Error())
	}
	d := deadLetterRow{key: w.key, offset: it.msg.Offset, msg: it.msg, err: cause, attempts: attempts,
		first: first, last: time.Now()}
	if it.bad == nil {
		id, typ := it.env.ID, it.env.Type
		d.eventID, d.eventType = &id, &typ
	} else {
		if t, ok := headerType(&it.msg); ok {
			s := string(t)
			d.eventType = &s
		}
		if id := headerValue(it.msg, envelope.HeaderID); id != "" {
			d.eventID = &id
		}
	}
	d.holdsKey = w.h.holdKey && len(it.msg.Key) > 0
	id, stored, err := insertDeadLetter(w.workCtx, db, d)
	if err == nil && !stored {
		w.log.Error("dead letter stored without its message: storing the message failed; the row keeps its position",
			"offset", it.msg.Offset)
	}
	if err == nil && d.holdsKey {
		w.pendingHead(it, id)
	}
	return err
}

func headerValue(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

func (w *worker) handled(it item, attempts int, d time.Duration) {
	out := OutcomeOK
	if attempts > 1 {
		out = OutcomeRetried
	}
	w.c.cfg.Hooks.handled(HandledEvent{Handler: w.key.handler, Topic: it.msg.Topic, Partition: it.msg.Partition,
		Offset: it.msg.Offset, EventType: it.env.Type, EventTime: it.env.Time, Outcome: out, Attempts: attempts, Duration: d})
}

// deadLettered logs a message stored in the dead letters and reports it to
// the hooks.
func (w *worker) deadLettered(it item, cause error, attempts int, d time.Duration) {
	w.log.Warn("message dead-lettered", "offset", it.msg.Offset, "attempts", attempts, "err", cause)
	w.c.cfg.Hooks.deadLetter(DeadLetterEvent{Handler: w.key.handler, Topic: it.msg.Topic, Partition: it.msg.Partition,
		Offset: it.msg.Offset, Attempts: attempts, Err: cause})
	w.c.cfg.Hooks.handled(HandledEvent{Handler: w.key.handler, Topic: it.msg.Topic, Partition: it.msg.Partition,
		Offset: it.msg.Offset, EventType: it.env.Type, EventTime: it.env.Time, Outcome: OutcomeDeadLettered,
		Attempts: attempts, Duration: d})
}

// safeCall turns a handler panic into an error (retried like any other).
func safeCall(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return fn()
}

// startSpan starts the span of handling it, a child of the trace context
// the event carries, and keeps it in w.span for retry and dead-letter
// events.
func (w *worker) startSpan(it item) trace.Span {
	parent := tracing.Extract(w.workCtx, it.env.Meta)
	_, span := w.c.tracer.Start(parent, tracing.OperationNameProcess+" "+it.msg.Topic,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			tracing.MessagingSystem.String(tracing.MessagingSystemKafka),
			tracing.MessagingOperationType.String(tracing.OperationTypeProcess),
			tracing.MessagingOperationName.String(tracing.OperationNameProcess),
			tracing.MessagingDestination.String(it.msg.Topic),
			tracing.MessagingPartition.String(strconv.Itoa(it.msg.Partition)),
			tracing.MessagingKafkaOffset.Int64(it.msg.Offset),
			tracing.MessagingConsumerGroup.String(w.key.group),
			tracing.MessagingMessageID.String(it.env.ID),
			tracing.CloudEventsEventID.String(it.env.ID),
			tracing.CloudEventsEventType.String(it.env.Type),
			tracing.PulseBusHandler.String(w.key.handler),
		))
	w.span = span
	return span
}

// inSpan returns ctx carrying the span of the event being handled.
func (w *worker) inSpan(ctx context.Context) context.Context {
	if w.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, w.span)
}

func (w *worker) endSpan(span trace.Span) {
	span.End()
	w.span = nil
}
