package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/examples/demo"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

func TestMain(m *testing.M) { testmain.Run(m, testdb.DropTemplate) }

type doc struct {
	Title       string
	Submissions int
	ScoreSum    float64
}

// The indexer run against PostgreSQL and kfake: lessons are upserted, quiz
// submissions counted, other types ignored, a payload that does not decode
// is parked; after a restart only the new event is counted.
func TestSearchIndexer(t *testing.T) {
	db := testdb.New(t)
	kc := testkafka.New(t)
	const topic = "edupulse.events"
	kc.CreateTopic(t, topic, 3)

	l1, l2, q1, q2 := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	teacher := uuid.New()
	now := time.Now().UTC().Truncate(time.Microsecond)
	lesson := func(id uuid.UUID, title string) demo.LessonPublished {
		return demo.LessonPublished{LessonID: id, TeacherID: teacher, Title: title, PublishedAt: now}
	}
	quiz := func(id uuid.UUID, score float32) demo.QuizSubmitted {
		return demo.QuizSubmitted{QuizID: id, StudentID: uuid.New(), ScoreRaw: score, SubmittedAt: now}
	}
	badQuiz := envelope.Envelope{ID: uuid.Must(uuid.NewV7()).String(), Type: demo.TypeQuizSubmitted, Source: "quiz-service", Time: now,
		Key: q2.String(), ContentType: envelope.ContentTypeJSON, Payload: []byte(`{"quiz_id": 42}`)}
	produceToKafka(t, kc, topic,
		lesson(l1, "Fractions"), lesson(l2, "Decimals"), lesson(l1, "Fractions, revised"),
		quiz(q1, 0.5), quiz(q1, 0.75), quiz(q2, 0.25), quiz(q1, 1),
		demo.BadgeAwarded{BadgeID: uuid.New(), RecipientID: uuid.New(), AwardedAt: now},
		badQuiz,
	)

	cfg := config{DatabaseURL: db.URL, Brokers: kc.Addrs, Group: "search", Topics: []string{topic}}
	stop := start(t, cfg)
	want := map[string]doc{
		"lesson/" + l1.String(): {Title: "Fractions, revised"},
		"lesson/" + l2.String(): {Title: "Decimals"},
		"quiz/" + q1.String():   {Submissions: 3, ScoreSum: 2.25},
		"quiz/" + q2.String():   {Submissions: 1, ScoreSum: 0.25},
	}
	waitFor(t, db, want)
	// The bad quiz follows quiz q2 on its partition: its dead letter may be
	// written just after the documents are complete.
	var dls []dispatch.DeadLetter
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the bad quiz dead-lettered", func() bool {
		var err error
		dls, err = (&dispatch.Admin{Pool: db.Pool}).ListDeadLetters(context.Background(), dispatch.DeadLetterFilter{Group: "search"})
		require.NoError(t, err)
		return len(dls) > 0
	})
	require.Len(t, dls, 1)
	require.Equal(t, badQuiz.ID, *dls[0].EventID)
	require.Contains(t, dls[0].Error, "payload")
	stop()

	// Restarted, it resumes from its offsets: one new submission, counted
	// once, and nothing before it counted again.
	produceToKafka(t, kc, topic, quiz(q1, 0.5))
	stop = start(t, cfg)
	want["quiz/"+q1.String()] = doc{Submissions: 4, ScoreSum: 2.75}
	waitFor(t, db, want)
	stop()
}

// produceToKafka writes events straight to the Kafka topic, as a relay
// would have published them: each an envelope.Envelope as it is, or a demo
// event with its partition key, in the binary mode.
func produceToKafka(t *testing.T, kc *testkafka.Cluster, topic string, events ...any) {
	t.Helper()
	var msgs []kafka.Message
	for _, e := range events {
		env, ok := e.(envelope.Envelope)
		if !ok {
			ev := e.(interface {
				envelope.Event
				PartitionKey() string
			})
			var err error
			env, err = envelope.New("edupulse-api", ev, envelope.WithKey(ev.PartitionKey()))
			require.NoError(t, err)
		}
		m, err := envelope.ToMessage(env)
		require.NoError(t, err)
		msgs = append(msgs, m)
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(kc.Addrs...), Topic: topic, Balancer: &kafka.Hash{}, BatchTimeout: 2 * time.Millisecond,
		RequiredAcks: kafka.RequireAll, Transport: tr} // acknowledged before the test counts on them
	defer w.Close()
	require.NoError(t, w.WriteMessages(context.Background(), msgs...))
}

// start runs the indexer; the returned func cancels it (SIGTERM) and checks
// it returned nil.
func start(t *testing.T, cfg config) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Fatal("indexer did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls search_documents until it holds exactly want.
func waitFor(t *testing.T, db *testdb.DB, want map[string]doc) {
	t.Helper()
	var got map[string]doc
	deadline := time.Now().Add(60 * time.Second)
	for {
		got = map[string]doc{}
		rows, err := db.Pool.Query(context.Background(), `SELECT kind, id, title, submissions, score_sum FROM search_documents`)
		if err == nil { // the table appears once the indexer started
			for rows.Next() {
				var kind string
				var id uuid.UUID
				var d doc
				require.NoError(t, rows.Scan(&kind, &id, &d.Title, &d.Submissions, &d.ScoreSum))
				got[kind+"/"+id.String()] = d
			}
			require.NoError(t, rows.Err())
		}
		if len(got) == len(want) && func() bool {
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
			return true
		}() {
			return
		}
		if time.Now().After(deadline) {
			require.Equal(t, want, got, "search_documents after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
