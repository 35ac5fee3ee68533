package demo

import (
	"time"

	"github.com/google/uuid"
)

// Canonical event type names, as they appear in ce_type.
const (
	TypeLessonPublished        = "lesson.published"
	TypeQuizSubmitted          = "quiz.submitted"
	TypeBadgeAwarded           = "badge.awarded"
	TypePaymentProcessed       = "payment.processed"
	TypeLearningPulseSubmitted = "learning_pulse.submitted"
)

// Types lists every event type of this package, for registering handlers.
var Types = []string{
	TypeLessonPublished,
	TypeQuizSubmitted,
	TypeBadgeAwarded,
	TypePaymentProcessed,
	TypeLearningPulseSubmitted,
}

// LessonPublished says a teacher published a lesson; students can now see it.
type LessonPublished struct {
	// LessonID identifies the lesson; it is the partition key.
	LessonID uuid.UUID `json:"lesson_id"`
	// TeacherID identifies the publishing teacher.
	TeacherID uuid.UUID `json:"teacher_id"`
	// Title is the lesson title as shown to students.
	Title string `json:"title"`
	// PublishedAt is when the lesson became visible.
	PublishedAt time.Time `json:"published_at"`
}

// EventType returns "lesson.published".
func (LessonPublished) EventType() string { return TypeLessonPublished }

// PartitionKey returns the lesson id.
func (e LessonPublished) PartitionKey() string { return e.LessonID.String() }

// QuizSubmitted says a student submitted answers to a quiz and got a raw
// score.
type QuizSubmitted struct {
	// QuizID identifies the quiz; it is the partition key.
	QuizID uuid.UUID `json:"quiz_id"`
	// StudentID identifies the student who submitted.
	StudentID uuid.UUID `json:"student_id"`
	// ScoreRaw is the unscaled score, 0 to 1.
	ScoreRaw float32 `json:"score_raw"`
	// SubmittedAt is when the submission was received (server clock).
	SubmittedAt time.Time `json:"submitted_at"`
}

// EventType returns "quiz.submitted".
func (QuizSubmitted) EventType() string { return TypeQuizSubmitted }

// PartitionKey returns the quiz id.
func (e QuizSubmitted) PartitionKey() string { return e.QuizID.String() }

// BadgeAwarded says a badge was awarded to a learner.
type BadgeAwarded struct {
	// BadgeID identifies the badge.
	BadgeID uuid.UUID `json:"badge_id"`
	// RecipientID identifies the learner; it is the partition key, so a
	// learner's badges arrive in order.
	RecipientID uuid.UUID `json:"recipient_id"`
	// AwardedAt is when the badge was awarded.
	AwardedAt time.Time `json:"awarded_at"`
}

// EventType returns "badge.awarded".
func (BadgeAwarded) EventType() string { return TypeBadgeAwarded }

// PartitionKey returns the recipient id.
func (e BadgeAwarded) PartitionKey() string { return e.RecipientID.String() }

// PaymentProcessed says a payment went through.
type PaymentProcessed struct {
	// PaymentID identifies the payment; consumers use it for idempotency.
	PaymentID uuid.UUID `json:"payment_id"`
	// UserID identifies the paying user; it is the partition key, so a
	// user's payments arrive in order.
	UserID uuid.UUID `json:"user_id"`
	// AmountCents is the amount in the currency's minor unit. Money is never
	// a float.
	AmountCents int64 `json:"amount_cents"`
	// Currency is the ISO 4217 code, such as "EUR". (The original sketch had
	// no currency; an amount without one is ambiguous.)
	Currency string `json:"currency"`
	// ProcessedAt is when the payment was confirmed.
	ProcessedAt time.Time `json:"processed_at"`
}

// EventType returns "payment.processed".
func (PaymentProcessed) EventType() string { return TypePaymentProcessed }

// PartitionKey returns the user id.
func (e PaymentProcessed) PartitionKey() string { return e.UserID.String() }

// LearningPulseSubmitted says a learner posted a learning pulse (a short
// reflection on what they learned).
type LearningPulseSubmitted struct {
	// PulseID identifies the pulse.
	PulseID uuid.UUID `json:"pulse_id"`
	// AuthorID identifies the learner; it is the partition key.
	AuthorID uuid.UUID `json:"author_id"`
	// SubmittedAt is when the submission occurred (server clock).
	SubmittedAt time.Time `json:"submitted_at"`
}

// EventType returns "learning_pulse.submitted".
func (LearningPulseSubmitted) EventType() string { return TypeLearningPulseSubmitted }

// PartitionKey returns the author id.
func (e LearningPulseSubmitted) PartitionKey() string { return e.AuthorID.String() }
