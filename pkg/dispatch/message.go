package dispatch

import (
	"context"

	"github.com/segmentio/kafka-go"
)

// MessageInfo locates the Kafka message a handler is running on, for logs
// and tracing.
type MessageInfo struct {
	Topic     string
	Partition int
	Offset    int64
}

type messageKey struct{}

// MessageFromContext returns the Kafka message a plain or per-event
// transactional handler (and its middleware) is running on, also during
// a redrive. It reports false for batch handlers, which get several.
func MessageFromContext(ctx context.Context) (MessageInfo, bool) {
	m, ok := ctx.Value(messageKey{}).(MessageInfo)
	return m, ok
}

func withMessage(ctx context.Context, m kafka.Message) context.Context {
	return context.WithValue(ctx, messageKey{}, MessageInfo{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})
}
