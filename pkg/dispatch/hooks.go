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
	// OutcomeDeadLettered: dead-lettered.
	OutcomeDeadLettered Outcome = "dead_lettered"
	// OutcomeSkippedDuplicate: below the handler's next offset, so already
	// done; not run again.
	OutcomeSkippedDuplicate Outcome = "skipped_duplicate"
	// OutcomeHeld: not run but stored behind a dead letter of the same key
	// (WithKeyOrder); it runs once that dead letter is redriven or
	// deleted, and is reported again then.
	OutcomeHeld Outcome = "held"
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

// DeadLetterEvent describes a message dead-lettered for a handler.
type DeadLetterEvent struct {
	Handler   string
	Topic     string
	Partition int
	Offset    int64
	Attempts  int
	Err       error
}

// StallEvent reports that a handler's worker on a partition stalled — it
// has not advanced for Config.StallTimeout while messages wait — or, with
// Stalled false, that it advances again or is gone (the partition moved, the
// consumer stopped).
type StallEvent struct {
	Handler   string
	Topic     string
	Partition int
	Stalled   bool
	// Since is when the worker last advanced.
	Since time.Time
	// Waiting is how many messages wait (high watermark minus the saved
	// offset); -1 when unknown.
	Waiting int64
	// Cause is the last error the worker met (a failing database write,
	// a handler being retried); nil when it reported none.
	Cause error
}

// OffsetResetEvent reports a handler offset found beyond its partition's
// end (High): the topic was recreated, or a replay went past the end. The
// handler resumes from the partition's start (Low).
type OffsetResetEvent struct {
	Handler   string
	Topic     string
	Partition int
	// Saved is the offset the handler had.
	Saved int64
	// Low and High are the partition's low and high watermarks.
	Low, High int64
}

// Hooks receive the consumer's events, for metrics: each field, when not
// nil, is called for its event. A nil field is skipped, so a program sets
// only those it needs, and a hook added later breaks no caller (as
// net/http/httptrace.ClientTrace). The functions must be safe for
// concurrent use and fast: they run on the processing path.
type Hooks struct {
	// OnHandled is called once per event and interested handler.
	OnHandled func(e HandledEvent)
	// OnRetry is called before each retry of a handler; attempt is the
	// attempt that failed (1 for the first).
	OnRetry func(handler string, attempt int, err error)
	// OnDeadLetter is called when a message is dead-lettered for a handler.
	OnDeadLetter func(e DeadLetterEvent)
	// OnRebalance is called when this member joins a new group
	// generation, with the partitions assigned to it.
	OnRebalance func(assigned map[string][]int)
	// OnLag reports a handler's lag on a partition: the partition's high
	// watermark minus the handler's next offset, as last seen.
	OnLag func(handler, topic string, partition int, lag int64)
	// OnStall is called when a worker stalls and when it recovers (see
	// Config.StallTimeout).
	OnStall func(e StallEvent)
	// OnOffsetReset is called when a handler offset beyond its partition's
	// end is reset to the partition's start.
	OnOffsetReset func(e OffsetResetEvent)
}

// The consumer calls its hooks through these, which skip nil fields.

func (h *Hooks) handled(e HandledEvent) {
	if h.OnHandled != nil {
		h.OnHandled(e)
	}
}

func (h *Hooks) retry(handler string, attempt int, err error) {
	if h.OnRetry != nil {
		h.OnRetry(handler, attempt, err)
	}
}

func (h *Hooks) deadLetter(e DeadLetterEvent) {
	if h.OnDeadLetter != nil {
		h.OnDeadLetter(e)
	}
}

func (h *Hooks) rebalance(assigned map[string][]int) {
	if h.OnRebalance != nil {
		h.OnRebalance(assigned)
	}
}

func (h *Hooks) lag(handler, topic string, partition int, lag int64) {
	if h.OnLag != nil {
		h.OnLag(handler, topic, partition, lag)
	}
}

func (h *Hooks) stall(e StallEvent) {
	if h.OnStall != nil {
		h.OnStall(e)
	}
}

func (h *Hooks) offsetReset(e OffsetResetEvent) {
	if h.OnOffsetReset != nil {
		h.OnOffsetReset(e)
	}
}
