package consumercmd

import (
	"context"
	"log/slog"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// logHandler is the built-in log handler: one log line per event, at a
// chosen level. It never fails, so its offsets always advance.
//
// It lives here rather than in a public package: it is a convenience of the
// binary (a Go program writes the same in five lines with its own logger),
// and keeping it internal keeps the public API to what users build on.
type logHandler struct {
	log   *slog.Logger
	level slog.Level
}

func newLogHandler(log *slog.Logger, name string, level slog.Level) *logHandler {
	return &logHandler{log: log.With("handler", name), level: level}
}

// Handle logs the event's id, type, key and source, and where it was read
// from (topic, partition, offset).
func (h *logHandler) Handle(ctx context.Context, env envelope.Envelope) error {
	if !h.log.Enabled(ctx, h.level) {
		return nil
	}
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs,
		slog.String("id", env.ID),
		slog.String("type", env.Type),
		slog.String("key", env.Key),
		slog.String("source", env.Source),
		slog.Time("event_time", env.Time))
	if m, ok := dispatch.MessageFromContext(ctx); ok {
		attrs = append(attrs, slog.String("topic", m.Topic), slog.Int("partition", m.Partition), slog.Int64("offset", m.Offset))
	}
	h.log.LogAttrs(ctx, h.level, "event", attrs...)
	return nil
}
