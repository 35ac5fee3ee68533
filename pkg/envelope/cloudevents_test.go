package envelope_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// binaryMessage is a minimal binary-mode CloudEvent with extra headers.
func binaryMessage(extra ...kafka.Header) kafka.Message {
	return kafka.Message{
		Value: []byte(`{"n":1}`),
		Headers: append([]kafka.Header{
			{Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_id", Value: []byte("order-1005/created#1")},
			{Key: "ce_type", Value: []byte("order.created")},
			{Key: "ce_source", Value: []byte("/orders")},
		}, extra...),
	}
}

// Everything CloudEvents 1.0 allows in the binary mode is accepted, and the
// attributes come through unchanged: any non-empty id (not re-rendered),
// no time, a dataschema, extension names longer than 20 characters.
func TestFromMessage_AcceptsEveryValidBinaryEvent(t *testing.T) {
	t.Parallel()
	t.Run("non-UUID id, no time", func(t *testing.T) {
		env, err := envelope.FromMessage(binaryMessage())
		require.NoError(t, err)
		require.Equal(t, "order-1005/created#1", env.ID)
		require.True(t, env.Time.IsZero())
	})
	t.Run("upper-case UUID id kept as sent", func(t *testing.T) {
		msg := binaryMessage()
		msg.Headers[1].Value = []byte("01936F3E-7C00-7ABC-8DEF-0123456789AB")
		env, err := envelope.FromMessage(msg)
		require.NoError(t, err)
		require.Equal(t, "01936F3E-7C00-7ABC-8DEF-0123456789AB", env.ID)
	})
	t.Run("dataschema and a long extension name", func(t *testing.T) {
		env, err := envelope.FromMessage(binaryMessage(
			kafka.Header{Key: "ce_dataschema", Value: []byte("https://schemas.example/order.json")},
			kafka.Header{Key: "ce_averyveryverylongextensionname", Value: []byte("v")},
		))
		require.NoError(t, err)
		require.Equal(t, "https://schemas.example/order.json", env.DataSchema)
		require.Equal(t, map[string]string{"averyveryverylongextensionname": "v"}, env.Meta)
	})
	t.Run("round trip without time, with dataschema", func(t *testing.T) {
		env := envelope.Envelope{ID: "a-1", Type: "t.x", Source: "/s", DataSchema: "urn:schema:1", Payload: []byte("x")}
		msg, err := envelope.ToMessage(env)
		require.NoError(t, err)
		for _, h := range msg.Headers {
			require.NotEqual(t, "ce_time", h.Key, "no time, no header")
		}
		back, err := envelope.FromMessage(msg)
		require.NoError(t, err)
		require.Equal(t, env, back)
	})
}

func structured(value string) kafka.Message {
	return kafka.Message{
		Key:     []byte("order-1005"),
		Value:   []byte(value),
		Headers: []kafka.Header{{Key: "content-type", Value: []byte("application/cloudevents+json; charset=UTF-8")}},
	}
}

// The structured mode decodes to what the binary mode of the same event
// decodes to, and is detected by the content-type prefix.
func TestFromMessage_StructuredMode(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 21, 0, 0, 123456789, time.UTC)
	cases := []struct {
		name  string
		value string
		want  envelope.Envelope
	}{
		{"JSON data, every attribute", `{"specversion":"1.0","id":"A-1","source":"/orders","type":"order.created",
			"subject":"o/1","time":"2026-12-04T22:00:00.123456789+01:00","datacontenttype":"application/json",
			"dataschema":"https://schemas.example/o.json","tenant":"acme","count":42,"ratio":1.5,"flag":true,"gone":null,
			"data":{"b": 2,  "a":[1,2]}}`,
			envelope.Envelope{ID: "A-1", Source: "/orders", Type: "order.created", Subject: "o/1", Time: at,
				ContentType: "application/json", DataSchema: "https://schemas.example/o.json", Key: "order-1005",
				Meta:    map[string]string{"tenant": "acme", "count": "42", "ratio": "1.5", "flag": "true"},
				Payload: []byte(`{"b": 2,  "a":[1,2]}`)}},
		{"JSON data without datacontenttype", `{"specversion":"1.0","id":"1","source":"s","type":"t","data":[1]}`,
			envelope.Envelope{ID: "1", Source: "s", Type: "t", Key: "order-1005", Payload: []byte(`[1]`)}},
		{"text data", `{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"héllo \"x\""}`,
			envelope.Envelope{ID: "1", Source: "s", Type: "t", Key: "order-1005", ContentType: "text/plain", Payload: []byte(`héllo "x"`)}},
		{"binary data", `{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/octet-stream","data_base64":"` +
			base64.StdEncoding.EncodeToString([]byte{0, 1, 0xff}) + `"}`,
			envelope.Envelope{ID: "1", Source: "s", Type: "t", Key: "order-1005", ContentType: "application/octet-stream", Payload: []byte{0, 1, 0xff}}},
		{"no data", `{"specversion":"1.0","id":"1","source":"s","type":"t"}`,
			envelope.Envelope{ID: "1", Source: "s", Type: "t", Key: "order-1005"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, err := envelope.FromMessage(structured(tc.value))
			require.NoError(t, err)
			require.Equal(t, tc.want, env)
		})
	}
}

// Structured events get the same checks and the same kind of error as
// binary ones, naming the attribute.
func TestFromMessage_BadStructuredMessages(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, value, field string }{
		{"not JSON", `{"specversion":`, "value"},
		{"two values", `{"specversion":"1.0","id":"1","source":"s","type":"t"} {}`, "value"},
		{"no specversion", `{"id":"1","source":"s","type":"t"}`, "specversion"},
		{"old specversion", `{"specversion":"0.3","id":"1","source":"s","type":"t"}`, "specversion"},
		{"no id", `{"specversion":"1.0","source":"s","type":"t"}`, "id"},
		{"id a number", `{"specversion":"1.0","id":1,"source":"s","type":"t"}`, "id"},
		{"empty id", `{"specversion":"1.0","id":"","source":"s","type":"t"}`, "ce_id"},
		{"no type", `{"specversion":"1.0","id":"1","source":"s"}`, "ce_type"},
		{"bad time", `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"noon"}`, "time"},
		{"data and data_base64", `{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}`, "data_base64"},
		{"data_base64 not base64", `{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"!!"}`, "data_base64"},
		{"extension an object", `{"specversion":"1.0","id":"1","source":"s","type":"t","tenant":{"a":1}}`, "tenant"},
		{"extension name upper case", `{"specversion":"1.0","id":"1","source":"s","type":"t","Tenant":"a"}`, "Tenant"},
		{"type with NUL", `{"specversion":"1.0","id":"1","source":"s","type":"a\u0000b"}`, "ce_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := envelope.FromMessage(structured(tc.value))
			require.ErrorIs(t, err, envelope.ErrInvalid)
			var fe *envelope.FieldError
			require.ErrorAs(t, err, &fe, err.Error())
			require.Equal(t, tc.field, fe.Field, err.Error())
		})
	}
	batch := structured(`[]`)
	batch.Headers[0].Value = []byte("application/cloudevents-batch+json")
	_, err := envelope.FromMessage(batch)
	require.ErrorContains(t, err, "only the JSON event format")
}
