package envelope

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
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
// ce_source, ce_time (RFC 3339, UTC), ce_subject when set, content-type when
// set, and ce_<key> for each meta entry, in sorted key order. The topic is
// left for the caller to set.
func (l Limits) ToMessage(env Envelope) (kafka.Message, error) {
	if err := l.Validate(env); err != nil {
		return kafka.Message{}, err
	}
	headers := make([]kafka.Header, 0, headerCount(env))
	add := func(k, v string) { headers = append(headers, kafka.Header{Key: k, Value: []byte(v)}) }
	add(HeaderSpecVersion, SpecVersion)
	add(HeaderID, env.ID.String())
	add(HeaderType, env.Type)
	add(HeaderSource, env.Source)
	add(HeaderTime, FormatTime(env.Time))
	if env.Subject != "" {
		add(HeaderSubject, env.Subject)
	}
	if env.ContentType != "" {
		add(HeaderContentType, env.ContentType)
	}
	for _, k := range slices.Sorted(maps.Keys(env.Meta)) {
		add(HeaderPrefix+k, env.Meta[k])
	}
	msg := kafka.Message{Value: env.Payload, Headers: headers}
	if env.Key != "" {
		msg.Key = []byte(env.Key)
	}
	return msg, nil
}

// FromMessage maps a Kafka message written in the CloudEvents binary mode to
// an envelope. It checks every attribute and returns a [*FieldError] or
// [*LimitError] naming the first bad one; it never panics. Headers without
// the ce_ prefix, other than content-type, are ignored; ce_ headers that are
// not core attributes become Meta entries.
func (l Limits) FromMessage(msg kafka.Message) (Envelope, error) {
	if l.MaxHeaders > 0 && len(msg.Headers) > l.MaxHeaders {
		return Envelope{}, &LimitError{Field: "headers", Size: len(msg.Headers), Limit: l.MaxHeaders}
	}
	var (
		env  Envelope
		seen = make(map[string]bool, len(msg.Headers))
		spec string
		id   string
		ts   string
	)
	for _, h := range msg.Headers {
		name := strings.ToLower(h.Key)
		if name != HeaderContentType && !strings.HasPrefix(name, HeaderPrefix) {
			continue
		}
		if seen[name] {
			return Envelope{}, &FieldError{Field: name, Reason: "header appears more than once"}
		}
		seen[name] = true
		if l.MaxHeaderValueBytes > 0 && len(h.Value) > l.MaxHeaderValueBytes {
			return Envelope{}, &LimitError{Field: name, Size: len(h.Value), Limit: l.MaxHeaderValueBytes}
		}
		v := string(h.Value)
		switch name {
		case HeaderSpecVersion:
			spec = v
		case HeaderID:
			id = v
		case HeaderType:
			env.Type = v
		case HeaderSource:
			env.Source = v
		case HeaderTime:
			ts = v
		case HeaderSubject:
			env.Subject = v
		case HeaderContentType:
			env.ContentType = v
		default:
			key := strings.TrimPrefix(name, HeaderPrefix)
			if !ValidMetaKey(key) {
				return Envelope{}, &FieldError{Field: name, Reason: "not a valid extension attribute name"}
			}
			if env.Meta == nil {
				env.Meta = make(map[string]string)
			}
			env.Meta[key] = v
		}
	}
	switch {
	case !seen[HeaderSpecVersion]:
		return Envelope{}, &FieldError{Field: HeaderSpecVersion, Reason: "missing: not a CloudEvent"}
	case spec != SpecVersion:
		return Envelope{}, &FieldError{Field: HeaderSpecVersion, Reason: fmt.Sprintf("unsupported version %q (want %q)", truncate(spec), SpecVersion)}
	case !seen[HeaderID]:
		return Envelope{}, &FieldError{Field: HeaderID, Reason: "missing"}
	}
	parsed, err := uuid.Parse(id)
	if err != nil {
		return Envelope{}, &FieldError{Field: HeaderID, Reason: fmt.Sprintf("%q is not a UUID", truncate(id)), Err: err}
	}
	env.ID = parsed
	if !seen[HeaderTime] {
		return Envelope{}, &FieldError{Field: HeaderTime, Reason: "missing"}
	}
	if env.Time, err = ParseTime(ts); err != nil {
		return Envelope{}, &FieldError{Field: HeaderTime, Reason: fmt.Sprintf("%q is not an RFC 3339 time", truncate(ts)), Err: err}
	}
	env.Key = string(msg.Key)
	env.Payload = msg.Value
	if err := l.Validate(env); err != nil {
		return Envelope{}, err
	}
	return env, nil
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
