package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/examples/demo"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// load is the EduPulse API stand-in: producers run business transactions
// that change the application's tables and write their events through the
// outbox in the same transaction, paced at a rate of transactions per
// second.
type load struct {
	pool      *pgxpool.Pool
	topic     string
	rate      float64
	producers int
	stats     *stats
	log       *slog.Logger

	// Aggregates that receive many events, so documents get updated and
	// keys repeat on partitions.
	quizzes, users, teachers []uuid.UUID
}

func newLoad(pool *pgxpool.Pool, topic string, rate float64, producers int, st *stats, log *slog.Logger) *load {
	ids := func(n int) []uuid.UUID {
		out := make([]uuid.UUID, n)
		for i := range out {
			out[i] = uuid.New()
		}
		return out
	}
	return &load{pool: pool, topic: topic, rate: rate, producers: producers, stats: st, log: log,
		quizzes: ids(100), users: ids(400), teachers: ids(20)}
}

// run produces until ctx is done. A failed transaction is logged and
// counted nowhere: it rolled back, so its events never existed.
func (l *load) run(ctx context.Context) {
	tokens := make(chan struct{}, l.producers*2)
	var wg sync.WaitGroup
	for i := range l.producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
			for range tokens {
				if err := l.action(ctx, rng); err != nil && ctx.Err() == nil {
					l.log.Warn("business transaction failed (rolled back, no events)", "err", err)
				}
			}
		}()
	}
	l.pace(ctx, tokens)
	close(tokens)
	wg.Wait()
}

// pace hands out l.rate tokens per second, in 10 ms steps, until ctx ends.
func (l *load) pace(ctx context.Context, tokens chan<- struct{}) {
	const step = 10 * time.Millisecond
	t := time.NewTicker(step)
	defer t.Stop()
	start := time.Now()
	var sent float64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := l.rate * now.Sub(start).Seconds()
			for sent+1 <= due {
				select {
				case tokens <- struct{}{}:
					sent++
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

var meta = []envelope.Option{envelope.WithMeta("tenant", "edupulse")}

func (l *load) newEnv(source string, ev interface {
	envelope.Event
	PartitionKey() string
}) (envelope.Envelope, error) {
	opts := append([]envelope.Option{envelope.WithKey(ev.PartitionKey()), envelope.WithMeta("correlationid", uuid.NewString())}, meta...)
	return envelope.New(source, ev, opts...)
}

// action runs one business transaction, picked by weight: quiz
// submissions (35%, a score of 0.9 or more also awards a badge in the same
// transaction), learning pulses (20%, written with the SQL function as a
// service in another language would), payments (20%), lessons (15%) and
// streak badges (10%). The work runs in the caller's context, not the
// load's, so a stop never cuts a transaction in half.
func (l *load) action(ctx context.Context, rng *rand.Rand) error {
	ctx = context.WithoutCancel(ctx)
	now := time.Now().UTC().Truncate(time.Microsecond)
	pick := func(ids []uuid.UUID) uuid.UUID { return ids[rng.IntN(len(ids))] }
	switch r := rng.IntN(100); {
	case r < 35:
		q := demo.QuizSubmitted{QuizID: pick(l.quizzes), StudentID: pick(l.users), ScoreRaw: rng.Float32(), SubmittedAt: now}
		return l.tx(ctx, func(tx pgx.Tx) ([]string, error) {
			if _, err := tx.Exec(ctx, `INSERT INTO edupulse.quiz_submissions (quiz_id, student_id, score_raw, submitted_at)
				VALUES ($1, $2, $3, $4)`, q.QuizID, q.StudentID, q.ScoreRaw, q.SubmittedAt); err != nil {
				return nil, err
			}
			quiz, err := l.newEnv("quiz-service", q)
			if err != nil {
				return nil, err
			}
			if q.ScoreRaw < 0.9 {
				return []string{q.EventType()}, outbox.InsertTx(ctx, tx, l.topic, quiz)
			}
			b := demo.BadgeAwarded{BadgeID: uuid.New(), RecipientID: q.StudentID, AwardedAt: now}
			if _, err := tx.Exec(ctx, `INSERT INTO edupulse.badges (id, recipient_id, awarded_at) VALUES ($1, $2, $3)`,
				b.BadgeID, b.RecipientID, b.AwardedAt); err != nil {
				return nil, err
			}
			badge, err := l.newEnv("quiz-service", b)
			if err != nil {
				return nil, err
			}
			return []string{q.EventType(), b.EventType()}, outbox.InsertTx(ctx, tx, l.topic, quiz, badge)
		})
	case r < 55:
		// What a service in another language does: plain SQL, the event
		// written by pulsebus.publish in the same transaction.
		id, author := uuid.New(), pick(l.users)
		return l.tx(ctx, func(tx pgx.Tx) ([]string, error) {
			if _, err := tx.Exec(ctx, `INSERT INTO edupulse.learning_pulses (id, author_id, body, submitted_at)
				VALUES ($1, $2, 'Today I learned how fractions map to decimals.', $3)`, id, author, now); err != nil {
				return nil, err
			}
			payload, _ := json.Marshal(demo.LearningPulseSubmitted{PulseID: id, AuthorID: author, SubmittedAt: now})
			_, err := tx.Exec(ctx, `SELECT pulsebus.publish($1, $2, $3, $4::jsonb, '{"tenant": "edupulse"}', 'pulse-service')`,
				l.topic, author.String(), demo.TypeLearningPulseSubmitted, payload)
			return []string{demo.TypeLearningPulseSubmitted}, err
		})
	case r < 75:
		p := demo.PaymentProcessed{PaymentID: uuid.New(), UserID: pick(l.users), AmountCents: int64(500 + rng.IntN(20000)), Currency: "EUR", ProcessedAt: now}
		return l.tx(ctx, func(tx pgx.Tx) ([]string, error) {
			if _, err := tx.Exec(ctx, `INSERT INTO edupulse.payments (id, user_id, amount_cents, currency, processed_at)
				VALUES ($1, $2, $3, $4, $5)`, p.PaymentID, p.UserID, p.AmountCents, p.Currency, p.ProcessedAt); err != nil {
				return nil, err
			}
			env, err := l.newEnv("billing-service", p)
			if err != nil {
				return nil, err
			}
			return []string{p.EventType()}, outbox.InsertTx(ctx, tx, l.topic, env)
		})
	case r < 90:
		e := demo.LessonPublished{LessonID: uuid.New(), TeacherID: pick(l.teachers), PublishedAt: now,
			Title: fmt.Sprintf("Fractions and decimals, part %d", 1+rng.IntN(12))}
		return l.tx(ctx, func(tx pgx.Tx) ([]string, error) {
			if _, err := tx.Exec(ctx, `INSERT INTO edupulse.lessons (id, teacher_id, title, published_at) VALUES ($1, $2, $3, $4)`,
				e.LessonID, e.TeacherID, e.Title, e.PublishedAt); err != nil {
				return nil, err
			}
			env, err := l.newEnv("lesson-service", e)
			if err != nil {
				return nil, err
			}
			return []string{e.EventType()}, outbox.InsertTx(ctx, tx, l.topic, env)
		})
	default:
		b := demo.BadgeAwarded{BadgeID: uuid.New(), RecipientID: pick(l.users), AwardedAt: now}
		return l.tx(ctx, func(tx pgx.Tx) ([]string, error) {
			if _, err := tx.Exec(ctx, `INSERT INTO edupulse.badges (id, recipient_id, awarded_at) VALUES ($1, $2, $3)`,
				b.BadgeID, b.RecipientID, b.AwardedAt); err != nil {
				return nil, err
			}
			env, err := l.newEnv("streak-service", b)
			if err != nil {
				return nil, err
			}
			return []string{b.EventType()}, outbox.InsertTx(ctx, tx, l.topic, env)
		})
	}
}

// tx runs fn in a transaction and counts its events once it committed.
func (l *load) tx(ctx context.Context, fn func(pgx.Tx) ([]string, error)) error {
	var types []string
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var err error
		types, err = fn(tx)
		return err
	})
	if err != nil {
		return err
	}
	l.stats.committed(types...)
	return nil
}
