package outbox

import (
	"context"
	"time"
)

// listen keeps a dedicated connection LISTENing on NotifyChannel and wakes
// the claim loop on every notification. When the connection fails it
// reconnects with back-off; the jittered poll covers the gap, and a wake-up
// after each (re)connect covers notifications sent while it was down.
func (r *Relay) listen(ctx context.Context) {
	bo := r.newBackoff()
	for ctx.Err() == nil {
		err := r.listenOnce(ctx, bo.Reset)
		if ctx.Err() != nil {
			return
		}
		d := bo.NextBackOff()
		r.log.Warn("LISTEN connection lost; relying on polling until it is back", "err", err, "retry_in", d)
		if !sleepCtx(ctx, d) {
			return
		}
	}
}

// listenOnce listens until the connection fails; listening calls
// listening once LISTEN took effect.
func (r *Relay) listenOnce(ctx context.Context, listening func()) error {
	pc, err := r.cfg.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection leaves the pool: it is closed, never reused with a
	// LISTEN left on it.
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return err
	}
	listening()
	r.signal()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		r.signal()
	}
}

const backlogSQL = `SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 FROM pulsebus.outbox`

// reportBacklog measures the outbox every BacklogInterval for the hooks.
func (r *Relay) reportBacklog(ctx context.Context) {
	t := time.NewTicker(r.cfg.BacklogInterval)
	defer t.Stop()
	for {
		var (
			rows int64
			age  float64
		)
		qctx, cancel := context.WithTimeout(ctx, r.cfg.BacklogInterval)
		err := r.cfg.Pool.QueryRow(qctx, backlogSQL).Scan(&rows, &age)
		cancel()
		if err == nil {
			r.hooks.backlog(rows, time.Duration(age*float64(time.Second)))
		} else if ctx.Err() == nil {
			r.log.Warn("measure outbox backlog", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
