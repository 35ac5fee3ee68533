package demo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// SchemaSQL creates the demo application's own tables in the schema
// edupulse: the business tables the producers write in the same
// transaction as their events, and the read models the handlers build. It
// is idempotent. (PulseBus's own tables live in the pulsebus schema and come
// from its migrations; an application keeps its tables apart like this.)
const SchemaSQL = `
CREATE SCHEMA IF NOT EXISTS edupulse;
CREATE TABLE IF NOT EXISTS edupulse.lessons (
    id uuid PRIMARY KEY, teacher_id uuid NOT NULL, title text NOT NULL, published_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS edupulse.quiz_submissions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, quiz_id uuid NOT NULL, student_id uuid NOT NULL,
    score_raw real NOT NULL, submitted_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS edupulse.badges (
    id uuid PRIMARY KEY, recipient_id uuid NOT NULL, awarded_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS edupulse.payments (
    id uuid PRIMARY KEY, user_id uuid NOT NULL, amount_cents bigint NOT NULL, currency text NOT NULL,
    processed_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS edupulse.learning_pulses (
    id uuid PRIMARY KEY, author_id uuid NOT NULL, body text NOT NULL, submitted_at timestamptz NOT NULL);

-- Read models built by the handlers.
CREATE TABLE IF NOT EXISTS edupulse.search_documents (
    doc_id     text PRIMARY KEY,
    kind       text NOT NULL,
    title      text NOT NULL,
    event_id   uuid NOT NULL,
    updates    integer NOT NULL DEFAULT 1,
    indexed_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS edupulse.notifications (
    event_id     uuid PRIMARY KEY,
    recipient_id uuid NOT NULL,
    badge_id     uuid NOT NULL,
    sent_at      timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS edupulse.ledger (
    payment_id   uuid PRIMARY KEY,
    user_id      uuid NOT NULL,
    amount_cents bigint NOT NULL,
    currency     text NOT NULL,
    booked_at    timestamptz NOT NULL DEFAULT clock_timestamp());
`

// SearchIndexerTypes are the event types [SearchIndexer] handles.
var SearchIndexerTypes = []string{TypeLessonPublished, TypeQuizSubmitted, TypeLearningPulseSubmitted}

// SearchIndexer is the original sketch's search indexer as a transactional
// handler: it upserts one search document per lesson, quiz and learning
// pulse into edupulse.search_documents, in the transaction that also
// advances its offset, so every event takes effect exactly once (the
// updates column counts the events folded into a document; it never counts
// one twice). Register it with [dispatch.Consumer.HandleTx].
type SearchIndexer struct{}

// HandleTx indexes one event.
func (SearchIndexer) HandleTx(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
	var docID, kind, title string
	switch env.Type {
	case TypeLessonPublished:
		ev, err := envelope.Decode[LessonPublished](env)
		if err != nil {
			return err // an invalid envelope: not retried, dead-lettered
		}
		docID, kind, title = "lesson:"+ev.LessonID.String(), "lesson", ev.Title
	case TypeQuizSubmitted:
		ev, err := envelope.Decode[QuizSubmitted](env)
		if err != nil {
			return err
		}
		docID, kind, title = "quiz:"+ev.QuizID.String(), "quiz", fmt.Sprintf("quiz %s, best score %.2f", ev.QuizID, ev.ScoreRaw)
	case TypeLearningPulseSubmitted:
		ev, err := envelope.Decode[LearningPulseSubmitted](env)
		if err != nil {
			return err
		}
		docID, kind, title = "pulse:"+ev.PulseID.String(), "pulse", "learning pulse by "+ev.AuthorID.String()
	default:
		return dispatch.Permanent(fmt.Errorf("search indexer: unexpected event type %q", env.Type))
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO edupulse.search_documents (doc_id, kind, title, event_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (doc_id) DO UPDATE
		SET title = EXCLUDED.title, event_id = EXCLUDED.event_id,
		    updates = edupulse.search_documents.updates + 1, indexed_at = clock_timestamp()`,
		docID, kind, title, env.ID)
	if err != nil {
		return fmt.Errorf("search indexer: upsert %s: %w", docID, err)
	}
	return nil
}

// BadgeNotifier is a plain (at-least-once) handler standing for a call to
// a notification service: it records the notification keyed by the event
// id, the idempotency key every plain handler gets, so a redelivered event
// never notifies twice. Register it with [dispatch.Consumer.Handle] for
// [TypeBadgeAwarded].
type BadgeNotifier struct {
	// DB is where notifications are recorded.
	// *pgxpool.Pool satisfies it.
	DB interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	}
}

// Handle records one notification.
func (n BadgeNotifier) Handle(ctx context.Context, env envelope.Envelope) error {
	ev, err := envelope.Decode[BadgeAwarded](env)
	if err != nil {
		return err
	}
	if _, err := n.DB.Exec(ctx, `INSERT INTO edupulse.notifications (event_id, recipient_id, badge_id)
		VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING`, env.ID, ev.RecipientID, ev.BadgeID); err != nil {
		return fmt.Errorf("badge notifier: %w", err)
	}
	return nil
}

// PaymentLedger is a batch transactional handler: it books a run of
// payments into edupulse.ledger with one statement per batch, in the
// transaction that advances its offset. Register it with
// [dispatch.Consumer.HandleBatchTx] for [TypePaymentProcessed].
type PaymentLedger struct{}

// HandleBatchTx books envs.
func (PaymentLedger) HandleBatchTx(ctx context.Context, tx pgx.Tx, envs []envelope.Envelope) error {
	rows := make([]json.RawMessage, 0, len(envs))
	for _, env := range envs {
		if _, err := envelope.Decode[PaymentProcessed](env); err != nil {
			return err // the consumer retries the batch one by one and parks this event alone
		}
		rows = append(rows, env.Payload)
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO edupulse.ledger (payment_id, user_id, amount_cents, currency)
		SELECT p.payment_id, p.user_id, p.amount_cents, p.currency
		  FROM jsonb_to_recordset($1::jsonb) AS p(payment_id uuid, user_id uuid, amount_cents bigint, currency text)
		ON CONFLICT (payment_id) DO NOTHING`, jsonArray(rows))
	if err != nil {
		return fmt.Errorf("payment ledger: book %d payments: %w", len(envs), err)
	}
	return nil
}

func jsonArray(items []json.RawMessage) []byte {
	b, _ := json.Marshal(items) // RawMessage values are valid JSON: decoded above
	return b
}
