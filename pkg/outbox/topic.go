package outbox

import "github.com/edupulse/pulsebus/internal/kafkaname"

// ErrInvalidTopic is wrapped by errors for topic names Kafka would refuse.
var ErrInvalidTopic = kafkaname.ErrInvalidTopic

// ValidateTopic checks a topic name against Kafka's rules: 1 to 249 ASCII
// letters, digits, '.', '_' or '-', and neither "." nor "..".
func ValidateTopic(topic string) error {
	return kafkaname.ValidateTopic(topic)
}
