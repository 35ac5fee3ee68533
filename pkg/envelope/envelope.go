package envelope

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/google/uuid"
)

// SpecVersion is the CloudEvents specification version PulseBus writes and
// accepts.
const SpecVersion = "1.0"

// ContentTypeJSON is the content type of payloads built by [New].
const ContentTypeJSON = "application/json"

// Envelope is one domain event with its transport metadata. It maps one to one
// onto a CloudEvent in binary mode: the payload is the Kafka message value, the
// attributes are headers.
type Envelope struct {
	// ID identifies the event within its source: any non-empty string
	// (CloudEvents id), kept byte for byte from producer to handler.
	// PulseBus writes UUIDv7 (time-ordered) ids ([NewID]); a redelivered
	// or republished event keeps its ID, so consumers can drop duplicates
	// by it.
	ID string
	// Type is the event's canonical name, such as "lesson.published".
	Type string
	// Source names the producing service (a CloudEvents URI-reference).
	Source string
	// Subject optionally names the subject of the event within the source
	// (ce_subject).
	Subject string
	// Key is the partition key, usually the aggregate id. Events with the same
	// key land on the same partition, in order. Empty means no key.
	Key string
	// Time is when the event happened; the zero Time means the producer
	// did not say (time is optional in CloudEvents). Envelopes built by
	// [New] carry the current time at microsecond precision, the precision
	// PostgreSQL keeps.
	Time time.Time
	// ContentType is the media type of Payload, such as "application/json".
	ContentType string
	// DataSchema optionally names the schema Payload adheres to, a URI
	// (ce_dataschema).
	DataSchema string
	// Meta holds CloudEvents extension attributes: tenant, correlation id,
	// traceparent and the like. Keys are lower-case ASCII letters and digits,
	// at most 20 characters ([ValidMetaKey]); on the wire each entry is the
	// header "ce_<key>".
	Meta map[string]string
	// Payload is the event data, carried as the Kafka message value.
	Payload []byte
}

// Event is implemented by typed domain events. EventType returns the event's
// canonical name; it must not depend on the receiver's value, because
// [Decode] calls it on the zero value.
type Event interface {
	EventType() string
}

// Option customises an envelope built by [New].
type Option func(*Envelope)

// WithKey sets the partition key.
func WithKey(key string) Option { return func(e *Envelope) { e.Key = key } }

// WithSubject sets the CloudEvents subject.
func WithSubject(subject string) Option { return func(e *Envelope) { e.Subject = subject } }

// WithTime sets the event time instead of the current time. It is truncated
// to microseconds.
func WithTime(t time.Time) Option {
	return func(e *Envelope) { e.Time = t.UTC().Truncate(time.Microsecond) }
}

// WithID sets the event id instead of a fresh UUIDv7. The outbox stores
// ids as UUIDs: [outbox.InsertTx] refuses an id that is not one.
func WithID(id string) Option { return func(e *Envelope) { e.ID = id } }

// WithDataSchema sets the CloudEvents dataschema: the URI of the schema the
// payload adheres to.
func WithDataSchema(uri string) Option { return func(e *Envelope) { e.DataSchema = uri } }

// NewID returns a fresh event id: a UUIDv7 (time-ordered) in its canonical
// lower-case form, as [New] sets it.
func NewID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("envelope: new event id: %w", err)
	}
	return id.String(), nil
}

// WithMeta adds one extension attribute. Later values replace earlier ones.
func WithMeta(key, value string) Option {
	return func(e *Envelope) {
		if e.Meta == nil {
			e.Meta = make(map[string]string)
		}
		e.Meta[key] = value
	}
}

// New builds an envelope for a typed event: a fresh UUIDv7 id, the current
// time, the event's canonical type and its JSON encoding as the payload. The
// result is validated against [DefaultLimits].
func New(source string, event Event, opts ...Option) (Envelope, error) {
	if event == nil || isNilPointer(event) {
		return Envelope{}, &FieldError{Field: "payload", Reason: fmt.Sprintf("event is nil (%T)", event)}
	}
	payload, err := json.Marshal(event)
	if err != nil {
		return Envelope{}, &FieldError{Field: "payload", Reason: "encode " + event.EventType(), Err: err}
	}
	id, err := NewID()
	if err != nil {
		return Envelope{}, err
	}
	env := Envelope{
		ID:          id,
		Type:        event.EventType(),
		Source:      source,
		Time:        time.Now().UTC().Truncate(time.Microsecond),
		ContentType: ContentTypeJSON,
		Payload:     payload,
	}
	for _, opt := range opts {
		opt(&env)
	}
	if err := env.Validate(); err != nil {
		return Envelope{}, err
	}
	return env, nil
}

// Decode unmarshals the payload of env into the typed event T. It fails with
// a [*TypeMismatchError] when env.Type is not T's canonical name, and with a
// [*FieldError] for the payload when the JSON does not decode. T may be a
// struct type or a pointer to one; for a pointer type Decode allocates the
// value.
func Decode[T Event](env Envelope) (T, error) {
	var event T
	if rt := reflect.TypeFor[T](); rt.Kind() == reflect.Pointer {
		// The zero value is a nil pointer, on which EventType may panic.
		event = reflect.New(rt.Elem()).Interface().(T)
	}
	if want := event.EventType(); env.Type != want {
		return event, &TypeMismatchError{Got: env.Type, Want: want, GoType: fmt.Sprintf("%T", event)}
	}
	if env.ContentType != "" && !isJSON(env.ContentType) {
		return event, &FieldError{Field: "content-type", Reason: fmt.Sprintf("cannot decode %q as JSON into %T", env.ContentType, event)}
	}
	if err := json.Unmarshal(env.Payload, &event); err != nil {
		return event, &FieldError{Field: "payload", Reason: fmt.Sprintf("decode %s into %T", env.Type, event), Err: err}
	}
	return event, nil
}

// isNilPointer reports whether event is a typed nil pointer, on which
// EventType may panic.
func isNilPointer(event Event) bool {
	v := reflect.ValueOf(event)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// Validate checks env against [DefaultLimits]. See [Limits.Validate].
func (e Envelope) Validate() error { return DefaultLimits().Validate(e) }
