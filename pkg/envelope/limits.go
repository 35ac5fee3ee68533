package envelope

import (
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"
)

// Default limits. They sit below Kafka's default max.message.bytes (1 MiB) so
// an envelope that passes validation is not refused by a default broker.
const (
	DefaultMaxPayloadBytes     = 900 * 1024
	DefaultMaxHeaders          = 32
	DefaultMaxHeaderValueBytes = 4096
	DefaultMaxKeyBytes         = 1024
)

// MaxMetaKeyLen is the longest extension attribute name accepted, as the
// CloudEvents spec recommends.
const MaxMetaKeyLen = 20

// Limits bounds the size of envelopes, on validation and on decoding. A zero
// field means no limit.
type Limits struct {
	// MaxPayloadBytes bounds the payload. Defaults to DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// MaxHeaders bounds the number of Kafka headers, the CloudEvents
	// attributes included. Defaults to DefaultMaxHeaders.
	MaxHeaders int
	// MaxHeaderValueBytes bounds each header value and each attribute.
	// Defaults to DefaultMaxHeaderValueBytes.
	MaxHeaderValueBytes int
	// MaxKeyBytes bounds the partition key. Defaults to DefaultMaxKeyBytes.
	MaxKeyBytes int
}

// DefaultLimits returns the limits used by [Envelope.Validate], [New],
// [ToMessage] and [FromMessage].
func DefaultLimits() Limits {
	return Limits{
		MaxPayloadBytes:     DefaultMaxPayloadBytes,
		MaxHeaders:          DefaultMaxHeaders,
		MaxHeaderValueBytes: DefaultMaxHeaderValueBytes,
		MaxKeyBytes:         DefaultMaxKeyBytes,
	}
}

// reservedAttributes are CloudEvents context attributes that have their own
// Envelope field and so cannot be extension attributes.
var reservedAttributes = map[string]bool{
	"specversion": true, "id": true, "type": true, "source": true, "subject": true,
	"time": true, "datacontenttype": true, "dataschema": true, "data": true,
}

// ValidMetaKey reports whether key can name an extension attribute: 1 to
// MaxMetaKeyLen lower-case ASCII letters or digits, and not one of the
// CloudEvents core attribute names.
func ValidMetaKey(key string) bool {
	if key == "" || len(key) > MaxMetaKeyLen || reservedAttributes[key] {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Validate checks that env is complete and within the limits: a non-nil id,
// a type, a source, a time whose UTC year has four digits, a type/subtype
// content type, UTF-8 strings without NUL bytes, meta keys that are valid
// extension attribute names, and sizes and counts within l.
func (l Limits) Validate(env Envelope) error {
	if env.ID == [16]byte{} {
		return &FieldError{Field: "ce_id", Reason: "missing"}
	}
	if err := l.checkText("ce_type", env.Type, true); err != nil {
		return err
	}
	if err := l.checkText("ce_source", env.Source, true); err != nil {
		return err
	}
	if err := l.checkText("ce_subject", env.Subject, false); err != nil {
		return err
	}
	if env.Time.IsZero() {
		return &FieldError{Field: "ce_time", Reason: "missing"}
	}
	if y := env.Time.UTC().Year(); y < 1 || y > 9999 {
		// RFC 3339 has four-digit years; outside them ce_time could not be
		// written or read back.
		return &FieldError{Field: "ce_time", Reason: fmt.Sprintf("year %d in UTC is outside 0001-9999", y)}
	}
	if env.ContentType != "" {
		if err := l.checkText("content-type", env.ContentType, true); err != nil {
			return err
		}
		mt, _, err := mime.ParseMediaType(env.ContentType)
		if err != nil {
			return &FieldError{Field: "content-type", Reason: fmt.Sprintf("%q is not a media type", env.ContentType), Err: err}
		}
		if typ, sub, ok := strings.Cut(mt, "/"); !ok || typ == "" || sub == "" {
			// mime.ParseMediaType accepts a bare token such as "json".
			return &FieldError{Field: "content-type", Reason: fmt.Sprintf("%q is not a type/subtype media type", env.ContentType)}
		}
	}
	if !utf8.ValidString(env.Key) {
		return &FieldError{Field: "key", Reason: "not valid UTF-8"}
	}
	if strings.IndexByte(env.Key, 0) >= 0 {
		return &FieldError{Field: "key", Reason: "contains a NUL byte"}
	}
	if l.MaxKeyBytes > 0 && len(env.Key) > l.MaxKeyBytes {
		return &LimitError{Field: "key", Size: len(env.Key), Limit: l.MaxKeyBytes}
	}
	for k, v := range env.Meta {
		if !ValidMetaKey(k) {
			return &FieldError{Field: "meta." + k, Reason: "extension attribute names are 1-20 lower-case letters or digits and not a core attribute"}
		}
		if err := l.checkText("meta."+k, v, false); err != nil {
			return err
		}
	}
	if n := headerCount(env); l.MaxHeaders > 0 && n > l.MaxHeaders {
		return &LimitError{Field: "headers", Size: n, Limit: l.MaxHeaders}
	}
	if l.MaxPayloadBytes > 0 && len(env.Payload) > l.MaxPayloadBytes {
		return &LimitError{Field: "payload", Size: len(env.Payload), Limit: l.MaxPayloadBytes}
	}
	return nil
}

func (l Limits) checkText(field, v string, required bool) error {
	if required && v == "" {
		return &FieldError{Field: field, Reason: "missing"}
	}
	if !utf8.ValidString(v) {
		return &FieldError{Field: field, Reason: "not valid UTF-8"}
	}
	if strings.IndexByte(v, 0) >= 0 {
		return &FieldError{Field: field, Reason: "contains a NUL byte"}
	}
	if l.MaxHeaderValueBytes > 0 && len(v) > l.MaxHeaderValueBytes {
		return &LimitError{Field: field, Size: len(v), Limit: l.MaxHeaderValueBytes}
	}
	return nil
}

// headerCount is the number of Kafka headers env maps to.
func headerCount(env Envelope) int {
	n := 5 + len(env.Meta) // specversion, id, type, source, time
	if env.Subject != "" {
		n++
	}
	if env.ContentType != "" {
		n++
	}
	return n
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
