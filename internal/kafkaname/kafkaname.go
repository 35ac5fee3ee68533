// Package kafkaname holds Kafka's rule for topic names, so that the outbox,
// the consumer library and the consumer CLI refuse the same names with the
// same explanation. It is pure: no I/O, no dependencies beyond the standard
// library.
package kafkaname

import (
	"errors"
	"fmt"
)

// ErrInvalidTopic is wrapped by every error [ValidateTopic] returns, so that
// callers can tell a refused name from other failures with errors.Is.
var ErrInvalidTopic = errors.New("invalid topic name")

// MaxTopicLen is Kafka's limit on the length of a topic name.
const MaxTopicLen = 249

// ValidateTopic checks a topic name against Kafka's rules: 1 to 249 ASCII
// letters, digits, '.', '_' or '-', and neither "." nor "..". The error
// wraps [ErrInvalidTopic] and says which rule the name breaks.
func ValidateTopic(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case topic == "." || topic == "..":
		return fmt.Errorf("%w: %q", ErrInvalidTopic, topic)
	case len(topic) > MaxTopicLen:
		return fmt.Errorf("%w: %d characters, more than %d", ErrInvalidTopic, len(topic), MaxTopicLen)
	}
	for i := 0; i < len(topic); i++ {
		if c := topic[i]; !topicByte(c) {
			return fmt.Errorf("%w: %q has the character %q; use letters, digits, '.', '_' and '-'", ErrInvalidTopic, topic, c)
		}
	}
	return nil
}

// topicByte reports whether c may appear in a topic name.
func topicByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}
