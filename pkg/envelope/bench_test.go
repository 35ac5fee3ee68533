package envelope_test

import (
	"testing"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// The envelope mapping is on the relay's and the consumer's hot path: one
// ToMessage per published event, one FromMessage per handled one.
func BenchmarkValidate(b *testing.B) {
	env := fullEnvelope(b)
	l := envelope.DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Validate(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkToMessage(b *testing.B) {
	env := fullEnvelope(b)
	l := envelope.DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.ToMessage(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromMessage(b *testing.B) {
	msg := validMessage(b)
	l := envelope.DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.FromMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
}
