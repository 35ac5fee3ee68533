package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// Reason says why a message was not published: reported to
// [Hooks.OnPublishFailed] and [Hooks.OnParked], and used as the reason label
// of the relay's metrics.
type Reason string

// The reasons.
const (
	ReasonMessageTooLarge   Reason = "message_too_large"  // the broker or the relay's size limit refused the message
	ReasonInvalidTopic      Reason = "invalid_topic"      // the topic name is not valid for Kafka
	ReasonNotAuthorized     Reason = "not_authorized"     // no permission to write the topic
	ReasonInvalidRecord     Reason = "invalid_record"     // the broker refused the record (timestamp, policy, format)
	ReasonInvalidEnvelope   Reason = "invalid_envelope"   // the row does not form a valid envelope
	ReasonUnknownTopic      Reason = "unknown_topic"      // the topic does not exist (transient: rows wait)
	ReasonBrokerError       Reason = "broker_error"       // a retriable Kafka error code (leader change, not enough replicas, ...)
	ReasonBrokerUnavailable Reason = "broker_unavailable" // network error, timeout, broker down
	ReasonDatabase          Reason = "database"           // PostgreSQL error while claiming or deleting
	ReasonLeaseLost         Reason = "lease_lost"         // the lease ended during a batch; nothing was deleted
)

// PublishError classifies why a message could not be published: Permanent
// errors park the row in pulsebus.outbox_parked, the others leave it in the
// outbox to be retried with back-off.
type PublishError struct {
	// Reason says why.
	Reason Reason
	// Permanent is true when retrying cannot succeed.
	Permanent bool
	// Err is the cause.
	Err error
}

func (e *PublishError) Error() string {
	kind := "transient"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("%s publish error (%s): %v", kind, e.Reason, e.Err)
}

// Unwrap returns the cause.
func (e *PublishError) Unwrap() error { return e.Err }

// UnknownTopicError reports topics that do not exist on the cluster while
// topic creation ([RelayConfig.AutoCreateTopics]) is off. Rows for them stay
// in the outbox.
type UnknownTopicError struct {
	// Topics are the missing topics.
	Topics []string
}

func (e *UnknownTopicError) Error() string {
	return fmt.Sprintf("Kafka topic(s) %s do not exist: create them, or let the relay create them "+
		"(RelayConfig.AutoCreateTopics)", strings.Join(e.Topics, ", "))
}

// classifyPublishError tells whether err, returned by kafka-go while
// producing one message (or by the envelope mapping), is permanent for that
// message, and the reason. Only errors that cannot go away by retrying are
// permanent: a message too large for the broker, an invalid topic name, a
// topic the relay may not write, a record the broker refuses by policy or
// format, and an envelope that does not validate. Everything else (network
// errors, timeouts, leader changes, a missing topic, a broker that is
// shutting down) is transient and the row stays in the outbox.
func classifyPublishError(err error) *PublishError {
	if err == nil {
		return nil
	}
	var pe *PublishError
	if errors.As(err, &pe) {
		return pe
	}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		// kafka-go reports per message; classify the first failure.
		for _, e := range werrs {
			if e != nil {
				return classifyPublishError(e)
			}
		}
	}
	var (
		tooLarge kafka.MessageTooLargeError
		rowErr   *rowDecodeError
		ke       kafka.Error
		ute      *UnknownTopicError
	)
	switch {
	case errors.Is(err, ErrLeaseLost):
		return &PublishError{Reason: ReasonLeaseLost, Err: err}
	case errors.As(err, &tooLarge):
		return &PublishError{Reason: ReasonMessageTooLarge, Permanent: true, Err: err}
	case errors.As(err, &rowErr), errors.Is(err, envelope.ErrInvalid):
		return &PublishError{Reason: ReasonInvalidEnvelope, Permanent: true, Err: err}
	case errors.Is(err, ErrInvalidTopic):
		return &PublishError{Reason: ReasonInvalidTopic, Permanent: true, Err: err}
	case errors.As(err, &ute):
		return &PublishError{Reason: ReasonUnknownTopic, Err: err}
	case errors.As(err, &ke):
		switch ke {
		case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge:
			return &PublishError{Reason: ReasonMessageTooLarge, Permanent: true, Err: err}
		case kafka.InvalidTopic:
			return &PublishError{Reason: ReasonInvalidTopic, Permanent: true, Err: err}
		case kafka.TopicAuthorizationFailed:
			return &PublishError{Reason: ReasonNotAuthorized, Permanent: true, Err: err}
		case kafka.InvalidRecord, kafka.InvalidTimestamp, kafka.PolicyViolation,
			kafka.UnsupportedForMessageFormat:
			return &PublishError{Reason: ReasonInvalidRecord, Permanent: true, Err: err}
		case kafka.UnknownTopicOrPartition:
			return &PublishError{Reason: ReasonUnknownTopic, Err: err}
		default:
			return &PublishError{Reason: ReasonBrokerError, Err: err}
		}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &PublishError{Reason: ReasonBrokerUnavailable, Err: err}
	default:
		return &PublishError{Reason: ReasonBrokerUnavailable, Err: err}
	}
}

// isDivisionByZero tells the fence's refusal (see fenceSQL) from other
// database errors.
func isDivisionByZero(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22012"
}
