package envelope

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Kafka header names of the CloudEvents Kafka protocol binding, binary mode.
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderType        = "ce_type"
	HeaderSource      = "ce_source"
	HeaderTime        = "ce_time"
	HeaderSubject     = "ce_subject"
	HeaderDataSchema  = "ce_dataschema"
	HeaderContentType = "content-type"
	// HeaderPrefix prefixes every CloudEvents attribute header; a meta entry
	// "tenant" travels as the header "ce_tenant".
	HeaderPrefix = "ce_"
)

// ToMessage maps env to a Kafka message (without a topic) under
// [DefaultLimits]. See [Limits.ToMessage].
func ToMessage(env Envelope) (kafka.Message, error) { return DefaultLimits().ToMessage(env) }

// FromMessage maps a Kafka message back to an envelope under
// [DefaultLimits]. See [Limits.FromMessage].
func FromMessage(msg kafka.Message) (Envelope, error) { return DefaultLimits().FromMessage(msg) }

// ToMessage validates env and maps it to a Kafka message in the CloudEvents
// binary mode: Key is the partition key (nil when empty), Value the payload,
// and the attributes are headers: ce_specversion, ce_id, ce_type,
// ce_source, ce_time (RFC 3339, UTC) when set, ce_subject when set,
// ce_dataschema when set, content-type when set, and ce_<key> for each meta
// entry, in sorted key order. The topic is left for the caller to set.
func (l Limits) ToMessage(env Envelope) (kafka.Message, error) {
	if err := l.Validate(env); err != nil {
		return kafka.Message{}, err
	}
	// Meta keys in sorted order, on the stack for the usual few.
	var keyBuf [8]string
	keys := keyBuf[:0]
	for k := range env.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	// Every header value goes into one buffer: one allocation instead of
	// one per header.
	var now [len(time.RFC3339Nano)]byte
	var timeText []byte
	if !env.Time.IsZero() {
		timeText = env.Time.UTC().AppendFormat(now[:0], time.RFC3339Nano)
	}
	size := len(SpecVersion) + len(env.ID) + len(env.Type) + len(env.Source) + len(timeText) + len(env.Subject) + len(env.DataSchema) + len(env.ContentType)
	for _, k := range keys {
		size += len(env.Meta[k])
	}
	buf := make([]byte, 0, size)
	headers := make([]kafka.Header, 0, headerCount(env))
	add := func(k string, v []byte) {
		start := len(buf)
		buf = append(buf, v...)
		headers = append(headers, kafka.Header{Key: k, Value: buf[start:len(buf):len(buf)]})
	}
	addString := func(k, v string) {
		start := len(buf)
		buf = append(buf, v...)
		headers = append(headers, kafka.Header{Key: k, Value: buf[start:len(buf):len(buf)]})
	}
	addString(HeaderSpecVersion, SpecVersion)
	addString(HeaderID, env.ID)
	addString(HeaderType, env.Type)
	addString(HeaderSource, env.Source)
	if timeText != nil {
		add(HeaderTime, timeText)
	}
	if env.Subject != "" {
		addString(HeaderSubject, env.Subject)
	}
	if env.DataSchema != "" {
		addString(HeaderDataSchema, env.DataSchema)
	}
	if env.ContentType != "" {
		addString(HeaderContentType, env.ContentType)
	}
	for _, k := range keys {
		addString(HeaderPrefix+k, env.Meta[k])
	}
	msg := kafka.Message{Value: env.Payload, Headers: headers}
	if env.Key != "" {
		msg.Key = []byte(env.Key)
	}
	return msg, nil
}

// FromMessage maps a Kafka message carrying a CloudEvent to an envelope, in
// either mode of the CloudEvents Kafka protocol binding:
//   - structured mode, when the content-type header starts with
//     "application/cloudevents": the value is the whole event in the JSON
//     event format (see [Limits.FromStructured]);
//   - binary mode otherwise: the attributes are ce_ headers and the value is
//     the data. Headers without the ce_ prefix, other than content-type,
//     are ignored; ce_ headers that are not core attributes become Meta
//     entries.
//
// It accepts everything CloudEvents 1.0 allows (any non-empty id, no time,
// extension names of any length) and keeps every attribute byte for byte.
// It checks every attribute and returns a [*FieldError] or [*LimitError]
// naming the first bad one; it never panics.
func (l Limits) FromMessage(msg kafka.Message) (Envelope, error) {
	if ct, ok := structuredContentType(msg.Headers); ok {
		return l.FromStructured(ct, msg.Key, msg.Value)
	}
	if l.MaxHeaders > 0 && len(msg.Headers) > l.MaxHeaders {
		return Envelope{}, &LimitError{Field: "headers", Size: len(msg.Headers), Limit: l.MaxHeaders}
	}
	var b binaryEvent
	for _, h := range msg.Headers {
		if err := b.add(h, l.MaxHeaderValueBytes); err != nil {
			return Envelope{}, err
		}
	}
	if err := b.finish(); err != nil {
		return Envelope{}, err
	}
	b.env.Key = string(msg.Key)
	b.env.Payload = msg.Value
	if err := l.validate(b.env, false); err != nil {
		return Envelope{}, err
	}
	return b.env, nil
}

// binaryEvent collects the attributes of a binary-mode message, header by
// header.
type binaryEvent struct {
	env  Envelope
	seen attrSet
	spec []byte
	ts   string
}

// add takes header h: a core attribute (once only), an extension attribute
// (ce_<name>) or, without the ce_ prefix and other than content-type,
// nothing. maxValue bounds its value when > 0.
func (b *binaryEvent) add(h kafka.Header, maxValue int) error {
	name := strings.ToLower(h.Key) // no copy when already lower case
	if name != HeaderContentType && !strings.HasPrefix(name, HeaderPrefix) {
		return nil
	}
	attr := coreAttr(name)
	if attr != 0 {
		if b.seen&attr != 0 {
			return &FieldError{Field: name, Reason: "header appears more than once"}
		}
		b.seen |= attr
	}
	if maxValue > 0 && len(h.Value) > maxValue {
		return &LimitError{Field: name, Size: len(h.Value), Limit: maxValue}
	}
	if attr == 0 {
		return b.addExtension(name, h.Value)
	}
	b.setCore(attr, h.Value)
	return nil
}

// setCore stores core attribute attr's value.
func (b *binaryEvent) setCore(attr attrSet, v []byte) {
	switch attr {
	case attrSpecVersion:
		b.spec = v
	case attrID:
		b.env.ID = string(v)
	case attrType:
		b.env.Type = string(v)
	case attrSource:
		b.env.Source = string(v)
	case attrTime:
		b.ts = string(v)
	case attrSubject:
		b.env.Subject = string(v)
	case attrDataSchema:
		b.env.DataSchema = string(v)
	case attrContentType:
		b.env.ContentType = internContentType(v)
	}
}

// addExtension stores extension header name (lower case, ce_ prefixed) as
// a Meta entry.
func (b *binaryEvent) addExtension(name string, v []byte) error {
	key := strings.TrimPrefix(name, HeaderPrefix)
	if !validExtensionName(key) {
		return &FieldError{Field: truncate(name), Reason: metaKeyReason(key, false)}
	}
	if _, dup := b.env.Meta[key]; dup {
		return &FieldError{Field: name, Reason: "header appears more than once"}
	}
	if b.env.Meta == nil {
		b.env.Meta = make(map[string]string)
	}
	b.env.Meta[key] = string(v)
	return nil
}

// finish checks the required attributes once every header is in, and
// parses the time.
func (b *binaryEvent) finish() error {
	switch {
	case b.seen&attrSpecVersion == 0:
		return &FieldError{Field: HeaderSpecVersion, Reason: "missing: not a CloudEvent"}
	case string(b.spec) != SpecVersion:
		return &FieldError{Field: HeaderSpecVersion, Reason: fmt.Sprintf("unsupported version %q (want %q)", truncate(string(b.spec)), SpecVersion)}
	case b.seen&attrID == 0:
		return &FieldError{Field: HeaderID, Reason: "missing"}
	}
	if b.seen&attrTime != 0 {
		var err error
		if b.env.Time, err = ParseTime(b.ts); err != nil {
			return &FieldError{Field: HeaderTime, Reason: fmt.Sprintf("%q is not an RFC 3339 time", truncate(b.ts)), Err: err}
		}
	}
	return nil
}

// attrSet records which core attributes a message carried, to refuse
// duplicates without a map per message.
type attrSet uint8

const (
	attrSpecVersion attrSet = 1 << iota
	attrID
	attrType
	attrSource
	attrTime
	attrSubject
	attrDataSchema
	attrContentType
)

// coreAttr maps a lower-case header name to its core attribute, 0 for an
// extension attribute.
func coreAttr(name string) attrSet {
	switch name {
	case HeaderSpecVersion:
		return attrSpecVersion
	case HeaderID:
		return attrID
	case HeaderType:
		return attrType
	case HeaderSource:
		return attrSource
	case HeaderTime:
		return attrTime
	case HeaderSubject:
		return attrSubject
	case HeaderDataSchema:
		return attrDataSchema
	case HeaderContentType:
		return attrContentType
	}
	return 0
}

// internContentType returns the content type as a string, sharing the
// constant for the content type nearly every PulseBus event carries.
func internContentType(b []byte) string {
	if string(b) == ContentTypeJSON {
		return ContentTypeJSON
	}
	return string(b)
}

// FormatTime renders t as ce_time does: RFC 3339 in UTC with as many
// fractional digits as needed.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ParseTime parses a ce_time value and returns it in UTC.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// truncate shortens untrusted values quoted in error messages.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
