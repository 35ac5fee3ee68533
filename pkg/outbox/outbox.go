package outbox

import (
	"errors"
	"time"
)

// The relay's defaults and bounds, and the notification channel.
//
// DefaultNotifyDebounce was chosen by measurement
// (BenchmarkCommitToAck, 8 producers of single-event transactions, shared
// 2-core machine): against 1ms it cut claims per event at 1,000 events/s
// from 0.57 to 0.18 and the relay's PostgreSQL CPU per event by 40%, and
// kept the commit-to-ack p99 at 5,000 events/s at 9-13ms (1ms: 12-14ms,
// 10ms: 13-17ms).
const (
	DefaultRelayName         = "default"
	DefaultBatchSize         = 1000
	DefaultPollInterval      = time.Second
	DefaultNotifyDebounce    = 5 * time.Millisecond
	DefaultLeaseTTL          = 15 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultMaxMessageBytes   = 1_000_000
	DefaultMaxBatchBytes     = 16 << 20
	DefaultBackoffInitial    = 100 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBacklogInterval   = 10 * time.Second
	DefaultTopicPartitions   = 1
	DefaultReplicationFactor = 1

	// MinMaxBatchBytes is the least RelayConfig.MaxBatchBytes.
	MinMaxBatchBytes = 64 << 10

	// NotifyChannel is the PostgreSQL notification channel producers
	// signal in the inserting transaction; PostgreSQL delivers it only on
	// commit, and the relay listens on it. Notify it to wake the relays,
	// e.g. after moving rows back into the outbox.
	NotifyChannel = "pulsebus_outbox"
)

// Errors of the package. ErrInvalidTopic is in topic.go.
var (
	// ErrDuplicateEventID is wrapped by the error of [InsertTx] for an
	// event whose id is already in the outbox (or given twice in one call):
	// an event id names one event, and consumers would skip the second one
	// as a duplicate. Nothing of the call is written. The outbox checks ids
	// only while their events wait in it: once the relay has published an
	// event and deleted its row, its id is not checked any more.
	ErrDuplicateEventID = errors.New("event id already in the outbox")

	// ErrLeaseLost is returned (wrapped) when the relay's leader lease
	// ended while it held a batch: nothing of that batch was deleted.
	ErrLeaseLost = errors.New("relay leader lease lost")
)
