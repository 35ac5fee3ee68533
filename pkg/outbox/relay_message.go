package outbox

import (
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// messageBuilder maps envelopes to Kafka messages exactly as
// [envelope.Limits.ToMessage] does (TestMessageBuilder_MatchesToMessage
// holds it to that), validating them with the same limits, but carves the
// header slices and header values of a whole batch out of a few large
// buffers instead of allocating a dozen small ones per message. The
// messages stay valid as long as the builder is not reused; one builder
// serves one batch.
type messageBuilder struct {
	limits  *envelope.Limits
	buf     []byte            // current chunk for header values and keys
	headers []kafka.Header    // current chunk for header slices
	names   map[string]string // meta key → its header name, "ce_" + key
}

const (
	builderBufChunk     = 32 << 10
	builderHeadersChunk = 1024
)

var specVersion = []byte(envelope.SpecVersion)

func newMessageBuilder(limits *envelope.Limits) *messageBuilder {
	return &messageBuilder{limits: limits}
}

// build validates env and returns its Kafka message, without a topic.
func (b *messageBuilder) build(env *envelope.Envelope) (kafka.Message, error) {
	if err := b.limits.Validate(*env); err != nil {
		return kafka.Message{}, err
	}
	n := 4 + len(env.Meta)
	if !env.Time.IsZero() {
		n++
	}
	if env.Subject != "" {
		n++
	}
	if env.DataSchema != "" {
		n++
	}
	if env.ContentType != "" {
		n++
	}
	hs := b.headerSlice(n)
	hs = append(hs,
		kafka.Header{Key: envelope.HeaderSpecVersion, Value: specVersion},
		kafka.Header{Key: envelope.HeaderID, Value: b.bytes(env.ID)},
		kafka.Header{Key: envelope.HeaderType, Value: b.bytes(env.Type)},
		kafka.Header{Key: envelope.HeaderSource, Value: b.bytes(env.Source)},
	)
	if !env.Time.IsZero() {
		hs = append(hs, kafka.Header{Key: envelope.HeaderTime, Value: b.time(env.Time)})
	}
	if env.Subject != "" {
		hs = append(hs, kafka.Header{Key: envelope.HeaderSubject, Value: b.bytes(env.Subject)})
	}
	if env.DataSchema != "" {
		hs = append(hs, kafka.Header{Key: envelope.HeaderDataSchema, Value: b.bytes(env.DataSchema)})
	}
	if env.ContentType != "" {
		hs = append(hs, kafka.Header{Key: envelope.HeaderContentType, Value: b.bytes(env.ContentType)})
	}
	if len(env.Meta) > 0 {
		var small [8]string
		keys := small[:0]
		for k := range env.Meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			hs = append(hs, kafka.Header{Key: b.headerName(k), Value: b.bytes(env.Meta[k])})
		}
	}
	msg := kafka.Message{Value: env.Payload, Headers: hs}
	if env.Key != "" {
		msg.Key = b.bytes(env.Key)
	}
	return msg, nil
}

// headerSlice returns an empty slice with room for n headers.
func (b *messageBuilder) headerSlice(n int) []kafka.Header {
	if cap(b.headers)-len(b.headers) < n {
		b.headers = make([]kafka.Header, 0, max(builderHeadersChunk, n))
	}
	start := len(b.headers)
	b.headers = b.headers[:start+n]
	return b.headers[start : start : start+n]
}

// room makes sure the current chunk has n free bytes and returns where
// they start.
func (b *messageBuilder) room(n int) int {
	if cap(b.buf)-len(b.buf) < n {
		b.buf = make([]byte, 0, max(builderBufChunk, n))
	}
	return len(b.buf)
}

// seal returns the bytes appended since start, capped so that appending to
// the result can never write over what follows.
func (b *messageBuilder) seal(start int) []byte {
	return b.buf[start:len(b.buf):len(b.buf)]
}

func (b *messageBuilder) bytes(s string) []byte {
	start := b.room(len(s))
	b.buf = append(b.buf, s...)
	return b.seal(start)
}

// time writes t as envelope.FormatTime does.
func (b *messageBuilder) time(t time.Time) []byte {
	start := b.room(len(time.RFC3339Nano) + 10)
	// At most 30 bytes for the years Validate allows; were it more,
	// append would move the chunk, and the result would still be right.
	b.buf = t.UTC().AppendFormat(b.buf, time.RFC3339Nano)
	return b.seal(start)
}

func (b *messageBuilder) headerName(key string) string {
	if name, ok := b.names[key]; ok {
		return name
	}
	name := envelope.HeaderPrefix + key
	if b.names == nil {
		b.names = map[string]string{}
	}
	if len(b.names) < maxInterned {
		b.names[key] = name
	}
	return name
}
