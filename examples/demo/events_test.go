package demo_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/examples/demo"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

func TestMain(m *testing.M) { testmain.Run(m) }

type keyedEvent interface {
	envelope.Event
	PartitionKey() string
}

var (
	at = time.Date(2026, 11, 25, 6, 30, 0, 123456000, time.UTC)
	id = func(s string) uuid.UUID { return uuid.NewSHA1(uuid.NameSpaceURL, []byte(s)) }
)

// roundTrip sends ev through New, ToMessage, FromMessage and Decode and
// checks it comes back equal, keyed by its aggregate and with its type.
func roundTrip[T keyedEvent](t *testing.T, ev T, wantType string, wantJSONKeys ...string) {
	t.Helper()
	env, err := envelope.New("demo", ev, envelope.WithKey(ev.PartitionKey()))
	require.NoError(t, err)
	require.Equal(t, wantType, env.Type)
	require.Equal(t, ev.PartitionKey(), env.Key)

	var fields map[string]any
	require.NoError(t, json.Unmarshal(env.Payload, &fields))
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	slices.Sort(wantJSONKeys)
	require.Equal(t, wantJSONKeys, keys, "JSON field names are the cross-language contract")

	msg, err := envelope.ToMessage(env)
	require.NoError(t, err)
	back, err := envelope.FromMessage(msg)
	require.NoError(t, err)
	got, err := envelope.Decode[T](back)
	require.NoError(t, err)
	require.Equal(t, ev, got)

	// Every other demo type refuses it.
	others := []func(envelope.Envelope) error{
		func(e envelope.Envelope) error { _, err := envelope.Decode[demo.LessonPublished](e); return err },
		func(e envelope.Envelope) error { _, err := envelope.Decode[demo.QuizSubmitted](e); return err },
		func(e envelope.Envelope) error { _, err := envelope.Decode[demo.BadgeAwarded](e); return err },
		func(e envelope.Envelope) error { _, err := envelope.Decode[demo.PaymentProcessed](e); return err },
		func(e envelope.Envelope) error { _, err := envelope.Decode[demo.LearningPulseSubmitted](e); return err },
	}
	mismatches := 0
	for _, decode := range others {
		var tm *envelope.TypeMismatchError
		if err := decode(back); err != nil {
			require.ErrorAs(t, err, &tm)
			mismatches++
		}
	}
	require.Equal(t, len(others)-1, mismatches, "only its own type decodes it")
}

func TestEvents_RoundTrip(t *testing.T) {
	t.Parallel()
	t.Run("lesson.published", func(t *testing.T) {
		t.Parallel()
		roundTrip(t, demo.LessonPublished{LessonID: id("l"), TeacherID: id("t"), Title: "Fractions", PublishedAt: at},
			demo.TypeLessonPublished, "lesson_id", "teacher_id", "title", "published_at")
	})
	t.Run("quiz.submitted", func(t *testing.T) {
		t.Parallel()
		roundTrip(t, demo.QuizSubmitted{QuizID: id("q"), StudentID: id("s"), ScoreRaw: 0.1, SubmittedAt: at},
			demo.TypeQuizSubmitted, "quiz_id", "student_id", "score_raw", "submitted_at")
	})
	t.Run("badge.awarded", func(t *testing.T) {
		t.Parallel()
		roundTrip(t, demo.BadgeAwarded{BadgeID: id("b"), RecipientID: id("r"), AwardedAt: at},
			demo.TypeBadgeAwarded, "badge_id", "recipient_id", "awarded_at")
	})
	t.Run("payment.processed", func(t *testing.T) {
		t.Parallel()
		roundTrip(t, demo.PaymentProcessed{PaymentID: id("p"), UserID: id("u"), AmountCents: 1999, Currency: "EUR", ProcessedAt: at},
			demo.TypePaymentProcessed, "payment_id", "user_id", "amount_cents", "currency", "processed_at")
	})
	t.Run("learning_pulse.submitted", func(t *testing.T) {
		t.Parallel()
		roundTrip(t, demo.LearningPulseSubmitted{PulseID: id("p"), AuthorID: id("a"), SubmittedAt: at},
			demo.TypeLearningPulseSubmitted, "pulse_id", "author_id", "submitted_at")
	})
}

func TestTypes_ListsEveryEventOnce(t *testing.T) {
	t.Parallel()
	events := []envelope.Event{demo.LessonPublished{}, demo.QuizSubmitted{}, demo.BadgeAwarded{}, demo.PaymentProcessed{}, demo.LearningPulseSubmitted{}}
	var names []string
	for _, e := range events {
		names = append(names, e.EventType())
	}
	require.ElementsMatch(t, demo.Types, names)
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(names))), len(events))
}
