package envelope_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// LessonPublished is a typed event: it names itself with EventType.
type LessonPublished struct {
	LessonID string `json:"lesson_id"`
	Title    string `json:"title"`
}

// EventType returns the canonical name of the event.
func (LessonPublished) EventType() string { return "lesson.published" }

// BadgeAwarded is another typed event.
type BadgeAwarded struct {
	BadgeID string `json:"badge_id"`
}

// EventType returns the canonical name of the event.
func (BadgeAwarded) EventType() string { return "badge.awarded" }

// New builds an envelope from a typed event and ToMessage maps it to a Kafka
// message in the CloudEvents binary mode. WithID and WithTime fix what New
// would otherwise generate.
func ExampleNew() {
	env, err := envelope.New("lesson-service",
		LessonPublished{LessonID: "l-1", Title: "Fractions"},
		envelope.WithID("01936f3e-7c00-7abc-8def-0123456789ab"),
		envelope.WithTime(time.Date(2026, 11, 25, 6, 30, 0, 0, time.UTC)),
		envelope.WithKey("course-42"),
		envelope.WithMeta("tenant", "acme"),
		envelope.WithMeta("correlationid", "c-123"),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := envelope.ToMessage(env)
	if err != nil {
		fmt.Println(err)
		return
	}
	msg.Topic = "lessons"
	fmt.Printf("topic %s, key %s\n", msg.Topic, msg.Key)
	for _, h := range msg.Headers {
		fmt.Printf("%s: %s\n", h.Key, h.Value)
	}
	fmt.Printf("value %s\n", msg.Value)
	// Output:
	// topic lessons, key course-42
	// ce_specversion: 1.0
	// ce_id: 01936f3e-7c00-7abc-8def-0123456789ab
	// ce_type: lesson.published
	// ce_source: lesson-service
	// ce_time: 2026-11-25T06:30:00Z
	// content-type: application/json
	// ce_correlationid: c-123
	// ce_tenant: acme
	// value {"lesson_id":"l-1","title":"Fractions"}
}

// FromMessage reads a Kafka message back and Decode gets the typed event
// out; asking for the wrong type is an error naming both types.
func ExampleDecode() {
	sent, _ := envelope.New("lesson-service", LessonPublished{LessonID: "l-1", Title: "Fractions"})
	msg, _ := envelope.ToMessage(sent)

	env, err := envelope.FromMessage(msg)
	if err != nil {
		fmt.Println("not an envelope:", err)
		return
	}
	lesson, err := envelope.Decode[LessonPublished](env)
	fmt.Printf("%s %+v %v\n", env.Type, lesson, err)

	_, err = envelope.Decode[BadgeAwarded](env)
	var mismatch *envelope.TypeMismatchError
	fmt.Println(errors.As(err, &mismatch), errors.Is(err, envelope.ErrInvalid))
	fmt.Println(err)
	// Output:
	// lesson.published {LessonID:l-1 Title:Fractions} <nil>
	// true true
	// envelope: event type "lesson.published" cannot decode into envelope_test.BadgeAwarded (which is "badge.awarded")
}

// A malformed message gives a typed error naming the bad header.
func ExampleFromMessage_invalid() {
	sent, _ := envelope.New("lesson-service", LessonPublished{LessonID: "l-1"})
	msg, _ := envelope.ToMessage(sent)
	for i, h := range msg.Headers {
		if h.Key == envelope.HeaderTime {
			msg.Headers[i].Value = []byte("yesterday")
		}
	}
	_, err := envelope.FromMessage(msg)
	var fe *envelope.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field, errors.Is(err, envelope.ErrInvalid))
	}
	// Output:
	// ce_time true
}
