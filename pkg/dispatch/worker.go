package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

var (
	// errReload asks the worker to re-read its offset row and re-seek.
	errReload = errors.New("dispatch: reload requested")
	// errStopped reports that the generation ended while a handler was
	// waiting for a retry; the message is left for the next owner.
	errStopped = errors.New("dispatch: stopped")
)

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
	workCtx     context.Context // handlers and their transactions run under it
	groupOffset int64           // the group's committed offset at assignment
	reload      chan struct{}
	durable     atomic.Int64 // the persisted next offset, -1 before it is known
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
		if errors.Is(err, errReload) || errors.Is(err, errMoved) {
			delay = 100 * time.Millisecond
			continue
		}
		w.c.log.Warn("handler worker failed; restarting from its saved offset", "handler", w.key.handler,
			"topic", w.key.topic, "partition", w.key.partition, "err", err, "in", delay)
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

func (w *worker) session(ctx context.Context) error {
	cur, err := w.load(ctx)
	if err != nil {
		return err
	}
	w.durable.Store(cur.durable)
	cfg := &w.c.cfg
	r := kafka.NewReader(kafka.ReaderConfig{
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
			w.c.log.Debug("kafka reader: "+fmt.Sprintf(f, a...), "handler", w.key.handler)
		}),
	})
	if err := r.SetOffset(cur.next); err != nil {
		_ = r.Close()
		return fmt.Errorf("seek %s/%d to %d: %w", w.key.topic, w.key.partition, cur.next, err)
	}
	max := plainFetchBatch
	if w.h.kind != kindPlain {
		max = w.h.batchSize
	}
	fetchCtx, cancelFetch := context.WithCancel(ctx)
	msgs := make(chan kafka.Message, max)
	pumpErr := make(chan error, 1)
	pumpDone := make(chan struct{})
	go func() {
		defer close(pumpDone)
		for {
			m, err := r.FetchMessage(fetchCtx)
			if err != nil {
				pumpErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-fetchCtx.Done():
				pumpErr <- fetchCtx.Err()
				return
			}
		}
	}()
	defer func() {
		cancelFetch()
		<-pumpDone
		_ = r.Close()
	}()

	tick := time.NewTicker(cfg.FlushInterval)
	defer tick.Stop()
	hwm := int64(-1)
	batch := make([]kafka.Message, 0, max)
	for {
		select {
		case <-ctx.Done():
			return w.flush(&cur)
		case <-w.reload:
			if err := w.flush(&cur); err != nil && !errors.Is(err, errMoved) {
				return err
			}
			return errReload
		case err := <-pumpErr:
			if ctx.Err() != nil {
				return w.flush(&cur)
			}
			_ = w.flush(&cur)
			return fmt.Errorf("fetch %s/%d: %w", w.key.topic, w.key.partition, err)
		case <-tick.C:
			if err := w.flush(&cur); err != nil {
				return err
			}
			w.reportLag(hwm, &cur)
		case m := <-msgs:
			batch = append(batch[:0], m)
		fill:
			for len(batch) < max {
				select {
				case m := <-msgs:
					batch = append(batch, m)
				default:
					break fill
				}
			}
			hwm = batch[len(batch)-1].HighWaterMark
			if err := w.process(ctx, &cur, batch); err != nil {
				if errors.Is(err, errStopped) {
					return w.flush(&cur)
				}
				if !errors.Is(err, errMoved) {
					_ = w.flush(&cur)
				}
				return err
			}
			if cur.next-cur.durable >= int64(cfg.FlushMessages) {
				if err := w.flush(&cur); err != nil {
					return err
				}
				w.reportLag(hwm, &cur)
			}
		}
	}
}

// flush persists progress not yet saved (plain handlers, and messages a
// handler is not interested in).
func (w *worker) flush(cur *cursor) error {
	if cur.next == cur.durable {
		return nil
	}
	if err := advanceOffset(w.workCtx, w.c.cfg.Pool, w.key, cur, cur.next); err != nil {
		return err
	}
	w.durable.Store(cur.durable)
	return nil
}

func (w *worker) reportLag(hwm int64, cur *cursor) {
	if hwm >= 0 {
		w.c.cfg.Hooks.OnLag(w.key.handler, w.key.topic, w.key.partition, max(0, hwm-cur.next))
	}
}

// item is one message a handler is interested in: decoded, or with the
// reason it could not be.
type item struct {
	msg kafka.Message
	env envelope.Envelope
	bad error
}

// classify drops messages below the cursor (already done) and those of
// types the handler does not want; it decodes the rest.
func (w *worker) classify(cur *cursor, batch []kafka.Message) []item {
	items := make([]item, 0, len(batch))
	for _, m := range batch {
		if m.Offset < cur.next {
			w.c.cfg.Hooks.OnHandled(HandledEvent{Handler: w.key.handler, Topic: m.Topic, Partition: m.Partition,
				Offset: m.Offset, Outcome: OutcomeSkippedDuplicate})
			continue
		}
		if t, ok := headerType(m); ok && !w.h.matches(t) {
			continue
		}
		env, err := w.c.cfg.Limits.FromMessage(m)
		if err == nil && !w.h.matches(env.Type) {
			continue
		}
		items = append(items, item{msg: m, env: env, bad: err})
	}
	return items
}

// headerType returns the ce_type header without decoding the message.
func headerType(m kafka.Message) (string, bool) {
	for _, h := range m.Headers {
		if len(h.Key) == len(envelope.HeaderType) && strings.EqualFold(h.Key, envelope.HeaderType) {
			return string(h.Value), true
		}
	}
	return "", false
}

func (w *worker) process(ctx context.Context, cur *cursor, batch []kafka.Message) error {
	end := batch[len(batch)-1].Offset + 1
	if end <= cur.next {
		w.classify(cur, batch) // reports the duplicates
		return nil
	}
	items := w.classify(cur, batch)
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
	if it.bad != nil {
		if err := w.park(w.c.cfg.Pool, it, it.bad, 0, start); err != nil {
			return err
		}
		w.parked(it, it.bad, 0, time.Since(start))
		cur.next = it.msg.Offset + 1
		return nil
	}
	attempts, first, err := w.retry(ctx, func(hctx context.Context) error {
		return safeCall(func() error { return w.h.run.Handle(withMessage(hctx, it.msg), it.env) })
	})
	if errors.Is(err, errStopped) {
		return err
	}
	if err != nil {
		if perr := w.park(w.c.cfg.Pool, it, err, attempts, first); perr != nil {
			return perr
		}
		w.parked(it, err, attempts, time.Since(start))
	} else {
		w.handled(it, attempts, time.Since(start))
	}
	cur.next = it.msg.Offset + 1
	return nil
}

// single handles one message of a transactional handler in its own
// transaction, with retries, parking it (also transactionally) when they
// are spent.
func (w *worker) single(ctx context.Context, cur *cursor, it item) error {
	start := time.Now()
	end := it.msg.Offset + 1
	if it.bad != nil {
		err := w.inTx(cur, end, func(tx pgx.Tx) error { return w.park(tx, it, it.bad, 0, start) })
		if err != nil {
			return err
		}
		w.parked(it, it.bad, 0, time.Since(start))
		return nil
	}
	attempts, first, err := w.retry(ctx, func(hctx context.Context) error {
		return w.inTx(cur, end, func(tx pgx.Tx) error {
			return safeCall(func() error { return w.h.runTx(withMessage(hctx, it.msg), tx, []envelope.Envelope{it.env}) })
		})
	})
	if errors.Is(err, errStopped) || errors.Is(err, errMoved) {
		return err
	}
	if err != nil {
		herr := err
		if err := w.inTx(cur, end, func(tx pgx.Tx) error { return w.park(tx, it, herr, attempts, first) }); err != nil {
			return err
		}
		w.parked(it, herr, attempts, time.Since(start))
		return nil
	}
	w.handled(it, attempts, time.Since(start))
	return nil
}

// batchTx tries the items in one transaction; on failure it handles them
// one by one so a bad event is retried and parked alone.
func (w *worker) batchTx(ctx context.Context, cur *cursor, items []item, end int64) error {
	start := time.Now()
	var goods []envelope.Envelope
	for _, it := range items {
		if it.bad == nil {
			goods = append(goods, it.env)
		}
	}
	err := w.inTx(cur, end, func(tx pgx.Tx) error {
		for _, it := range items {
			if it.bad != nil {
				if err := w.park(tx, it, it.bad, 0, start); err != nil {
					return err
				}
			}
		}
		if len(goods) == 0 {
			return nil
		}
		return safeCall(func() error { return w.h.runTx(w.workCtx, tx, goods) })
	})
	if errors.Is(err, errMoved) {
		return err
	}
	if err == nil {
		per := time.Since(start) / time.Duration(len(items))
		for _, it := range items {
			if it.bad != nil {
				w.parked(it, it.bad, 0, per)
			} else {
				w.handled(it, 1, per)
			}
		}
		return nil
	}
	w.c.log.Debug("batch failed; handling its events one by one", "handler", w.key.handler, "size", len(items), "err", err)
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

// inTx runs fn in a transaction that first moves the handler's offset row
// from the cursor's durable state to end (failing with errMoved when the
// row changed) and commits both together.
func (w *worker) inTx(cur *cursor, end int64, fn func(tx pgx.Tx) error) error {
	tx, err := w.c.cfg.Pool.Begin(w.workCtx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(w.workCtx)) }()
	next := *cur
	if err := advanceOffset(w.workCtx, tx, w.key, &next, end); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(w.workCtx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	next.next = end
	*cur = next
	w.durable.Store(cur.durable)
	return nil
}

// retry runs fn until it succeeds, returns a permanent error, or the
// handler's retry policy is spent. It returns errStopped when ctx ends
// during a back-off, and errMoved at once.
func (w *worker) retry(ctx context.Context, fn func(context.Context) error) (int, time.Time, error) {
	p := w.h.retry
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.InitialInterval,
		RandomizationFactor: 0.5,
		Multiplier:          1.5,
		MaxInterval:         p.MaxInterval,
		MaxElapsedTime:      p.MaxElapsed,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	first := time.Now()
	for attempt := 1; ; attempt++ {
		err := fn(w.workCtx)
		if err == nil || errors.Is(err, errMoved) || IsPermanent(err) || attempt >= p.MaxAttempts {
			return attempt, first, err
		}
		d := b.NextBackOff()
		if d == backoff.Stop {
			return attempt, first, err
		}
		w.c.cfg.Hooks.OnRetry(w.key.handler, attempt, err)
		w.c.log.Debug("handler failed; retrying", "handler", w.key.handler, "topic", w.key.topic,
			"partition", w.key.partition, "attempt", attempt, "in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, first, errStopped
		case <-t.C:
		}
	}
}

func (w *worker) park(db dbtx, it item, cause error, attempts int, first time.Time) error {
	d := deadLetterRow{key: w.key, offset: it.msg.Offset, msg: it.msg, err: cause, attempts: attempts,
		first: first, last: time.Now()}
	if it.bad == nil {
		id, typ := it.env.ID, it.env.Type
		d.eventID, d.eventType = &id, &typ
	} else if t, ok := headerType(it.msg); ok {
		d.eventType = &t
		if id, err := uuid.Parse(headerValue(it.msg, envelope.HeaderID)); err == nil {
			d.eventID = &id
		}
	}
	return insertDeadLetter(w.workCtx, db, d)
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
	w.c.cfg.Hooks.OnHandled(HandledEvent{Handler: w.key.handler, Topic: it.msg.Topic, Partition: it.msg.Partition,
		Offset: it.msg.Offset, EventType: it.env.Type, EventTime: it.env.Time, Outcome: out, Attempts: attempts, Duration: d})
}

func (w *worker) parked(it item, cause error, attempts int, d time.Duration) {
	w.c.log.Warn("message parked in the dead letters", "handler", w.key.handler, "topic", it.msg.Topic,
		"partition", it.msg.Partition, "offset", it.msg.Offset, "attempts", attempts, "err", cause)
	w.c.cfg.Hooks.OnDeadLetter(DeadLetterEvent{Handler: w.key.handler, Topic: it.msg.Topic, Partition: it.msg.Partition,
		Offset: it.msg.Offset, Attempts: attempts, Err: cause})
	w.c.cfg.Hooks.OnHandled(HandledEvent{Handler: w.key.handler, Topic: it.msg.Topic, Partition: it.msg.Partition,
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
