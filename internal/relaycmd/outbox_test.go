package relaycmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/relaycmd"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

func outboxIDs(t *testing.T, db *testdb.DB, topic string) []int64 {
	t.Helper()
	return column[int64](t, db, `SELECT id FROM pulsebus.outbox WHERE topic = $1 ORDER BY id`, topic)
}

const timestamp = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`

func TestOutbox_List(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	out, _, err := run(t, "outbox", "list", "--database-url", db.URL)
	require.NoError(t, err)
	require.Equal(t, "no outbox rows\n", out)

	lessons := insertKeyed(t, db, "lessons", "lesson-1", "")
	grades := insertKeyed(t, db, "no.such.topic", "g\tx")
	exec(t, db, `UPDATE pulsebus.outbox SET attempts = 7, last_error = $1 WHERE topic = 'no.such.topic'`, longError)

	out, _, err = run(t, "outbox", "list", "--database-url", db.URL)
	require.NoError(t, err)
	t.Logf("relay outbox list:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 4, out)
	require.Regexp(t, `^ID +EVENT_ID +TOPIC +KEY +TYPE +ATTEMPTS +CREATED_AT +LAST_ERROR$`, lines[0])
	require.Regexp(t, `^1 +`+lessons[0].ID+` +lessons +lesson-1 +test\.status +0 +`+timestamp+` +-$`, lines[1])
	require.Regexp(t, `^2 +`+lessons[1].ID+` +lessons +- +test\.status +0 +`+timestamp+` +-$`, lines[2])
	require.Regexp(t, `^3 +`+grades[0].ID+` +no\.such\.topic +g x +test\.status +7 +`+timestamp+` +`+
		regexp.QuoteMeta(strings.ReplaceAll(longError, "\n", " "))+`$`, lines[3], "the whole last error, on one line")

	out, _, err = run(t, "outbox", "list", "--database-url", db.URL, "--topic", "lessons", "--limit", "1")
	require.NoError(t, err)
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 3, out)
	require.Contains(t, lines[1], lessons[0].ID)
	require.Equal(t, "(first 1 of 2 shown; raise --limit for more)", lines[2])

	out, _, err = run(t, "outbox", "list", "--database-url", db.URL, "--topic", "media")
	require.NoError(t, err)
	require.Equal(t, "no outbox rows for topic media\n", out)

	out, stderr, err := run(t, "outbox", "list", "--database-url", db.URL, "--json", "--topic", "no.such.topic")
	require.NoError(t, err)
	require.Empty(t, stderr)
	var got []relaycmd.OutboxRow
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got, 1)
	require.Equal(t, relaycmd.OutboxRow{ID: 3, EventID: uuid.MustParse(grades[0].ID), Topic: "no.such.topic", Key: "g\tx", Type: "test.status",
		Source: "parked-test", CreatedAt: got[0].CreatedAt, Attempts: 7, LastError: longError, PayloadBytes: len(grades[0].Payload)}, got[0])
	require.WithinDuration(t, time.Now(), got[0].CreatedAt, time.Minute)
}

func TestOutbox_Park(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	stuck := insertKeyed(t, db, "no.such.topic", "a", "b")
	insertKeyed(t, db, "lessons", "c")
	exec(t, db, `UPDATE pulsebus.outbox SET attempts = 4, last_error = 'unknown topic' WHERE topic = 'no.such.topic'`)
	ids := outboxIDs(t, db, "no.such.topic")

	out, _, err := run(t, "outbox", "park", "--database-url", db.URL, "--id", fmt.Sprint(ids[0]), "--reason", "topic retired")
	require.NoError(t, err)
	t.Logf("relay outbox park:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 3, out)
	require.Equal(t, "parked 1 row into pulsebus.outbox_parked (relay parked requeue puts them back):", lines[0])
	require.Regexp(t, `^ID +EVENT_ID +TOPIC +KEY +TYPE +ATTEMPTS +PARKED_AT +ERROR$`, lines[1])
	require.Regexp(t, fmt.Sprintf(`^%d +%s +no\.such\.topic +a +test\.status +4 +%s +parked by an operator: topic retired$`,
		ids[0], stuck[0].ID, timestamp), lines[2])
	require.Equal(t, []int64{ids[1]}, outboxIDs(t, db, "no.such.topic"))
	require.Equal(t, []int64{ids[0]}, parkedIDs(t, db, "no.such.topic"), "parked with its outbox id")

	// The same id again: gone from the outbox, an error (exit 1).
	_, _, err = run(t, "outbox", "park", "--database-url", db.URL, "--id", fmt.Sprint(ids[0]), "--reason", "again")
	require.ErrorContains(t, err, fmt.Sprintf("no outbox row with id %d", ids[0]))
	require.Equal(t, 1, relaycmd.ExitCode(err))

	out, _, err = run(t, "outbox", "park", "--database-url", db.URL, "--topic", "no.such.topic", "--reason", "topic retired")
	require.NoError(t, err)
	require.Regexp(t, `^parked 1 row into pulsebus.outbox_parked \(relay parked requeue puts them back\):\n.*\n`+
		fmt.Sprint(ids[1])+` .* parked by an operator: topic retired\n$`, out)
	require.Empty(t, outboxIDs(t, db, "no.such.topic"))
	require.Equal(t, []string{"c"}, outboxKeys(t, db, "lessons"), "other topics untouched")

	out, _, err = run(t, "outbox", "park", "--database-url", db.URL, "--topic", "no.such.topic", "--reason", "x")
	require.NoError(t, err)
	require.Equal(t, "no outbox rows for topic no.such.topic: nothing to do\n", out)

	// Parked rows go back with relay parked requeue, in their order.
	out, _, err = run(t, "parked", "requeue", "--database-url", db.URL, "--topic", "no.such.topic")
	require.NoError(t, err)
	require.Contains(t, out, "requeued 2 rows")
	require.Equal(t, []string{"a", "b"}, outboxKeys(t, db, "no.such.topic"))
}

func TestOutbox_Delete(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	stuck := insertKeyed(t, db, "no.such.topic", "a", "b")
	insertKeyed(t, db, "lessons", "c")
	ids := outboxIDs(t, db, "no.such.topic")

	out, _, err := run(t, "outbox", "delete", "--database-url", db.URL, "--id", fmt.Sprint(ids[1]))
	require.NoError(t, err)
	t.Logf("relay outbox delete:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 3, out)
	require.Equal(t, "deleted 1 row from pulsebus.outbox (never to be published):", lines[0])
	require.Regexp(t, `^ID +EVENT_ID +TOPIC +KEY +TYPE +ATTEMPTS +CREATED_AT +LAST_ERROR$`, lines[1])
	require.Regexp(t, fmt.Sprintf(`^%d +%s +no\.such\.topic +b +test\.status +0 +%s +-$`, ids[1], stuck[1].ID, timestamp), lines[2])
	require.Equal(t, []int64{ids[0]}, outboxIDs(t, db, "no.such.topic"))
	require.Zero(t, count(t, db, "outbox_parked", "true"), "deleted, not parked")

	_, _, err = run(t, "outbox", "delete", "--database-url", db.URL, "--id", fmt.Sprint(ids[1]))
	require.ErrorContains(t, err, fmt.Sprintf("no outbox row with id %d", ids[1]))
	require.Equal(t, 1, relaycmd.ExitCode(err))

	out, _, err = run(t, "outbox", "delete", "--database-url", db.URL, "--topic", "no.such.topic")
	require.NoError(t, err)
	require.Contains(t, out, "deleted 1 row from pulsebus.outbox")
	require.Contains(t, out, stuck[0].ID)
	require.Empty(t, outboxIDs(t, db, "no.such.topic"))
	require.Equal(t, []string{"c"}, outboxKeys(t, db, "lessons"))
}

// A row a relay is publishing is locked by the relay's claim transaction,
// which deleted it without committing yet. park and delete do not wait for
// that transaction: they leave the row alone, say so (an error for --id,
// exit 1; a note for --topic, whose other rows are changed) and return at
// once. Once the claim rolls back (the publish failed), the row can be
// parked; once it commits (published), it is gone.
func TestOutbox_RowARelayIsPublishingIsLeftAlone(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	insertKeyed(t, db, "no.such.topic", "a", "b", "c")
	ids := outboxIDs(t, db, "no.such.topic")

	// A claim as the relay's: the row deleted in an open transaction.
	claim := func(id int64) (rollback, commit func()) {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `DELETE FROM pulsebus.outbox WHERE id = $1`, id)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback(ctx) })
		return func() { require.NoError(t, tx.Rollback(ctx)) }, func() { require.NoError(t, tx.Commit(ctx)) }
	}
	rollback, _ := claim(ids[0])

	start := time.Now()
	_, _, err := run(t, "outbox", "park", "--database-url", db.URL, "--id", fmt.Sprint(ids[0]), "--reason", "stuck")
	require.ErrorContains(t, err, fmt.Sprintf("outbox row %d is being published by a relay right now", ids[0]))
	require.Equal(t, 1, relaycmd.ExitCode(err))
	_, _, err = run(t, "outbox", "delete", "--database-url", db.URL, "--id", fmt.Sprint(ids[0]))
	require.ErrorContains(t, err, "is being published by a relay right now")

	out, _, err := run(t, "outbox", "park", "--database-url", db.URL, "--topic", "no.such.topic", "--reason", "stuck")
	require.NoError(t, err)
	t.Logf("relay outbox park with a row in flight:\n%s", out)
	require.Contains(t, out, "parked 2 rows into pulsebus.outbox_parked")
	require.True(t, strings.HasSuffix(out, "left alone: 1 row of topic no.such.topic that a relay is publishing right now "+
		"(its claim holds them); run the command again if they are still listed\n"), out)
	require.Less(t, time.Since(start), 10*time.Second, "the commands never waited for the claim")
	require.Equal(t, []int64{ids[1], ids[2]}, parkedIDs(t, db, "no.such.topic"))

	// The publish failed: the claim rolls back, the row is waiting again.
	rollback()
	out, _, err = run(t, "outbox", "park", "--database-url", db.URL, "--id", fmt.Sprint(ids[0]), "--reason", "stuck")
	require.NoError(t, err)
	require.Contains(t, out, "parked 1 row")
	require.Empty(t, outboxIDs(t, db, "no.such.topic"))

	// The publish succeeded: the claim commits, the row is gone.
	insertKeyed(t, db, "lessons", "d")
	id := outboxIDs(t, db, "lessons")[0]
	_, commit := claim(id)
	_, _, err = run(t, "outbox", "delete", "--database-url", db.URL, "--id", fmt.Sprint(id))
	require.ErrorContains(t, err, "is being published by a relay right now")
	commit()
	_, _, err = run(t, "outbox", "delete", "--database-url", db.URL, "--id", fmt.Sprint(id))
	require.ErrorContains(t, err, fmt.Sprintf("no outbox row with id %d (published or removed already?", id))
}

// The operator's way out of a stuck row with the real relay running: a row
// for a topic that does not exist fails again and again (the relay does not
// create topics); "outbox park" takes it out while the relay retries it,
// running again when it hit the row in flight, and the relay then
// publishes the rows behind it.
func TestOutbox_ParkAStuckRowWhileTheRelayRuns(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 1)
	stuck := insertKeyed(t, db, "no.such.topic", "k")
	startEngine(t, db, kc, outbox.RelayConfig{PollInterval: 50 * time.Millisecond})
	require.Eventually(t, func() bool { return count(t, db, "outbox", "attempts > 0") == 1 }, 30*time.Second, 20*time.Millisecond,
		"the relay failed on the row at least once")

	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		out, _, err := run(t, "outbox", "park", "--database-url", db.URL, "--topic", "no.such.topic", "--reason", "topic never created")
		require.NoError(t, err)
		if strings.HasPrefix(out, "parked 1 row") {
			t.Logf("parked at attempt %d:\n%s", attempt, out)
			require.Contains(t, out, stuck[0].ID)
			break
		}
		require.Contains(t, out, "left alone: 1 row of topic no.such.topic", "attempt %d", attempt)
		require.True(t, time.Now().Before(deadline), "the row stayed in flight for 30s")
	}
	insertKeyed(t, db, "lessons", "k1", "k2")
	require.Eventually(t, recordsAre(kc, "lessons", 2), 30*time.Second, 20*time.Millisecond)
	require.Eventually(t, rowsAre(db, "outbox", 0), 10*time.Second, 20*time.Millisecond)
	var parkedErr string
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT error FROM pulsebus.outbox_parked`).Scan(&parkedErr))
	require.Equal(t, "parked by an operator: topic never created", parkedErr)
}

func TestOutbox_BadCommandLines(t *testing.T) {
	t.Parallel()
	db := "postgres://127.0.0.1:1/none" // never reached: the command line is checked first
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no command", []string{"outbox"}, "outbox: want list, park or delete"},
		{"unknown command", []string{"outbox", "requeue"}, `outbox: unknown command "requeue"`},
		{"park without selector", []string{"outbox", "park", "--reason", "r"}, "--id/--topic: give one: --id ID or --topic T"},
		{"park two selectors", []string{"outbox", "park", "--id", "1", "--topic", "t", "--reason", "r"}, "--id/--topic: give one: --id ID or --topic T, not both"},
		{"park without reason", []string{"outbox", "park", "--id", "1"}, "--reason: required"},
		{"park id zero", []string{"outbox", "park", "--id", "0", "--reason", "r"}, `--id: "0" is not an outbox row id`},
		{"park bad topic", []string{"outbox", "park", "--topic", "a b", "--reason", "r"}, `--topic: "a b" (from --topic) is not a Kafka topic name`},
		{"delete without selector", []string{"outbox", "delete"}, "--id/--topic: give one"},
		{"delete all", []string{"outbox", "delete", "--all"}, "flag provided but not defined: -all"},
		{"delete id negative", []string{"outbox", "delete", "--id", "-3"}, `"-3" (from --id) is out of range`},
		{"list limit", []string{"outbox", "list", "--limit", "0"}, `--limit: "0" (from --limit) is out of range`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := tc.args
			if len(args) > 1 {
				args = append(args, "--database-url", db)
			}
			_, stderr, err := run(t, args...)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, 2, relaycmd.ExitCode(err), "%v", err)
			require.NotContains(t, stderr, "panic")
		})
	}
}

func TestOutbox_Help(t *testing.T) {
	t.Parallel()
	out, _, err := run(t, "outbox", "--help")
	require.Equal(t, 0, relaycmd.ExitCode(err))
	require.Contains(t, out, "Usage: relay outbox list|park|delete")
	require.Contains(t, out, "locked by the relay's claim")
	out, _, err = run(t, "help", "outbox", "park")
	require.Equal(t, 0, relaycmd.ExitCode(err))
	require.Contains(t, out, "Usage: relay outbox park --id ID | --topic T --reason TEXT")
	out, _, err = run(t, "help")
	require.NoError(t, err)
	require.Contains(t, out, "outbox    list, park or delete the rows still waiting in the outbox")
}
