package envelope

import (
	"fmt"
	"mime"
	"net/url"
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

// MaxMetaKeyLen is the longest extension attribute name PulseBus writes, as
// the CloudEvents spec recommends. Decoding accepts longer names, which the
// spec only discourages.
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

// ValidMetaKey reports whether key can name an extension attribute that
// PulseBus writes: 1 to MaxMetaKeyLen lower-case ASCII letters or digits,
// and not one of the CloudEvents core attribute names.
func ValidMetaKey(key string) bool {
	return len(key) <= MaxMetaKeyLen && validExtensionName(key)
}

// validExtensionName reports whether key is a CloudEvents extension
// attribute name of any length: lower-case ASCII letters or digits, not a
// core attribute. Received events may use names longer than MaxMetaKeyLen.
func validExtensionName(key string) bool {
	if key == "" || reservedAttributes[key] {
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

// Validate checks that env is complete and within the limits, as PulseBus
// writes events: an id, a type, a source, a time (if set) whose UTC year has
// four digits, a type/subtype content type, a dataschema (if set) that is an
// absolute URI, UTF-8 strings without NUL bytes, meta keys that are valid
// extension attribute names of at most MaxMetaKeyLen characters, and sizes
// and counts within l.
func (l Limits) Validate(env Envelope) error { return l.validate(env, true) }

// validate is Validate; with producing false it checks a received event as
// liberally as CloudEvents 1.0 allows: extension names of any length and a
// dataschema that is any string. The checks run in a fixed order, so the
// error names the first bad field: the attributes, the key, the meta
// entries, then the header count and the payload size.
func (l Limits) validate(env Envelope, producing bool) error {
	if err := l.checkAttributes(env, producing); err != nil {
		return err
	}
	if err := l.checkKey(env.Key); err != nil {
		return err
	}
	if err := l.checkMeta(env.Meta, producing); err != nil {
		return err
	}
	if n := headerCount(env); l.MaxHeaders > 0 && n > l.MaxHeaders {
		return &LimitError{Field: "headers", Size: n, Limit: l.MaxHeaders}
	}
	if l.MaxPayloadBytes > 0 && len(env.Payload) > l.MaxPayloadBytes {
		return &LimitError{Field: "payload", Size: len(env.Payload), Limit: l.MaxPayloadBytes}
	}
	return nil
}

// checkAttributes checks the CloudEvents context attributes that have their
// own Envelope field.
func (l Limits) checkAttributes(env Envelope, producing bool) error {
	if err := l.checkText(env.ID, true); err != nil {
		return err.named("ce_id")
	}
	if err := l.checkText(env.Type, true); err != nil {
		return err.named("ce_type")
	}
	if err := l.checkText(env.Source, true); err != nil {
		return err.named("ce_source")
	}
	if err := l.checkText(env.Subject, false); err != nil {
		return err.named("ce_subject")
	}
	if y := env.Time.UTC().Year(); !env.Time.IsZero() && (y < 1 || y > 9999) {
		// RFC 3339 has four-digit years; outside them ce_time could not be
		// written or read back.
		return &FieldError{Field: "ce_time", Reason: fmt.Sprintf("year %d in UTC is outside 0001-9999", y)}
	}
	if err := l.checkContentType(env.ContentType, producing); err != nil {
		return err
	}
	return l.checkDataSchema(env.DataSchema, producing)
}

// checkContentType checks content type ct, if set: a type/subtype media
// type, and (producing) not one that marks the structured mode.
func (l Limits) checkContentType(ct string, producing bool) error {
	if ct == "" {
		return nil
	}
	if err := l.checkText(ct, true); err != nil {
		return err.named("content-type")
	}
	if err := checkMediaType(ct); err != nil {
		return err
	}
	if producing && isStructuredMediaType(ct) {
		// A binary-mode message with this content type would read as the
		// structured mode.
		return &FieldError{Field: "content-type", Reason: fmt.Sprintf("%q is reserved for the CloudEvents structured mode", truncate(ct))}
	}
	return nil
}

// checkDataSchema checks dataschema ds, if set: (producing) an absolute URI.
func (l Limits) checkDataSchema(ds string, producing bool) error {
	if ds == "" {
		return nil
	}
	if err := l.checkText(ds, false); err != nil {
		return err.named("ce_dataschema")
	}
	if u, err := url.Parse(ds); producing && (err != nil || !u.IsAbs()) {
		return &FieldError{Field: "ce_dataschema", Reason: fmt.Sprintf("%q is not an absolute URI", truncate(ds))}
	}
	return nil
}

// checkKey checks the partition key: UTF-8 without NUL bytes, within
// MaxKeyBytes.
func (l Limits) checkKey(key string) error {
	if !utf8.ValidString(key) {
		return &FieldError{Field: "key", Reason: "not valid UTF-8"}
	}
	if strings.IndexByte(key, 0) >= 0 {
		return &FieldError{Field: "key", Reason: "contains a NUL byte"}
	}
	if l.MaxKeyBytes > 0 && len(key) > l.MaxKeyBytes {
		return &LimitError{Field: "key", Size: len(key), Limit: l.MaxKeyBytes}
	}
	return nil
}

// checkMeta checks the extension attributes: valid names (at most
// MaxMetaKeyLen characters when producing) and values as checkText wants.
func (l Limits) checkMeta(meta map[string]string, producing bool) error {
	for k, v := range meta {
		if producing && !ValidMetaKey(k) || !validExtensionName(k) {
			return &FieldError{Field: "meta." + truncate(k), Reason: metaKeyReason(k, producing)}
		}
		if err := l.checkText(v, false); err != nil {
			// The key is fine: say it is the value that is not.
			if reason, ok := valueReasons[err.reason]; ok {
				err.reason = reason
			}
			return err.named("meta." + k)
		}
	}
	return nil
}

// valueReasons words checkText's reasons for a meta value, so that the
// error names the value and not the key: "meta.tenant: the value contains a
// NUL byte".
var valueReasons = map[string]string{
	"not valid UTF-8":     "the value is not valid UTF-8",
	"contains a NUL byte": "the value contains a NUL byte",
}

// metaKeyReason says which rule extension attribute name k breaks.
func metaKeyReason(k string, producing bool) string {
	switch {
	case k == "":
		return "an extension attribute name cannot be empty"
	case reservedAttributes[k]:
		return fmt.Sprintf("%q is a core CloudEvents attribute, not an extension", k)
	case validExtensionName(k) && producing:
		return fmt.Sprintf("%d characters: PulseBus writes extension names of at most %d", len(k), MaxMetaKeyLen)
	default:
		return "extension attribute names are lower-case ASCII letters and digits only"
	}
}

// textError is what checkText found wrong with a value, before the caller
// names the field: the name is built only when there is an error, which
// keeps Validate free of allocations on the hot path.
type textError struct {
	reason string
	size   int // over the limit when > 0
	limit  int
}

func (e *textError) named(field string) error {
	if e.size > 0 {
		return &LimitError{Field: field, Size: e.size, Limit: e.limit}
	}
	return &FieldError{Field: field, Reason: e.reason}
}

func (l Limits) checkText(v string, required bool) *textError {
	if required && v == "" {
		return &textError{reason: "missing"}
	}
	if !utf8.ValidString(v) {
		return &textError{reason: "not valid UTF-8"}
	}
	if strings.IndexByte(v, 0) >= 0 {
		return &textError{reason: "contains a NUL byte"}
	}
	if l.MaxHeaderValueBytes > 0 && len(v) > l.MaxHeaderValueBytes {
		return &textError{size: len(v), limit: l.MaxHeaderValueBytes}
	}
	return nil
}

// checkMediaType accepts a type/subtype media type with optional
// parameters. The common case, a bare type/subtype made of token
// characters, is checked without mime.ParseMediaType's allocations.
func checkMediaType(ct string) error {
	if isBareMediaType(ct) {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return &FieldError{Field: "content-type", Reason: fmt.Sprintf("%q is not a media type", ct), Err: err}
	}
	if typ, sub, ok := strings.Cut(mt, "/"); !ok || typ == "" || sub == "" {
		// mime.ParseMediaType accepts a bare token such as "json".
		return &FieldError{Field: "content-type", Reason: fmt.Sprintf("%q is not a type/subtype media type", ct)}
	}
	return nil
}

// isBareMediaType reports whether s is token "/" token with no parameters
// (RFC 2045 tokens: printable ASCII except space and tspecials).
func isBareMediaType(s string) bool {
	slash := strings.IndexByte(s, '/')
	if slash <= 0 || slash == len(s)-1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i != slash && !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}

// headerCount is the number of Kafka headers env maps to.
func headerCount(env Envelope) int {
	n := 4 + len(env.Meta) // specversion, id, type, source
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
	return n
}

func isJSON(contentType string) bool {
	if isBareMediaType(contentType) {
		mt := strings.ToLower(contentType)
		return mt == "application/json" || strings.HasSuffix(mt, "+json")
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
