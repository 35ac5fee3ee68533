// Package tracing carries OpenTelemetry trace context through PulseBus
// events, as the CloudEvents distributed tracing extension does: the W3C
// traceparent and tracestate travel as the extension attributes
// "traceparent" and "tracestate" (envelope meta, ce_traceparent on Kafka,
// ce-traceparent on a webhook). It also names the attributes the relay's
// and the consumer's spans carry, after the OpenTelemetry messaging
// semantic conventions.
//
// It depends on the OpenTelemetry API only; the binaries choose the SDK and
// exporter.
package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The extension attributes that carry trace context.
const (
	TraceParent = "traceparent"
	TraceState  = "tracestate"
)

// w3c is the W3C Trace Context propagator, used whatever global
// propagator the program set: the CloudEvents extension is defined as W3C.
var w3c propagation.TraceContext

// metaCarrier adapts an event's meta to propagation.TextMapCarrier.
type metaCarrier map[string]string

func (m metaCarrier) Get(key string) string { return m[key] }
func (m metaCarrier) Set(key, value string) { m[key] = value }
func (m metaCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// Inject returns meta with the traceparent (and tracestate) of the span in
// ctx, when ctx has a valid one and meta has no traceparent of its own. It
// copies meta before changing it; unchanged, it returns meta itself.
func Inject(ctx context.Context, meta map[string]string) map[string]string {
	if _, set := meta[TraceParent]; set || !trace.SpanContextFromContext(ctx).IsValid() {
		return meta
	}
	out := make(map[string]string, len(meta)+2)
	for k, v := range meta {
		out[k] = v
	}
	w3c.Inject(ctx, metaCarrier(out))
	return out
}

// Extract returns ctx with the remote span context meta carries, if any.
func Extract(ctx context.Context, meta map[string]string) context.Context {
	if meta[TraceParent] == "" {
		return ctx
	}
	return w3c.Extract(ctx, metaCarrier(meta))
}

// Link returns a link to the span context meta carries; false when it
// carries none (or an invalid one).
func Link(meta map[string]string) (trace.Link, bool) {
	sc := trace.SpanContextFromContext(Extract(context.Background(), meta))
	if !sc.IsValid() {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: sc}, true
}

// InjectHeaders writes the trace context of ctx (traceparent, and
// tracestate when set) through set, for HTTP headers; nothing when ctx has
// no valid span context.
func InjectHeaders(ctx context.Context, set func(key, value string)) {
	m := metaCarrier{}
	w3c.Inject(ctx, m)
	for k, v := range m {
		set(k, v)
	}
}

// Attribute keys of the messaging semantic conventions, and the
// CloudEvents ones.
const (
	MessagingSystem         = attribute.Key("messaging.system")
	MessagingOperationType  = attribute.Key("messaging.operation.type")
	MessagingOperationName  = attribute.Key("messaging.operation.name")
	MessagingDestination    = attribute.Key("messaging.destination.name")
	MessagingPartition      = attribute.Key("messaging.destination.partition.id")
	MessagingKafkaOffset    = attribute.Key("messaging.kafka.offset")
	MessagingKafkaKey       = attribute.Key("messaging.kafka.message.key")
	MessagingConsumerGroup  = attribute.Key("messaging.consumer.group.name")
	MessagingMessageID      = attribute.Key("messaging.message.id")
	MessagingBatchCount     = attribute.Key("messaging.batch.message_count")
	CloudEventsEventID      = attribute.Key("cloudevents.event_id")
	CloudEventsEventType    = attribute.Key("cloudevents.event_type")
	PulseBusHandler         = attribute.Key("pulsebus.handler")
	PulseBusAttempt         = attribute.Key("pulsebus.attempt")
	MessagingSystemKafka    = "kafka"
	OperationTypeProcess    = "process"
	OperationTypeSend       = "send"
	OperationNameProcess    = "process"
	OperationNamePublish    = "publish"
	InstrumentationRelay    = "github.com/edupulse/pulsebus/pkg/outbox"
	InstrumentationConsumer = "github.com/edupulse/pulsebus/pkg/dispatch"
)
