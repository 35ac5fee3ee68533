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
	var (
		env  Envelope
		seen attrSet
		spec []byte
		ts   string
	)
	for _, h := range msg.Headers {
		name := strings.ToLower(h.Key) // no copy when already lower case
		if name != HeaderContentType && !strings.HasPrefix(name, HeaderPrefix) {
			continue
		}
		attr := coreAttr(name)
		if attr != 0 {
			if seen&attr != 0 {
				return Envelope{}, &FieldError{Field: name, Reason: "header appears more than once"}
			}
			seen |= attr
		}
		if l.MaxHeaderValueBytes > 0 && len(h.Value) > l.MaxHeaderValueBytes {
			return Envelope{}, &LimitError{Field: name, Size: len(h.Value), Limit: l.MaxHeaderValueBytes}
		}
		switch attr {
		case attrSpecVersion:
			spec = h.Value
		case attrID:
			env.ID = string(h.Value)
		case attrType:
			env.Type = string(h.Value)
		case attrSource:
			env.Source = string(h.Value)
		case attrTime:
			ts = string(h.Value)
		case attrSubject:
			env.Subject = string(h.Value)
		case attrDataSchema:
			env.DataSchema = string(h.Value)
		case attrContentType:
			env.ContentType = internContentType(h.Value)
		default:
			key := strings.TrimPrefix(name, HeaderPrefix)
			if !validExtensionName(key) {
				return Envelope{}, &FieldError{Field: truncate(name), Reason: metaKeyReason(key, false)}
			}
			if _, dup := env.Meta[key]; dup {
				return Envelope{}, &FieldError{Field: name, Reason: "header appears more than once"}
			}
			if env.Meta == nil {
				env.Meta = make(map[string]string)
			}
			env.Meta[key] = string(h.Value)
		}
	}
	switch {
	case seen&attrSpecVersion == 0:
		return Envelope{}, &FieldError{Field: HeaderSpecVersion, Reason: "missing: not a CloudEvent"}
	case string(spec) != SpecVersion:
		return Envelope{}, &FieldError{Field: HeaderSpecVersion, Reason: fmt.Sprintf("unsupported version %q (want %q)", truncate(string(spec)), SpecVersion)}
	case seen&attrID == 0:
		return Envelope{}, &FieldError{Field: HeaderID, Reason: "missing"}
	}
	if seen&attrTime != 0 {
		var err error
		if env.Time, err = ParseTime(ts); err != nil {
			return Envelope{}, &FieldError{Field: HeaderTime, Reason: fmt.Sprintf("%q is not an RFC 3339 time", truncate(ts)), Err: err}
		}
	}
	env.Key = string(msg.Key)
	env.Payload = msg.Value
	if err := l.validate(env, false); err != nil {
		return Envelope{}, err
	}
	return env, nil
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
