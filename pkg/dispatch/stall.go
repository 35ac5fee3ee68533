package dispatch

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// stall is a stalled worker as the monitor last saw it.
type stall struct {
	key     offsetKey
	since   time.Time // when the worker last advanced
	waiting int64     // messages waiting, -1 when unknown
	cause   error
}

// stallCheckInterval is how often the stall monitor looks at the workers:
// a quarter of the stall timeout, between 100 ms and 5 s.
func stallCheckInterval(timeout time.Duration) time.Duration {
	return min(max(timeout/4, 100*time.Millisecond), 5*time.Second)
}

// watchStalls looks at every worker of this member until ctx ends. A worker
// that has not advanced for two check intervals gets its lag measured from
// the broker's high watermark (its own report stops while it is stuck);
// one that has not advanced for Config.StallTimeout while messages wait is
// stalled: logged at error with its last error, reported through
// Hooks.OnStall and named by Stalled, until it advances again or is gone.
func (c *Consumer) watchStalls(ctx context.Context) {
	every := stallCheckInterval(c.cfg.StallTimeout)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.stallMu.Lock()
			for w, s := range c.stalls {
				c.recovered(w, s, "the consumer stopped")
			}
			c.stallMu.Unlock()
			return
		case <-t.C:
		}
		c.checkStalls(ctx, every)
	}
}

func (c *Consumer) checkStalls(ctx context.Context, every time.Duration) {
	c.mu.Lock()
	ws := make([]*worker, 0, len(c.workers))
	for w := range c.workers {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	now := time.Now()
	highs := map[offsetKey]int64{} // one question per partition and check
	type verdict struct {
		stalled bool
		stall   stall
	}
	verdicts := make(map[*worker]verdict, len(ws))
	for _, w := range ws {
		since := time.Unix(0, w.progressAt.Load())
		if now.Sub(since) < 2*every {
			verdicts[w] = verdict{}
			continue
		}
		pk := offsetKey{topic: w.key.topic, partition: w.key.partition}
		high, ok := highs[pk]
		if !ok {
			high = w.highWatermark(ctx)
			highs[pk] = high
		}
		durable := w.durable.Load()
		waiting := int64(-1)
		if high >= 0 && durable >= 0 {
			waiting = max(0, high-durable)
			c.cfg.Hooks.lag(w.key.handler, w.key.topic, w.key.partition, waiting)
		}
		verdicts[w] = verdict{
			stalled: waiting != 0 && now.Sub(since) >= c.cfg.StallTimeout,
			stall:   stall{key: w.key, since: since, waiting: waiting, cause: w.lastCause()},
		}
	}
	c.stallMu.Lock()
	defer c.stallMu.Unlock()
	for w, s := range c.stalls {
		v, present := verdicts[w]
		switch {
		case !present:
			c.recovered(w, s, "the worker ended (the partition moved, or a rebalance)")
		case !v.stalled:
			c.recovered(w, s, "it advances again")
		}
	}
	for w, v := range verdicts {
		if !v.stalled {
			continue
		}
		_, was := c.stalls[w]
		c.stalls[w] = v.stall
		if was {
			continue
		}
		cause := v.stall.cause
		if cause == nil {
			cause = errNoCause
		}
		w.log.Error("handler worker stalled: it has not advanced while messages wait", "for", now.Sub(v.stall.since).Round(time.Second),
			"waiting", v.stall.waiting, "next_offset", w.durable.Load(), "cause", cause)
		c.cfg.Hooks.stall(StallEvent{Handler: w.key.handler, Topic: w.key.topic, Partition: w.key.partition,
			Stalled: true, Since: v.stall.since, Waiting: v.stall.waiting, Cause: v.stall.cause})
	}
}

// errNoCause stands for the cause of a stall where the worker met no error.
var errNoCause = fmt.Errorf("no error reported: a handler call or a fetch has not returned")

// recovered ends the stall of w; c.stallMu is held.
func (c *Consumer) recovered(w *worker, s stall, why string) {
	delete(c.stalls, w)
	c.log.Info("handler worker no longer stalled: "+why, "handler", s.key.handler, "topic", s.key.topic,
		"partition", s.key.partition)
	c.cfg.Hooks.stall(StallEvent{Handler: s.key.handler, Topic: s.key.topic, Partition: s.key.partition,
		Since: s.since, Waiting: s.waiting, Cause: s.cause})
}

// Stalled returns an error naming this member's stalled workers (see
// Config.StallTimeout), or nil when none is. The consumer binary's /readyz
// calls it.
func (c *Consumer) Stalled() error {
	c.stallMu.Lock()
	ss := make([]stall, 0, len(c.stalls))
	for _, s := range c.stalls {
		ss = append(ss, s)
	}
	c.stallMu.Unlock()
	if len(ss) == 0 {
		return nil
	}
	slices.SortFunc(ss, func(a, b stall) int {
		return cmp.Or(cmp.Compare(a.key.handler, b.key.handler), cmp.Compare(a.key.topic, b.key.topic),
			cmp.Compare(a.key.partition, b.key.partition))
	})
	parts := make([]string, len(ss))
	for i, s := range ss {
		waiting := "messages may wait (the high watermark is unknown)"
		if s.waiting >= 0 {
			waiting = fmt.Sprintf("%d messages wait", s.waiting)
		}
		cause := s.cause
		if cause == nil {
			cause = errNoCause
		}
		parts[i] = fmt.Sprintf("%s on %s/%d has not advanced for %s while %s: %v", s.key.handler, s.key.topic,
			s.key.partition, time.Since(s.since).Round(time.Second), waiting, cause)
	}
	return fmt.Errorf("%w: %d handler worker(s): %s", ErrStalled, len(ss), strings.Join(parts, "; "))
}
