package outbox

import "time"

// Hooks receive the relay's observations. Set the fields you need; the
// relay skips a nil field, so a field added later breaks no caller (the
// shape of net/http/httptrace.ClientTrace). The relay calls them from its
// own goroutines, synchronously, so they must be fast and safe for
// concurrent use. Package outboxprom provides Hooks that update Prometheus
// metrics.
type Hooks struct {
	// OnPublished reports n events of topic acknowledged by the broker.
	OnPublished func(topic string, n int)
	// OnPublishFailed reports a failed publish attempt, permanent or not,
	// and why.
	OnPublishFailed func(reason Reason)
	// OnBatch reports one claimed batch: its size and how long producing
	// it took (from the first produce request to the last
	// acknowledgement).
	OnBatch func(size int, publishDuration time.Duration)
	// OnCommitToAck reports, for one event, the time from its outbox row's
	// created_at to the broker's acknowledgement.
	OnCommitToAck func(d time.Duration)
	// OnBacklog reports, every RelayConfig.BacklogInterval, the rows in
	// the outbox and the age of the oldest (0 when empty).
	OnBacklog func(rows int64, oldestAge time.Duration)
	// OnLeader reports a change of leadership: true when this relay became
	// the leader, false when it stepped down or lost the lease.
	OnLeader func(isLeader bool)
	// OnParked reports an event moved to pulsebus.outbox_parked, and why.
	OnParked func(topic string, reason Reason)
}

func (h *Hooks) published(topic string, n int) {
	if h.OnPublished != nil {
		h.OnPublished(topic, n)
	}
}

func (h *Hooks) publishFailed(reason Reason) {
	if h.OnPublishFailed != nil {
		h.OnPublishFailed(reason)
	}
}

func (h *Hooks) batch(size int, publishDuration time.Duration) {
	if h.OnBatch != nil {
		h.OnBatch(size, publishDuration)
	}
}

func (h *Hooks) commitToAck(d time.Duration) {
	if h.OnCommitToAck != nil {
		h.OnCommitToAck(d)
	}
}

func (h *Hooks) backlog(rows int64, oldestAge time.Duration) {
	if h.OnBacklog != nil {
		h.OnBacklog(rows, oldestAge)
	}
}

func (h *Hooks) leader(isLeader bool) {
	if h.OnLeader != nil {
		h.OnLeader(isLeader)
	}
}

func (h *Hooks) parked(topic string, reason Reason) {
	if h.OnParked != nil {
		h.OnParked(topic, reason)
	}
}
