package outbox

import (
	"context"
	mrand "math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// prefetch is a claim running in the background while the batch before it
// is published.
type prefetch struct {
	done  chan struct{}
	batch *claimedBatch
	err   error
}

func (r *Relay) startPrefetch(ctx context.Context, term leaseTerm, bounds claimBounds) *prefetch {
	p := &prefetch{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.batch, p.err = r.claim(ctx, term, bounds)
	}()
	return p
}

func (p *prefetch) wait() (*claimedBatch, error) {
	<-p.done
	return p.batch, p.err
}

// discard waits for the prefetched claim and rolls it back unpublished.
func (p *prefetch) discard() {
	if b, err := p.wait(); err == nil {
		b.rollback()
	}
}

// canPrefetch reports whether a second claim transaction may hold a pool
// connection now and still leave one for the backlog measurement and a
// settle.
func (r *Relay) canPrefetch() bool {
	if r.noPrefetch {
		return false
	}
	st := r.cfg.Pool.Stat()
	return st.MaxConns()-st.AcquiredConns() >= 2
}

// topicWait is the back-off of a topic whose rows failed transiently: its
// rows are not claimed until the back-off ends.
type topicWait struct {
	bo    *backoff.ExponentialBackOff
	until time.Time
}

// topicWaits are the topics backing off.
type topicWaits struct {
	r     *Relay
	waits map[string]*topicWait
}

// skipped returns the topics whose rows are not to be claimed now, and
// forgets the back-offs that ended long ago (the topic's rows went some
// other way).
func (w *topicWaits) skipped(now time.Time) []string {
	var topics []string
	for topic, tw := range w.waits {
		switch {
		case now.Before(tw.until):
			topics = append(topics, topic)
		case now.After(tw.until.Add(w.r.cfg.BackoffMax)):
			delete(w.waits, topic)
		}
	}
	return topics
}

// next returns how long until the first back-off ends, or ok false when
// no topic is backing off.
func (w *topicWaits) next(now time.Time) (d time.Duration, ok bool) {
	for _, tw := range w.waits {
		if now.Before(tw.until) && (!ok || tw.until.Sub(now) < d) {
			d, ok = tw.until.Sub(now), true
		}
	}
	return d, ok
}

// update records a batch's outcome: the topics whose rows wait back off
// (longer each time in a row), the others that had rows in the batch are
// healthy again.
func (w *topicWaits) update(rows []outboxRow, waiting map[string]error) {
	now := time.Now()
	for topic, err := range waiting {
		tw := w.waits[topic]
		if tw == nil {
			tw = &topicWait{bo: w.r.newBackoff()}
			w.waits[topic] = tw
		}
		d := tw.bo.NextBackOff()
		tw.until = now.Add(d)
		w.r.log.Warn("topic failed; its rows wait while other topics flow", "topic", topic, "err", err, "backoff", d)
	}
	if len(w.waits) == 0 {
		return
	}
	for i := range rows {
		if _, failed := waiting[rows[i].Topic]; !failed {
			delete(w.waits, rows[i].Topic)
		}
	}
}

// loop is the relay's work loop. Leading, it runs batches (runBatch),
// back to back while there is more to do; otherwise, and as a follower,
// it waits for work (waitForWork). It wakes as the package documentation
// describes (Waking the relay): at once after a full batch,
// else on a notification (debounced), a follow-up (see followUp), the
// poll, or the end of a topic's back-off.
//
// Pipeline: the next batch is claimed ahead, in a second transaction, when
// the batch in hand came back full (a backlog: claimed while it is being
// produced) or when notifications arrived while it was produced (claimed
// while it commits, if NotifyDebounce has passed since the last claim
// began); in either case only while the batch in hand holds at most half
// of MaxBatchBytes, and within the other half. The claim-ahead excludes
// the batch in hand's rows by id. The next batch is produced only once the
// batch before it was acknowledged and committed, so per partition the
// produce requests stay in row order; if the batch before it did not go
// through whole, the claim-ahead is rolled back unpublished before that
// batch is settled, so a settle never waits on the relay's own locks.
//
// Failures: rows that failed transiently make their topic back off on its
// own (topicWaits); claims skip that topic's rows until then, so the
// other topics flow at full speed and the topic's rows keep their order.
// Only a failure of the batch as a whole (the database, the lease) backs
// the whole loop off.
func (r *Relay) loop(pollCtx, workCtx context.Context) {
	s := &loopState{
		backoff: r.newBackoff(),
		waits:   &topicWaits{r: r, waits: map[string]*topicWait{}},
		idle:    r.cfg.PollInterval,
	}
	defer s.discardAhead()
	poll := time.NewTimer(0)
	defer poll.Stop()
	for pollCtx.Err() == nil {
		term, leader := r.currentTerm()
		// A claim-ahead is published even when the term just ended: its
		// publish fails on the lease and rolls it back.
		if leader || s.ahead != nil {
			switch r.runBatch(pollCtx, workCtx, s, term) {
			case stopLoop:
				return
			case claimAgain:
				continue
			}
		} else {
			s.idle = r.cfg.PollInterval
		}
		if !r.waitForWork(pollCtx, s, poll) {
			return
		}
	}
}

// loopState is what the work loop carries from one batch to the next.
type loopState struct {
	backoff *backoff.ExponentialBackOff // of the whole loop, after a failed batch
	waits   *topicWaits                 // topics backing off on their own
	ahead   *prefetch                   // the next batch, claimed ahead; nil if none
	// lastClaim is when the latest claim began.
	lastClaim time.Time
	// idle is how long after lastClaim the leader claims again when no
	// notification wakes it (see followUp).
	idle time.Duration
}

// discardAhead rolls back the batch claimed ahead, if any, unpublished.
func (s *loopState) discardAhead() {
	if s.ahead != nil {
		s.ahead.discard()
		s.ahead = nil
	}
}

// loopAction is what the work loop does after a batch.
type loopAction int

const (
	waitForWork loopAction = iota // nothing more is known to wait: wait for a wake-up
	claimAgain                    // more is waiting: claim the next batch at once
	stopLoop                      // the relay is stopping
)

// runBatch takes the batch claimed ahead, or claims one under term, and
// publishes it, then records the outcome: the loop backs off after a
// failed batch, and topics back off on their own after failed rows.
func (r *Relay) runBatch(pollCtx, workCtx context.Context, s *loopState, term leaseTerm) loopAction {
	fromAhead := s.ahead != nil
	b, err := r.takeBatch(workCtx, s, term)
	var res batchResult
	if err == nil {
		res, err = r.publishBatch(pollCtx, workCtx, s, b)
	}
	if err != nil {
		s.discardAhead()
		d := s.backoff.NextBackOff()
		r.log.Warn("relay batch failed; backing off", "err", err, "backoff", d,
			"claimed", res.claimed, "published", res.published, "parked", res.parked)
		if !sleepCtx(pollCtx, d) {
			return stopLoop
		}
		return claimAgain
	}
	s.backoff.Reset()
	s.waits.update(b.rows, res.waiting)
	s.idle = r.followUp(s.idle, res.claimed > 0)
	if s.ahead != nil || b.full || res.parked > 0 || (fromAhead && res.claimed == 0) {
		return claimAgain // more waiting: no need to wait for a signal
	}
	return waitForWork
}

// takeBatch returns the batch claimed ahead, when there is one, or else
// claims one under term from the head of the outbox.
func (r *Relay) takeBatch(workCtx context.Context, s *loopState, term leaseTerm) (*claimedBatch, error) {
	if s.ahead != nil {
		b, err := s.ahead.wait()
		s.ahead = nil
		return b, err
	}
	s.lastClaim = time.Now()
	return r.claim(workCtx, term, claimBounds{
		maxBytes: r.cfg.MaxBatchBytes, atLeastOne: true, skipTopics: s.waits.skipped(s.lastClaim),
	})
}

// publishBatch publishes b and commits or settles it, claiming the next
// batch ahead when b came back full (a backlog: claimed while b is being
// produced) or when notifications arrived while b was produced (claimed
// while b commits), and rolling that claim back before b is settled.
func (r *Relay) publishBatch(pollCtx, workCtx context.Context, s *loopState, b *claimedBatch) (batchResult, error) {
	if b.full {
		r.claimAhead(pollCtx, workCtx, s, b)
	}
	return r.finish(workCtx, b, func() {
		// Rows committed while this batch was produced: claim them while
		// this batch commits, unless that would claim sooner than the
		// debounce allows.
		select {
		case <-r.wake:
			if time.Since(s.lastClaim) < r.cfg.NotifyDebounce || !r.claimAhead(pollCtx, workCtx, s, b) {
				r.signal() // the loop claims them next, debounced
			}
		default:
		}
	}, s.discardAhead)
}

// claimAhead starts claiming the batch after b, excluding b's rows and
// within what b leaves of MaxBatchBytes. It claims nothing, and returns
// false, when a claim-ahead is already running, the relay is stopping, b
// holds more than half of MaxBatchBytes, the pool has no spare connection
// or b's term is over.
func (r *Relay) claimAhead(pollCtx, workCtx context.Context, s *loopState, b *claimedBatch) bool {
	if s.ahead != nil || pollCtx.Err() != nil || b.bytes > r.cfg.MaxBatchBytes/2 || !r.canPrefetch() {
		return false
	}
	t, ok := r.currentTerm()
	if !ok || t.Term != b.term.Term {
		return false
	}
	s.lastClaim = time.Now()
	s.ahead = r.startPrefetch(workCtx, t, claimBounds{
		maxBytes: r.cfg.MaxBatchBytes - b.bytes, exclude: b.ids(), skipTopics: s.waits.skipped(s.lastClaim),
	})
	return true
}

// waitForWork waits for a reason to claim: a notification (then debounced,
// so a burst of commits gathers into one batch), the follow-up or poll
// time (see idleWait), or the end of a topic's back-off. It returns false
// when the relay is stopping.
func (r *Relay) waitForWork(pollCtx context.Context, s *loopState, poll *time.Timer) bool {
	wait := r.idleWait(s.idle, s.lastClaim)
	if d, ok := s.waits.next(time.Now()); ok && d < wait {
		wait = d
	}
	resetTimer(poll, wait)
	select {
	case <-pollCtx.Done():
		return false
	case <-poll.C:
		return true
	case <-r.wake:
		// A notification: back to fast follow-ups after this claim.
		s.idle = r.cfg.NotifyDebounce
		d := r.cfg.NotifyDebounce - time.Since(s.lastClaim)
		return d <= 0 || sleepCtx(pollCtx, d)
	}
}

// followUp returns how long after a claim that was not full the leader
// claims again without a notification, given the previous such delay
// (NotifyDebounce after a notification): NotifyDebounce when the claim
// found rows, twice the previous delay when it found none, never more
// than PollInterval.
//
// Producers notify only when no other transaction is notifying
// (notifyLockKey), so the rows of a transaction that skipped its
// notification and committed after the notifier's commit woke a claim have
// no notification of their own. Follow-ups find them: soon after
// activity, when such late commits happen, less and less often when
// claims come back empty, and every PollInterval when nothing happens.
// Whatever the timing, a committed row waits at most PollInterval for a
// claim.
func (r *Relay) followUp(prev time.Duration, found bool) time.Duration {
	if found {
		return min(r.cfg.NotifyDebounce, r.cfg.PollInterval)
	}
	return min(2*max(prev, r.cfg.NotifyDebounce), r.cfg.PollInterval)
}

// idleWait returns how long to wait for a notification before claiming
// again: until idle after lastClaim, or, once idle reached PollInterval, a
// jittered PollInterval from now.
func (r *Relay) idleWait(idle time.Duration, lastClaim time.Time) time.Duration {
	if idle >= r.cfg.PollInterval {
		return r.jitter(r.cfg.PollInterval)
	}
	return max(0, idle-time.Since(lastClaim))
}

// jitter returns d shortened by up to 20%, so the bound "takes over within
// TTL plus one poll" holds and replicas spread their polls.
func (r *Relay) jitter(d time.Duration) time.Duration {
	return d - time.Duration(mrand.Int64N(int64(d)/5+1))
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
