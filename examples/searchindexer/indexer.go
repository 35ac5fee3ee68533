package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/edupulse/pulsebus/examples/demo"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// Types are the event types the indexer wants.
var Types = []string{demo.TypeLessonPublished, demo.TypeQuizSubmitted}

// tableSQL creates the indexer's own table. It belongs to this service, not
// to PulseBus (whose tables live in the pulsebus schema), so the service
// creates it itself.
const tableSQL = `
CREATE TABLE IF NOT EXISTS search_documents (
    kind        text             NOT NULL,  -- 'lesson' or 'quiz'
    id          uuid             NOT NULL,
    title       text             NOT NULL DEFAULT '',
    teacher_id  uuid,
    submissions integer          NOT NULL DEFAULT 0,
    score_sum   double precision NOT NULL DEFAULT 0,
    updated_at  timestamptz      NOT NULL,
    PRIMARY KEY (kind, id)
)`

// Indexer is the original sketch's search indexer as a transactional
// handler. It writes through the transaction the consumer gives it, the
// one that also advances its offset: the upsert and the progress commit
// together, so each event takes effect exactly once. That is what keeps
// the quiz counters right when Kafka delivers an event again after a crash
// or a rebalance: a plain handler would count it twice.
type Indexer struct{}

// HandleTx indexes one event. A payload that does not decode is an
// envelope.ErrInvalid error, which the consumer does not retry: it parks
// the event in the dead letters. Any other error (a database error) is
// retried with back-off.
func (Indexer) HandleTx(ctx context.Context, tx pgx.Tx, env envelope.Envelope) error {
	switch env.Type {
	case demo.TypeLessonPublished:
		ev, err := envelope.Decode[demo.LessonPublished](env)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO search_documents (kind, id, title, teacher_id, updated_at)
			VALUES ('lesson', $1, $2, $3, $4)
			ON CONFLICT (kind, id) DO UPDATE
			SET title = EXCLUDED.title, teacher_id = EXCLUDED.teacher_id, updated_at = EXCLUDED.updated_at`,
			ev.LessonID, ev.Title, ev.TeacherID, ev.PublishedAt)
		return err
	case demo.TypeQuizSubmitted:
		ev, err := envelope.Decode[demo.QuizSubmitted](env)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO search_documents (kind, id, submissions, score_sum, updated_at)
			VALUES ('quiz', $1, 1, $2, $3)
			ON CONFLICT (kind, id) DO UPDATE
			SET submissions = search_documents.submissions + 1,
			    score_sum   = search_documents.score_sum + EXCLUDED.score_sum,
			    updated_at  = greatest(search_documents.updated_at, EXCLUDED.updated_at)`,
			ev.QuizID, ev.ScoreRaw, ev.SubmittedAt)
		return err
	default:
		// Registered for Types only; no retry would change this.
		return dispatch.Permanent(fmt.Errorf("search indexer: unexpected event type %q", env.Type))
	}
}
