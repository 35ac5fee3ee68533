package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go"
)

// ContentTypeStructured is the media type of a Kafka message in the
// CloudEvents structured mode with the JSON event format: the value is the
// whole event. The binding tells the modes apart by the content-type
// header's "application/cloudevents" prefix.
const ContentTypeStructured = "application/cloudevents+json"

// structuredContentType returns the content-type header of a message in the
// structured mode, and whether it is one.
func structuredContentType(headers []kafka.Header) (string, bool) {
	for _, h := range headers {
		if len(h.Key) == len(HeaderContentType) && strings.EqualFold(h.Key, HeaderContentType) {
			return string(h.Value), isStructuredMediaType(string(h.Value))
		}
	}
	return "", false
}

// isStructuredMediaType reports whether content type ct marks the
// structured mode: it starts with "application/cloudevents", in any case.
func isStructuredMediaType(ct string) bool {
	const prefix = "application/cloudevents"
	return len(ct) >= len(prefix) && strings.EqualFold(ct[:len(prefix)], prefix)
}

// FromStructured decodes a CloudEvent in the structured mode: value is the
// event in the JSON event format, contentType the message's content-type
// header (application/cloudevents+json, possibly with parameters), key the
// Kafka message key. The result is what the binary mode of the same event
// decodes to:
//   - data holding JSON, with a JSON datacontenttype or none, becomes the
//     payload as its JSON text, byte for byte;
//   - data holding a string, with any other datacontenttype, becomes the
//     payload as the string's bytes;
//   - data_base64 becomes the decoded bytes;
//   - extension attributes become Meta entries: strings as they are,
//     numbers as their JSON text, booleans as "true" or "false" (their
//     canonical string forms, as the binary mode carries them); null is an
//     absent attribute.
//
// The same limits and errors apply as in the binary mode; batches
// (application/cloudevents-batch+json) are refused, as the Kafka binding
// does not allow them.
func (l Limits) FromStructured(contentType string, key, value []byte) (Envelope, error) {
	attrs, err := l.decodeStructured(contentType, value)
	if err != nil {
		return Envelope{}, err
	}
	var ev structuredEvent
	for name, raw := range attrs {
		if isJSONNull(raw) {
			continue // an absent attribute
		}
		if err := ev.set(name, raw); err != nil {
			return Envelope{}, err
		}
	}
	if err := ev.finish(); err != nil {
		return Envelope{}, err
	}
	ev.env.Key = string(key)
	if err := l.validate(ev.env, false); err != nil {
		return Envelope{}, err
	}
	return ev.env, nil
}

// decodeStructured checks the content type names the JSON event format and
// decodes value into its attributes, refusing values and attribute counts
// that could not be within l.
func (l Limits) decodeStructured(contentType string, value []byte) (map[string]json.RawMessage, error) {
	format := strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
	if format != ContentTypeStructured {
		return nil, &FieldError{Field: HeaderContentType, Reason: fmt.Sprintf("%q: only the JSON event format (%s) is supported in structured mode", truncate(contentType), ContentTypeStructured)}
	}
	if l.MaxPayloadBytes > 0 && len(value) > 2*l.MaxPayloadBytes+64*1024 {
		// A base64 payload at the limit takes 4/3 of it; anything far
		// above cannot hold a payload within the limit.
		return nil, &LimitError{Field: "value", Size: len(value), Limit: 2*l.MaxPayloadBytes + 64*1024}
	}
	var attrs map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(value))
	if err := dec.Decode(&attrs); err != nil {
		return nil, &FieldError{Field: "value", Reason: "structured mode: not a JSON object", Err: err}
	}
	if dec.More() {
		return nil, &FieldError{Field: "value", Reason: "structured mode: more than one JSON value"}
	}
	if l.MaxHeaders > 0 && len(attrs) > l.MaxHeaders+2 { // + data, datacontenttype's header
		return nil, &LimitError{Field: "attributes", Size: len(attrs), Limit: l.MaxHeaders + 2}
	}
	return attrs, nil
}

// structuredEvent collects the attributes of a structured-mode event,
// attribute by attribute.
type structuredEvent struct {
	env                     Envelope
	spec, ts                string
	data, dataBase64        json.RawMessage
	hasSpec, hasID, hasTime bool
}

// set takes attribute name with its (non-null) JSON value.
func (ev *structuredEvent) set(name string, raw json.RawMessage) error {
	switch name {
	case "specversion":
		ev.hasSpec = true
		return decodeStringAttr(name, raw, &ev.spec)
	case "id":
		ev.hasID = true
		return decodeStringAttr(name, raw, &ev.env.ID)
	case "type":
		return decodeStringAttr(name, raw, &ev.env.Type)
	case "source":
		return decodeStringAttr(name, raw, &ev.env.Source)
	case "subject":
		return decodeStringAttr(name, raw, &ev.env.Subject)
	case "dataschema":
		return decodeStringAttr(name, raw, &ev.env.DataSchema)
	case "datacontenttype":
		return decodeStringAttr(name, raw, &ev.env.ContentType)
	case "time":
		ev.hasTime = true
		return decodeStringAttr(name, raw, &ev.ts)
	case "data":
		ev.data = raw
	case "data_base64":
		ev.dataBase64 = raw
	default:
		return ev.setExtension(name, raw)
	}
	return nil
}

// setExtension stores extension attribute name as a Meta entry, in the
// string form the binary mode carries.
func (ev *structuredEvent) setExtension(name string, raw json.RawMessage) error {
	if !validExtensionName(name) {
		return &FieldError{Field: truncate(name), Reason: metaKeyReason(name, false)}
	}
	v, err := extensionValue(name, raw)
	if err != nil {
		return err
	}
	if ev.env.Meta == nil {
		ev.env.Meta = make(map[string]string)
	}
	ev.env.Meta[name] = v
	return nil
}

// finish checks the required attributes once every attribute is in, parses
// the time and decodes the payload.
func (ev *structuredEvent) finish() error {
	switch {
	case !ev.hasSpec:
		return &FieldError{Field: "specversion", Reason: "missing: not a CloudEvent"}
	case ev.spec != SpecVersion:
		return &FieldError{Field: "specversion", Reason: fmt.Sprintf("unsupported version %q (want %q)", truncate(ev.spec), SpecVersion)}
	case !ev.hasID:
		return &FieldError{Field: "id", Reason: "missing"}
	case ev.data != nil && ev.dataBase64 != nil:
		return &FieldError{Field: "data_base64", Reason: "an event carries data or data_base64, not both"}
	}
	if ev.hasTime {
		var err error
		if ev.env.Time, err = ParseTime(ev.ts); err != nil {
			return &FieldError{Field: "time", Reason: fmt.Sprintf("%q is not an RFC 3339 time", truncate(ev.ts)), Err: err}
		}
	}
	return ev.decodePayload()
}

// decodePayload sets the payload from data_base64 (the decoded bytes) or
// data: JSON text byte for byte when the content type is JSON or absent,
// or the data is not a string; a string's bytes otherwise.
func (ev *structuredEvent) decodePayload() error {
	switch {
	case ev.dataBase64 != nil:
		var encoded string
		if err := decodeStringAttr("data_base64", ev.dataBase64, &encoded); err != nil {
			return err
		}
		payload, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			return &FieldError{Field: "data_base64", Reason: "not base64", Err: err}
		}
		ev.env.Payload = payload
	case ev.data != nil:
		if ev.env.ContentType == "" || isJSON(ev.env.ContentType) || ev.data[0] != '"' {
			ev.env.Payload = bytes.Clone(ev.data)
			return nil
		}
		var s string
		if err := json.Unmarshal(ev.data, &s); err != nil {
			return &FieldError{Field: "data", Reason: "not a JSON string", Err: err}
		}
		ev.env.Payload = []byte(s)
	}
	return nil
}

// decodeStringAttr decodes attribute name, which must be a JSON string.
func decodeStringAttr(name string, raw json.RawMessage, dst *string) error {
	if len(raw) == 0 || raw[0] != '"' {
		return &FieldError{Field: name, Reason: "must be a JSON string"}
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return &FieldError{Field: name, Reason: "not a JSON string", Err: err}
	}
	return nil
}

// extensionValue renders an extension attribute's JSON value in the string
// form the binary mode carries: a string as it is, an integer or other
// number as its JSON text, a boolean as "true" or "false".
func extensionValue(name string, raw json.RawMessage) (string, error) {
	switch raw[0] {
	case '"':
		var s string
		err := decodeStringAttr(name, raw, &s)
		return s, err
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", &FieldError{Field: name, Reason: "not a valid JSON value", Err: err}
		}
		if b {
			return "true", nil
		}
		return "false", nil
	case '{', '[':
		return "", &FieldError{Field: name, Reason: "an extension attribute is a string, number or boolean, not an object or array"}
	default:
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", &FieldError{Field: name, Reason: "not a valid JSON value", Err: err}
		}
		return n.String(), nil
	}
}

func isJSONNull(raw json.RawMessage) bool { return string(raw) == "null" }
