package outbox

import "time"

// RelayHooks receives the relay's observations. The relay calls them from
// its own goroutines, synchronously, so they must be fast and safe for
// concurrent use. Embed [NopRelayHooks] to implement only some of them.
// Package outboxprom adapts them to Prometheus.
type RelayHooks interface {
	// Published reports n events of topic acknowledged by the broker.
	Published(topic string, n int)
	// PublishError reports a failed publish attempt, permanent or not,
	// with one of the Reason constants.
	PublishError(reason string)
	// Batch reports one claimed batch: its size and how long producing it
	// took (from the first produce request to the last acknowledgement).
	Batch(size int, publishDuration time.Duration)
	// CommitToAck reports, for one event, the time from its outbox row's
	// created_at to the broker's acknowledgement.
	CommitToAck(d time.Duration)
	// Backlog reports, periodically, the rows in the outbox and the age of
	// the oldest (0 when empty).
	Backlog(rows int64, oldestAge time.Duration)
	// Leader reports a change of leadership: true when this relay became
	// the leader, false when it stepped down or lost the lease.
	Leader(isLeader bool)
	// Parked reports an event moved to pulsebus.outbox_parked.
	Parked(topic, reason string)
}

// NopRelayHooks implements [RelayHooks] by doing nothing.
type NopRelayHooks struct{}

// Published does nothing.
func (NopRelayHooks) Published(string, int) {}

// PublishError does nothing.
func (NopRelayHooks) PublishError(string) {}

// Batch does nothing.
func (NopRelayHooks) Batch(int, time.Duration) {}

// CommitToAck does nothing.
func (NopRelayHooks) CommitToAck(time.Duration) {}

// Backlog does nothing.
func (NopRelayHooks) Backlog(int64, time.Duration) {}

// Leader does nothing.
func (NopRelayHooks) Leader(bool) {}

// Parked does nothing.
func (NopRelayHooks) Parked(string, string) {}
