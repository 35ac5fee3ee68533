package relaycmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edupulse/pulsebus/internal/relaycmd"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// insertKeyed writes one event per key into the outbox and returns them.
func insertKeyed(t *testing.T, db *testdb.DB, topic string, keys ...string) []envelope.Envelope {
	t.Helper()
	envs := make([]envelope.Envelope, len(keys))
	for i, k := range keys {
		env, err := envelope.New("parked-test", statusEvent{N: i}, envelope.WithKey(k))
		require.NoError(t, err)
		envs[i] = env
	}
	require.NoError(t, outbox.InsertTx(context.Background(), db.Pool, topic, envs...))
	return envs
}

// park moves every outbox row of topic to outbox_parked with errMsg, as
// the relay does with a row the broker refuses.
func park(t *testing.T, db *testdb.DB, topic, errMsg string) {
	t.Helper()
	exec(t, db, `
		WITH m AS (DELETE FROM pulsebus.outbox WHERE topic = $1 RETURNING *)
		INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time,
		                                    content_type, meta, payload, created_at, attempts, error)
		SELECT id, event_id, topic, key, type, source, subject, event_time,
		       content_type, meta, payload, created_at, attempts + 1, $2 FROM m`, topic, errMsg)
}

func count(t *testing.T, db *testdb.DB, table, where string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pulsebus.`+table+` WHERE `+where, args...).Scan(&n))
	return n
}

// column returns the first column of query's rows.
func column[T any](t *testing.T, db *testdb.DB, query string, args ...any) []T {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), query, args...)
	require.NoError(t, err)
	vs, err := pgx.CollectRows(rows, pgx.RowTo[T])
	require.NoError(t, err)
	return vs
}

func parkedIDs(t *testing.T, db *testdb.DB, topic string) []int64 {
	t.Helper()
	return column[int64](t, db, `SELECT id FROM pulsebus.outbox_parked WHERE topic = $1 ORDER BY id`, topic)
}

func outboxKeys(t *testing.T, db *testdb.DB, topic string) []string {
	t.Helper()
	return column[string](t, db, `SELECT key FROM pulsebus.outbox WHERE topic = $1 ORDER BY id`, topic)
}

const longError = "permanent publish error (message_too_large):\n[10] MESSAGE_TOO_LARGE: the request included a message larger than the max message size the server will accept; " +
	"raise max.message.bytes on the topic or --max-message-bytes on the relay, then requeue this row"

func TestParked_List(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	out, _, err := run(t, "parked", "list", "--database-url", db.URL)
	require.NoError(t, err)
	require.Equal(t, "no parked rows\n", out)
	out, _, err = run(t, "parked", "list", "--database-url", db.URL, "--json")
	require.NoError(t, err)
	require.JSONEq(t, "[]", out)

	lessons := insertKeyed(t, db, "lessons", "lesson-1", "")
	park(t, db, "lessons", longError)
	media := insertKeyed(t, db, "media", "m\tx\ny")
	park(t, db, "media", "Kafka topic media: TOPIC_AUTHORIZATION_FAILED")
	insertKeyed(t, db, "lessons", "waiting") // in the outbox, not parked

	out, _, err = run(t, "parked", "list", "--database-url", db.URL)
	require.NoError(t, err)
	t.Logf("relay parked list:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 4, out)
	require.Regexp(t, `^ID +EVENT_ID +TOPIC +KEY +TYPE +ATTEMPTS +PARKED_AT +ERROR$`, lines[0])
	ts := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`
	require.Regexp(t, `^1 +`+lessons[0].ID+` +lessons +lesson-1 +test\.status +1 +`+ts+
		` +`+regexp.QuoteMeta(strings.ReplaceAll(longError, "\n", " "))+`$`, lines[1], "the whole error, on one line")
	require.Regexp(t, `^2 +`+lessons[1].ID+` +lessons +- +test\.status +1 +`+ts+` +permanent publish error`, lines[2])
	require.Regexp(t, `^3 +`+media[0].ID+` +media +m x y +test\.status +1 +`+ts+` +Kafka topic media: TOPIC_AUTHORIZATION_FAILED$`, lines[3])

	out, _, err = run(t, "parked", "list", "--database-url", db.URL, "--topic", "media")
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSuffix(out, "\n"), "\n"), 2, out)
	require.Contains(t, out, media[0].ID)

	out, _, err = run(t, "parked", "list", "--database-url", db.URL, "--topic", "grades")
	require.NoError(t, err)
	require.Equal(t, "no parked rows for topic grades\n", out)

	out, _, err = run(t, "parked", "list", "--database-url", db.URL, "--limit", "2")
	require.NoError(t, err)
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 4, out)
	require.Equal(t, "(first 2 of 3 shown; raise --limit for more)", lines[3])

	// JSON: every field, the whole error; the note about the limit goes to
	// stderr so stdout stays JSON.
	out, stderr, err := run(t, "parked", "list", "--database-url", db.URL, "--json", "--limit", "2")
	require.NoError(t, err)
	require.Equal(t, "(first 2 of 3 shown; raise --limit for more)\n", stderr)
	var got []relaycmd.ParkedRow
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got, 2)
	require.Equal(t, int64(1), got[0].ID)
	require.Equal(t, lessons[0].ID, got[0].EventID.String())
	require.Equal(t, "lessons", got[0].Topic)
	require.Equal(t, "lesson-1", got[0].Key)
	require.Equal(t, "test.status", got[0].Type)
	require.Equal(t, "parked-test", got[0].Source)
	require.Equal(t, 1, got[0].Attempts)
	require.Equal(t, longError, got[0].Error)
	require.Equal(t, len(lessons[0].Payload), got[0].PayloadBytes)
	require.WithinDuration(t, time.Now(), got[0].ParkedAt, time.Minute)
	require.False(t, got[0].CreatedAt.After(got[0].ParkedAt))
	var raw []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &raw))
	require.ElementsMatch(t, []string{"id", "event_id", "topic", "key", "type", "source", "created_at", "attempts", "parked_at", "error", "payload_bytes"},
		keys(raw[0]))
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestParked_RequeueByIDTopicAndAll(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	insertKeyed(t, db, "lessons", "a", "b", "c")
	park(t, db, "lessons", "refused")
	insertKeyed(t, db, "media", "m1", "m2")
	park(t, db, "media", "refused")
	insertKeyed(t, db, "grades", "g1")
	park(t, db, "grades", "refused")
	exec(t, db, `UPDATE pulsebus.outbox_parked SET attempts = 7`)
	waiting := insertKeyed(t, db, "lessons", "later")
	lessonIDs := parkedIDs(t, db, "lessons")
	require.Len(t, lessonIDs, 3)

	// By id: one row moves back under its old id, ahead of the row
	// committed after it.
	out, _, err := run(t, "parked", "requeue", "--database-url", db.URL, "--id", fmt.Sprint(lessonIDs[1]))
	require.NoError(t, err)
	require.Regexp(t, `^requeued 1 row into pulsebus.outbox \(id (\d+), as before\) and notified the relay\n  lessons  1 row\n$`, out)
	var newID, attempts int64
	var lastErr *string
	var eventID string
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT id, attempts, last_error, event_id::text FROM pulsebus.outbox WHERE key = 'b'`).Scan(&newID, &attempts, &lastErr, &eventID))
	require.Contains(t, out, fmt.Sprintf("(id %d, as before)", newID))
	require.Equal(t, lessonIDs[1], newID, "the row keeps its id")
	var waitingID int64
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT id FROM pulsebus.outbox WHERE event_id = $1`, waiting[0].ID).Scan(&waitingID))
	require.Less(t, newID, waitingID, "a requeued row goes out ahead of the rows committed after it")
	require.Zero(t, attempts, "attempts start again")
	require.Nil(t, lastErr)
	require.Equal(t, []int64{lessonIDs[0], lessonIDs[2]}, parkedIDs(t, db, "lessons"))

	// The same id again: nothing left to move, an error (exit 1).
	_, _, err = run(t, "parked", "requeue", "--database-url", db.URL, "--id", fmt.Sprint(lessonIDs[1]))
	require.ErrorContains(t, err, fmt.Sprintf("no parked row with id %d", lessonIDs[1]))
	require.Equal(t, 1, relaycmd.ExitCode(err))

	// By topic: that topic's rows, in their old order.
	out, _, err = run(t, "parked", "requeue", "--database-url", db.URL, "--topic", "lessons")
	require.NoError(t, err)
	require.Regexp(t, `^requeued 2 rows into pulsebus.outbox \(ids \d+ to \d+, as before\) and notified the relay\n  lessons  2 rows\n$`, out)
	require.Equal(t, []string{"a", "b", "c", "later"}, outboxKeys(t, db, "lessons"))
	require.Equal(t, 3, count(t, db, "outbox_parked", "true"))

	out, _, err = run(t, "parked", "requeue", "--database-url", db.URL, "--topic", "lessons")
	require.NoError(t, err)
	require.Equal(t, "no parked rows for topic lessons: nothing requeued\n", out)

	// All: every topic.
	out, _, err = run(t, "parked", "requeue", "--database-url", db.URL, "--all")
	require.NoError(t, err)
	require.Regexp(t, `^requeued 3 rows into pulsebus.outbox \(ids \d+ to \d+, as before\) and notified the relay\n  media   2 rows\n  grades  1 row\n$`, out)
	require.Zero(t, count(t, db, "outbox_parked", "true"))
	require.Equal(t, []string{"m1", "m2"}, outboxKeys(t, db, "media"))
	require.Equal(t, 7, count(t, db, "outbox", "attempts = 0 AND last_error IS NULL"))

	out, _, err = run(t, "parked", "requeue", "--database-url", db.URL, "--all")
	require.NoError(t, err)
	require.Equal(t, "no parked rows: nothing requeued\n", out)
}

// startEngine starts a pkg/outbox relay on db and kc; stop stops it (also
// run in cleanup).
func startEngine(t *testing.T, db *testdb.DB, kc *testkafka.Cluster, cfg outbox.RelayConfig) (stop func()) {
	t.Helper()
	cfg.Pool, cfg.Brokers = db.Pool, kc.Addrs
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.BackoffInitial, cfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	r, err := outbox.NewRelay(cfg)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, r.Stop(ctx))
	}
	t.Cleanup(stop)
	return stop
}

// rowsAre and recordsAre are conditions for require.Eventually, which runs
// them on another goroutine: they report errors as false, never fail t.
func rowsAre(db *testdb.DB, table string, want int) func() bool {
	return func() bool {
		var n int
		err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pulsebus.`+table).Scan(&n)
		return err == nil && n == want
	}
}

func recordsAre(kc *testkafka.Cluster, topic string, want int64) func() bool {
	return func() bool {
		ends, err := kc.EndOffsetsErr(context.Background(), topic)
		var n int64
		for _, hw := range ends {
			n += hw
		}
		return err == nil && n == want
	}
}

func ceID(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == "ce_id" {
			return string(h.Value)
		}
	}
	return ""
}

// The whole loop with the real relay engine (--on-refused hold-key, the
// default): it parks an event the broker refuses and holds the later
// events of its key while another key flows; once the cause is fixed (a
// relay allowing larger messages), the requeued event is published first,
// then the held ones, in order, read back with an independent client; and
// a running, idle relay publishes requeued rows at once because requeue
// notifies it (its poll interval is a minute).
func TestParked_RequeuedRowsArePublishedByTheRelay(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 1)
	kc.CreateTopic(t, "media", 1)

	first := insertKeyed(t, db, "lessons", "k")
	big, err := envelope.New("parked-test", struct {
		statusEvent
		Pad string `json:"pad"`
	}{Pad: strings.Repeat("x", 4096)}, envelope.WithKey("k"))
	require.NoError(t, err)
	require.NoError(t, outbox.InsertTx(context.Background(), db.Pool, "lessons", big))
	second := insertKeyed(t, db, "lessons", "k")
	other := insertKeyed(t, db, "lessons", "l")

	stopA := startEngine(t, db, kc, outbox.RelayConfig{MaxMessageBytes: 2048, PollInterval: 100 * time.Millisecond,
		LeaseTTL: 3 * time.Second, WriteTimeout: time.Second})
	require.Eventually(t, func() bool {
		return rowsAre(db, "outbox_parked", 1)() && rowsAre(db, "outbox", 1)() && recordsAre(kc, "lessons", 2)()
	}, 20*time.Second, 20*time.Millisecond, "the big event parked, the event of its key after it held, the others published")
	stopA()
	var got []string
	for _, r := range kc.ReadAll(t, "lessons") {
		got = append(got, string(r.Key)+"/"+ceID(r))
	}
	require.Equal(t, []string{"k/" + first[0].ID, "l/" + other[0].ID}, got, "k's event after the refused one waits; l flows")
	out, _, err := run(t, "parked", "list", "--database-url", db.URL)
	require.NoError(t, err)
	require.Contains(t, out, big.ID)
	require.Contains(t, out, "message_too_large")

	// While no relay runs: a later event of the same key waits, and rows of
	// another topic are parked.
	third := insertKeyed(t, db, "lessons", "k")
	media := insertKeyed(t, db, "media", "m1", "m2")
	park(t, db, "media", "refused")

	out, _, err = run(t, "parked", "requeue", "--database-url", db.URL, "--topic", "lessons")
	require.NoError(t, err)
	require.Contains(t, out, "requeued 1 row")

	startEngine(t, db, kc, outbox.RelayConfig{PollInterval: time.Minute})
	require.Eventually(t, recordsAre(kc, "lessons", 5), 20*time.Second, 20*time.Millisecond, "lessons published")
	got = got[:0]
	for _, r := range kc.ReadAll(t, "lessons") {
		if string(r.Key) == "k" {
			got = append(got, ceID(r))
		}
	}
	require.Equal(t, []string{first[0].ID, big.ID, second[0].ID, third[0].ID}, got,
		"per key, Kafka order is commit order through the refused event")

	// The relay is idle now, next poll in 48 s or more: only requeue's
	// notification wakes it.
	start := time.Now()
	out, _, err = run(t, "parked", "requeue", "--database-url", db.URL, "--all")
	require.NoError(t, err)
	require.Contains(t, out, "requeued 2 rows")
	require.Eventually(t, recordsAre(kc, "media", 2), 15*time.Second, 20*time.Millisecond, "media published after the notification")
	t.Logf("requeued rows published %s after the requeue", time.Since(start).Round(time.Millisecond))
	recs := kc.ReadAll(t, "media")
	require.Equal(t, []string{media[0].ID, media[1].ID}, []string{ceID(recs[0]), ceID(recs[1])})
	require.Zero(t, count(t, db, "outbox_parked", "true"))
	require.Eventually(t, rowsAre(db, "outbox", 0), 10*time.Second, 20*time.Millisecond, "outbox drained")
}

func TestParked_Delete(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	lessons := insertKeyed(t, db, "lessons", "a", "b")
	park(t, db, "lessons", "refused:\nfor good")
	media := insertKeyed(t, db, "media", "m")
	park(t, db, "media", "refused")
	ids := parkedIDs(t, db, "lessons")

	out, _, err := run(t, "parked", "delete", "--database-url", db.URL, "--id", fmt.Sprint(ids[0]))
	require.NoError(t, err)
	t.Logf("relay parked delete:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 3, out)
	require.Equal(t, "deleted 1 row:", lines[0])
	require.Regexp(t, `^ID +EVENT_ID +TOPIC +KEY +TYPE +ATTEMPTS +PARKED_AT +ERROR$`, lines[1])
	require.Regexp(t, regexp.MustCompile(fmt.Sprintf(`^%d +%s +lessons +a +test\.status +1 +\S+ +refused: for good$`, ids[0], lessons[0].ID)), lines[2])
	require.Equal(t, []int64{ids[1]}, parkedIDs(t, db, "lessons"))
	require.Zero(t, count(t, db, "outbox", "true"), "deleted rows are not published")

	_, _, err = run(t, "parked", "delete", "--database-url", db.URL, "--id", fmt.Sprint(ids[0]))
	require.ErrorContains(t, err, fmt.Sprintf("no parked row with id %d", ids[0]))
	require.Equal(t, 1, relaycmd.ExitCode(err))

	out, _, err = run(t, "parked", "delete", "--database-url", db.URL, "--topic", "media")
	require.NoError(t, err)
	require.Contains(t, out, "deleted 1 row:\n")
	require.Contains(t, out, media[0].ID)
	require.Equal(t, 1, count(t, db, "outbox_parked", "true"))

	out, _, err = run(t, "parked", "delete", "--database-url", db.URL, "--topic", "media")
	require.NoError(t, err)
	require.Equal(t, "no parked rows for topic media: nothing deleted\n", out)
}

func TestParked_BadCommandLines(t *testing.T) {
	t.Parallel()
	db := "postgres://127.0.0.1:1/none" // never reached: the command line is checked first
	cases := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no command", []string{"parked"}, "parked: want list, requeue or delete"},
		{"unknown command", []string{"parked", "redrive"}, `parked: unknown command "redrive"`},
		{"requeue without selector", []string{"parked", "requeue"}, "--id/--topic/--all: give one: --id ID, --topic T or --all"},
		{"requeue two selectors", []string{"parked", "requeue", "--id", "3", "--all"}, "--id/--topic/--all: give one: --id ID, --topic T or --all, not several"},
		{"requeue id zero", []string{"parked", "requeue", "--id", "0"}, `--id: "0" is not a parked row id`},
		{"requeue id negative", []string{"parked", "requeue", "--id", "-4"}, `--id: "-4" (from --id) is out of range`},
		{"requeue id not a number", []string{"parked", "requeue", "--id", "latest"}, `--id: "latest" (from --id) is not a whole number`},
		{"requeue bad topic", []string{"parked", "requeue", "--topic", "a b"}, `--topic: "a b" (from --topic) is not a Kafka topic name`},
		{"delete without selector", []string{"parked", "delete"}, "--id/--topic: give one: --id ID or --topic T"},
		{"delete two selectors", []string{"parked", "delete", "--id", "1", "--topic", "t"}, "not several"},
		{"delete all", []string{"parked", "delete", "--all"}, "flag provided but not defined: -all"},
		{"list limit", []string{"parked", "list", "--limit", "0"}, `--limit: "0" (from --limit) is out of range`},
		{"list stray argument", []string{"parked", "list", "lessons"}, `unexpected ["lessons"`},
		{"list database url", []string{"parked", "list", "--database-url", ""}, "--database-url (DATABASE_URL)"},
		{"connect timeout", []string{"parked", "list", "--connect-timeout", "soon"}, "--connect-timeout (RELAY_CONNECT_TIMEOUT)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := tc.args
			if len(args) > 2 && tc.name != "list database url" {
				args = append(args, "--database-url", db)
			}
			_, stderr, err := run(t, args...)
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, 2, relaycmd.ExitCode(err), "%v", err)
			require.NotContains(t, stderr, "panic")
		})
	}
	t.Run("schema missing", func(t *testing.T) {
		t.Parallel()
		db := testdb.NewEmpty(t)
		_, _, err := run(t, "parked", "list", "--database-url", db.URL)
		require.ErrorContains(t, err, "database schema is outdated (database at version 0, this build needs")
		require.ErrorContains(t, err, "run relay migrate with the same --database-url")
		require.Equal(t, 1, relaycmd.ExitCode(err))
	})
}

func TestParked_Help(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"parked", "--help"}, {"help", "parked"}} {
		out, _, err := run(t, args...)
		require.Equal(t, 0, relaycmd.ExitCode(err), "%v", args)
		require.Contains(t, out, "Usage: relay parked list|requeue|delete")
		require.Contains(t, out, "pulsebus_relay_parked_total")
	}
	out, _, err := run(t, "help", "parked", "requeue")
	require.Equal(t, 0, relaycmd.ExitCode(err))
	require.Contains(t, out, "Usage: relay parked requeue --id ID | --topic T | --all")
	require.Contains(t, out, "With --on-refused hold-key (the relay's default) the later rows")
	require.Contains(t, out, "--all")
	require.Contains(t, out, "--database-url string  (env DATABASE_URL")

	out, _, err = run(t, "parked", "list", "--help")
	require.Equal(t, 0, relaycmd.ExitCode(err))
	for _, f := range []string{"--topic", "--limit", "--json", "--database-url", "--connect-timeout"} {
		require.Contains(t, out, f)
	}
	out, _, err = run(t, "parked", "delete", "-h")
	require.Equal(t, 0, relaycmd.ExitCode(err))
	require.Contains(t, out, "There is no --all")

	out, _, err = run(t, "help")
	require.NoError(t, err)
	require.Contains(t, out, "parked    list, requeue or delete")
}

// Deleting a parked row releases the rows its key held, in order, at once
// (the delete notifies the relay); rows without a key were never held.
func TestParked_DeleteReleasesTheRowsItsKeyHeld(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "lessons", 1)

	big, err := envelope.New("parked-test", struct {
		statusEvent
		Pad string `json:"pad"`
	}{Pad: strings.Repeat("x", 4096)}, envelope.WithKey("k"))
	require.NoError(t, err)
	require.NoError(t, outbox.InsertTx(context.Background(), db.Pool, "lessons", big))
	held := insertKeyed(t, db, "lessons", "k", "k")
	unkeyed := insertKeyed(t, db, "lessons", "")

	startEngine(t, db, kc, outbox.RelayConfig{MaxMessageBytes: 2048, PollInterval: 100 * time.Millisecond,
		LeaseTTL: 3 * time.Second, WriteTimeout: time.Second})
	require.Eventually(t, func() bool {
		return rowsAre(db, "outbox_parked", 1)() && rowsAre(db, "outbox", 2)() && recordsAre(kc, "lessons", 1)()
	}, 20*time.Second, 20*time.Millisecond, "the big event parked, k's later events held, the unkeyed one published")
	require.Equal(t, unkeyed[0].ID, ceID(kc.ReadAll(t, "lessons")[0]))

	out, _, err := run(t, "parked", "delete", "--database-url", db.URL, "--topic", "lessons")
	require.NoError(t, err)
	require.Contains(t, out, "deleted 1 row")
	require.Eventually(t, recordsAre(kc, "lessons", 3), 20*time.Second, 20*time.Millisecond, "the held events released")
	var got []string
	for _, r := range kc.ReadAll(t, "lessons")[1:] {
		got = append(got, ceID(r))
	}
	require.Equal(t, []string{held[0].ID, held[1].ID}, got)
}
