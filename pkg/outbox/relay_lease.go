package outbox

import (
	"context"
	"time"
)

// keepLease runs the relay's leadership state machine (see the diagram in
// the package documentation) on the lease's own connection (see lease),
// closed on return: a follower until it acquires the lease, then the
// leader until it loses the lease or steps down, then a follower again.
// When ctx ends it releases a held lease, so a standby takes over at once.
func (r *Relay) keepLease(ctx context.Context) {
	defer r.lease.close()
	for {
		if !r.runFollower(ctx) {
			return
		}
		if !r.runLeader(ctx) {
			return
		}
	}
}

// renewEvery is how often the leader renews its lease: three renewals per
// LeaseTTL, so one failed renewal still leaves time for another.
func (r *Relay) renewEvery() time.Duration { return r.cfg.LeaseTTL / 3 }

// runFollower tries to acquire the lease, at once and then every
// PollInterval (at most every renewal period), jittered, until it holds
// it. It returns true once it is the leader, false when ctx ended first.
func (r *Relay) runFollower(ctx context.Context) bool {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
		}
		opCtx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL)
		t, ok, err := r.lease.tryAcquire(opCtx)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.log.Warn("acquire lease", "err", err)
		}
		if ok {
			r.setTerm(t)
			return true
		}
		timer.Reset(r.jitter(min(r.cfg.PollInterval, r.renewEvery())))
	}
}

// runLeader renews the held lease every renewal period (a failed
// renewal is retried within a second) until the lease is lost or its local
// deadline comes within the safety margin: then it steps down and returns
// true, for the follower to try again at once. When ctx ends it releases
// the lease and returns false.
func (r *Relay) runLeader(ctx context.Context) bool {
	timer := time.NewTimer(r.renewEvery())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			r.releaseLease()
			return false
		case <-timer.C:
		}
		held, leader := r.currentTerm()
		if !leader {
			r.log.Warn("lease not renewed in time; stepping down", "term", held.Term)
			r.setTerm(leaseTerm{})
			return true
		}
		opCtx, cancel := context.WithDeadline(ctx, held.Deadline.Add(-r.safetyMargin()))
		t, ok, err := r.lease.renew(opCtx, held.Term)
		cancel()
		switch {
		case err != nil:
			r.log.Warn("renew lease", "err", err, "term", held.Term)
			timer.Reset(min(time.Second, r.renewEvery()))
		case !ok:
			r.log.Warn("lease lost", "term", held.Term)
			r.setTerm(leaseTerm{})
			return true
		default:
			r.setTerm(t)
			timer.Reset(r.renewEvery())
		}
	}
}

// releaseLease ends the held term in the database, so a standby takes over
// at once, and steps down.
func (r *Relay) releaseLease() {
	r.mu.Lock()
	t := r.term
	r.mu.Unlock()
	if t.Term == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.lease.release(rctx, t.Term); err != nil {
		r.log.Warn("release lease", "err", err)
	} else {
		r.log.Info("relay released lease", "term", t.Term)
	}
	r.setTerm(leaseTerm{})
}
