// Package demo holds the EduPulse domain events as typed PulseBus events. It
// is an example of how an application declares its events, not part of the
// PulseBus core.
//
// Each event is a plain struct with JSON field names that other languages
// can rely on, and an EventType method that returns its canonical name
// (a constant, never derived from the receiver). Times are UTC with
// microsecond precision, as PostgreSQL stores them. PartitionKey returns the
// aggregate id, so all events of one aggregate land on one partition in
// order:
//
//	ev := demo.QuizSubmitted{QuizID: quiz, StudentID: student, ScoreRaw: 0.8, SubmittedAt: now}
//	env, err := envelope.New("quiz-service", ev, envelope.WithKey(ev.PartitionKey()))
//	...
//	err = outbox.InsertTx(ctx, tx, "edupulse.quizzes", env)
//
// and on the consumer side:
//
//	quiz, err := envelope.Decode[demo.QuizSubmitted](env)
package demo
