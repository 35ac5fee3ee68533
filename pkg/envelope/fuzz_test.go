package envelope_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// encodeMessage packs a Kafka message into the fuzz input format read by
// decodeMessage: a sequence of chunks, each a big-endian uint16 length and
// that many bytes: the key, the value, then header name and value pairs.
func encodeMessage(msg kafka.Message) []byte {
	var b []byte
	chunk := func(p []byte) {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	chunk(msg.Key)
	chunk(msg.Value)
	for _, h := range msg.Headers {
		chunk([]byte(h.Key))
		chunk(h.Value)
	}
	return b
}

// decodeMessage builds a Kafka message from arbitrary bytes (see
// encodeMessage). A length running past the end takes what is left, so every
// input yields a message.
func decodeMessage(b []byte) kafka.Message {
	next := func() ([]byte, bool) {
		if len(b) < 2 {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		n = min(n, len(b))
		p := b[:n:n]
		b = b[n:]
		return p, true
	}
	var msg kafka.Message
	msg.Key, _ = next()
	msg.Value, _ = next()
	for {
		name, ok := next()
		if !ok {
			return msg
		}
		value, _ := next()
		msg.Headers = append(msg.Headers, kafka.Header{Key: string(name), Value: value})
	}
}

// fuzzLimits are tried on every input: the defaults, tight limits so the
// fuzzer reaches every limit check with small inputs, and no limits.
var fuzzLimits = []envelope.Limits{
	envelope.DefaultLimits(),
	{MaxPayloadBytes: 64, MaxHeaders: 9, MaxHeaderValueBytes: 40, MaxKeyBytes: 8},
	{},
}

// FuzzFromMessage checks that FromMessage never panics in either mode, that
// every error matches ErrInvalid, and that a decoded envelope that PulseBus
// could write (received events may break rules only producers keep: long
// extension names, a relative dataschema) survives ToMessage and
// FromMessage unchanged.
func FuzzFromMessage(f *testing.F) {
	valid := validMessage(f)
	f.Add(encodeMessage(valid))
	minimal, err := envelope.ToMessage(envelope.Envelope{ID: fixedID, Type: "t", Source: "s", Time: fixedTime})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeMessage(minimal))
	f.Add([]byte{})
	broken := []func(*kafka.Message){
		withoutHeader("ce_id"),
		withHeader("ce_id", []byte("not-a-uuid")),
		withHeader("ce_id", []byte("urn:uuid:01936f3e-7c00-7abc-8def-0123456789ab")),
		withHeader("ce_time", []byte("2026-11-25T06:30:00+14:00")),
		withHeader("ce_time", []byte("9999-12-31T23:59:59.999999999-23:59")),
		withHeader("ce_time", []byte("yesterday")),
		withHeader("ce_specversion", []byte("0.3")),
		withHeader("ce_type", []byte{0xff}),
		withHeader("content-type", []byte("application/json; charset=utf-8")),
		withHeader("content-type", []byte("json")),
		appendHeader("CE_ID", []byte(fixedID)),
		appendHeader("ce_Tenant2", []byte("x")),
		appendHeader("ce_bad-name", []byte("x")),
		appendHeader("ce_data", []byte("x")),
		appendHeader("x-foreign", []byte{0xff}),
		func(m *kafka.Message) { m.Key = []byte{0xff} },
		func(m *kafka.Message) { m.Key = nil; m.Value = nil },
	}
	for _, mutate := range broken {
		msg := validMessage(f)
		mutate(&msg)
		f.Add(encodeMessage(msg))
	}
	for _, value := range []string{
		`{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2026-12-04T21:00:00Z","data":{"a":1},"x":1,"y":true,"z":null}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"hi"}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"AAE="}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/cloudevents+json","data":{}}`,
		`{"specversion":"1.0"`,
	} {
		f.Add(encodeMessage(kafka.Message{Value: []byte(value), Headers: []kafka.Header{{Key: "content-type", Value: []byte(envelope.ContentTypeStructured)}}}))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		msg := decodeMessage(data)
		for _, limits := range fuzzLimits {
			env, err := limits.FromMessage(msg)
			if err != nil {
				if !errors.Is(err, envelope.ErrInvalid) {
					t.Fatalf("limits %+v: error %v (%T) does not match ErrInvalid", limits, err, err)
				}
				if !reflect.DeepEqual(env, envelope.Envelope{}) {
					t.Fatalf("limits %+v: error %v with a non-zero envelope %+v", limits, err, env)
				}
				continue
			}
			again, err := limits.ToMessage(env)
			var fe *envelope.FieldError
			if errors.As(err, &fe) && (strings.HasPrefix(fe.Field, "meta.") || fe.Field == "ce_dataschema" || fe.Field == "content-type") {
				continue // accepted from others, not written by PulseBus
			}
			if err != nil {
				t.Fatalf("limits %+v: decoded envelope %+v does not encode: %v", limits, env, err)
			}
			back, err := limits.FromMessage(again)
			if err != nil {
				t.Fatalf("limits %+v: re-encoded message %+v does not decode: %v", limits, again, err)
			}
			if !reflect.DeepEqual(env, back) {
				t.Fatalf("limits %+v: round trip changed the envelope\n got  %#v\n want %#v", limits, back, env)
			}
		}
	})
}

func TestDecodeMessage_InvertsEncodeMessage(t *testing.T) {
	t.Parallel()
	msg := validMessage(t)
	got := decodeMessage(encodeMessage(msg))
	if !reflect.DeepEqual(got.Headers, msg.Headers) || string(got.Key) != string(msg.Key) || string(got.Value) != string(msg.Value) {
		t.Fatalf("decodeMessage(encodeMessage(m)) = %+v, want %+v", got, msg)
	}
}
