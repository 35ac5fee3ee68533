package dispatch

import "time"

// Outcome is what became of one event for one handler.
type Outcome string

// Outcomes reported to [Hooks.OnHandled].
const (
	// OutcomeOK: handled on the first attempt.
	OutcomeOK Outcome = "ok"
	// OutcomeRetried: handled after one or more retries.
	OutcomeRetried Outcome = "retried"
	// OutcomeDeadLettered: parked in the dead letters.
	OutcomeDeadLettered Outcome = "dead_lettered"
	// OutcomeSkippedDuplicate: below the handler's next offset, so already
	// done; not run again.
	OutcomeSkippedDuplicate Outcome = "skipped_duplicate"
)

// HandledEvent describes one event's outcome for one handler.
type HandledEvent struct {
	Handler   string
	Topic     string
	Partition int
	Offset    int64
	// EventType and EventTime are empty for a message that is not a valid
	// envelope.
	EventType string
	EventTime time.Time
	Outcome   Outcome
	// Attempts is how many times the handler ran (0 for skips and messages
	// that could not be decoded).
	Attempts int
	// Duration is the time spent in the handler, its transaction and
	// retries; for a batch, the batch's time divided by its size.
	Duration time.Duration
}

// DeadLetterEvent describes a message parked for a handler.
type DeadLetterEvent struct {
	Handler   string
	Topic     string
	Partition int
	Offset    int64
	Attempts  int
	Err       error
}

// Hooks receive the consumer's events, for metrics. Implementations must be
// safe for concurrent use and fast: they run on the processing path. Embed
// [NopHooks] to implement only some methods.
type Hooks interface {
	// OnHandled is called once per event and interested handler.
	OnHandled(e HandledEvent)
	// OnRetry is called before each retry of a handler; attempt is the
	// attempt that failed (1 for the first).
	OnRetry(handler string, attempt int, err error)
	// OnDeadLetter is called when a message is parked for a handler.
	OnDeadLetter(e DeadLetterEvent)
	// OnRebalance is called when this member joins a new group
	// generation, with the partitions assigned to it.
	OnRebalance(assigned map[string][]int)
	// OnLag reports a handler's lag on a partition: the partition's high
	// watermark minus the handler's next offset, as last seen.
	OnLag(handler, topic string, partition int, lag int64)
}

// NopHooks implements [Hooks] doing nothing.
type NopHooks struct{}

// OnHandled does nothing.
func (NopHooks) OnHandled(HandledEvent) {}

// OnRetry does nothing.
func (NopHooks) OnRetry(string, int, error) {}

// OnDeadLetter does nothing.
func (NopHooks) OnDeadLetter(DeadLetterEvent) {}

// OnRebalance does nothing.
func (NopHooks) OnRebalance(map[string][]int) {}

// OnLag does nothing.
func (NopHooks) OnLag(string, string, int, int64) {}
