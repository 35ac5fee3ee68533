package outbox

import (
	"errors"
	"fmt"
)

// ErrInvalidTopic is wrapped by errors for topic names Kafka would refuse.
var ErrInvalidTopic = errors.New("invalid topic name")

// maxTopicLen is Kafka's limit on topic names.
const maxTopicLen = 249

// ValidateTopic checks a topic name against Kafka's rules: 1 to 249 ASCII
// letters, digits, '.', '_' or '-', and neither "." nor "..".
func ValidateTopic(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case topic == "." || topic == "..":
		return fmt.Errorf("%w: %q", ErrInvalidTopic, topic)
	case len(topic) > maxTopicLen:
		return fmt.Errorf("%w: %d characters, more than %d", ErrInvalidTopic, len(topic), maxTopicLen)
	}
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q has the character %q; use letters, digits, '.', '_' and '-'", ErrInvalidTopic, topic, c)
		}
	}
	return nil
}
