package envelope

import (
	"errors"
	"fmt"
)

// ErrInvalid is matched by every validation and decoding error of this
// package: errors.Is(err, ErrInvalid) tells a malformed event (never worth a
// retry) from any other failure.
var ErrInvalid = errors.New("invalid envelope")

// FieldError reports one bad field of an envelope or Kafka message. Field
// names the CloudEvents attribute or header ("ce_id", "ce_time", "payload",
// "key", "meta.tenant", ...).
type FieldError struct {
	Field  string
	Reason string
	Err    error
}

func (e *FieldError) Error() string {
	msg := fmt.Sprintf("envelope: %s: %s", e.Field, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying cause, if any.
func (e *FieldError) Unwrap() error { return e.Err }

// Is reports ErrInvalid as a match.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// LimitError reports a field over its configured size or count limit.
type LimitError struct {
	Field string
	Size  int
	Limit int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("envelope: %s: size %d exceeds limit %d", e.Field, e.Size, e.Limit)
}

// Is reports ErrInvalid as a match.
func (e *LimitError) Is(target error) bool { return target == ErrInvalid }

// TypeMismatchError is returned by [Decode] when the envelope carries another
// event type than the Go type asked for.
type TypeMismatchError struct {
	Got    string // the envelope's type
	Want   string // the Go type's canonical name
	GoType string // the Go type, as %T prints it
}

func (e *TypeMismatchError) Error() string {
	return fmt.Sprintf("envelope: event type %q cannot decode into %s (which is %q)", e.Got, e.GoType, e.Want)
}

// Is reports ErrInvalid as a match.
func (e *TypeMismatchError) Is(target error) bool { return target == ErrInvalid }
