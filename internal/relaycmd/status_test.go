package relaycmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/relaycmd"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

type statusEvent struct {
	N int `json:"n"`
}

func (statusEvent) EventType() string { return "test.status" }

func insertEvents(t *testing.T, db *testdb.DB, topic string, n int) {
	t.Helper()
	envs := make([]envelope.Envelope, n)
	for i := range envs {
		env, err := envelope.New("status-test", statusEvent{N: i}, envelope.WithKey(fmt.Sprint(i)))
		require.NoError(t, err)
		envs[i] = env
	}
	require.NoError(t, outbox.InsertTx(context.Background(), db.Pool, topic, envs...))
}

func exec(t *testing.T, db *testdb.DB, sql string, args ...any) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), sql, args...)
	require.NoError(t, err)
}

func TestStatus_EmptyDatabase(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	out, _, err := run(t, "status", "--database-url", db.URL)
	require.NoError(t, err)
	require.Equal(t, `relay:    default
leader:   no leader (no relay named "default" has run)
backlog:  0 rows
parked:   0 rows
`, out)

	out, _, err = run(t, "status", "--database-url", db.URL, "--json")
	require.NoError(t, err)
	require.JSONEq(t, `{"relay":"default","backlog":{"rows":0,"oldest_age_seconds":0,"topics":[]},"parked":{"rows":0,"topics":[]},"lease":null,"held":[]}`, out)
}

func TestStatus_BacklogLeaseAndParkedRows(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	insertEvents(t, db, "lessons", 3)
	insertEvents(t, db, "grades", 2)
	// The oldest row is 90 s old and failed twice: status shows why the
	// relay is stuck.
	exec(t, db, `UPDATE pulsebus.outbox SET created_at = clock_timestamp() - interval '90 seconds', attempts = 2,
		last_error = 'Kafka topic(s) lessons do not exist' WHERE id = (SELECT min(id) FROM pulsebus.outbox)`)
	exec(t, db, `INSERT INTO pulsebus.relay_leader (name, leader_id, term, acquired_at, expires_at)
		VALUES ('default', 'relay-a-1', 7, clock_timestamp() - interval '1 hour', clock_timestamp() + interval '12 seconds')`)
	exec(t, db, `INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, created_at, attempts, error)
		SELECT g, gen_random_uuid(), t, '', 'x.y', 's', '', now(), '', '{}', '', now(), 1, 'permanent publish error (message_too_large): too big'
		  FROM generate_series(1001, 1004) g, LATERAL (SELECT CASE WHEN g % 2 = 0 THEN 'lessons' ELSE 'media' END) AS x(t)`)

	out, _, err := run(t, "status", "--database-url", db.URL)
	require.NoError(t, err)
	t.Logf("relay status:\n%s", out)
	re := regexp.MustCompile(`^relay:     default
leader:    relay-a-1, term 7, lease expires in 1[12]\.\ds \(\S+Z\), leader since \S+Z
backlog:   5 rows, oldest 1m3\ds old
  grades   2 rows, oldest \d+\.\ds old
  lessons  3 rows, oldest 1m3\ds old
head row:  id 1 \(lessons\): 2 failed attempts, last error: Kafka topic\(s\) lessons do not exist
parked:    4 rows
  lessons  2 rows, last parked \d+\.\ds ago
  media    2 rows, last parked \d+\.\ds ago
$`)
	require.Regexp(t, re, out)

	out, _, err = run(t, "status", "--database-url", db.URL, "--json")
	require.NoError(t, err)
	var st relaycmd.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, int64(5), st.Backlog.Rows)
	require.InDelta(t, 90, st.Backlog.OldestAgeSeconds, 5)
	require.Equal(t, []string{"grades", "lessons"}, []string{st.Backlog.Topics[0].Topic, st.Backlog.Topics[1].Topic})
	require.Equal(t, int64(3), st.Backlog.Topics[1].Rows)
	require.Equal(t, 2, st.Backlog.Head.Attempts)
	require.Equal(t, int64(4), st.Parked.Rows)
	require.Equal(t, "media", st.Parked.Topics[1].Topic)
	require.NotNil(t, st.Lease)
	require.Equal(t, "relay-a-1", st.Lease.LeaderID)
	require.Equal(t, int64(7), st.Lease.Term)
	require.True(t, st.Lease.Held)
	require.InDelta(t, 12, st.Lease.ExpiresInSeconds, 3)

	// Another relay group has no leader.
	out, _, err = run(t, "status", "--database-url", db.URL, "--name", "billing")
	require.NoError(t, err)
	require.Contains(t, out, `leader:    no leader (no relay named "billing" has run)`)
}

func TestStatus_ExpiredLeaseIsNoLeader(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	exec(t, db, `INSERT INTO pulsebus.relay_leader (name, leader_id, term, acquired_at, expires_at)
		VALUES ('default', 'relay-b-2', 3, clock_timestamp() - interval '1 minute', clock_timestamp() - interval '5 seconds')`)
	out, _, err := run(t, "status", "--database-url", db.URL)
	require.NoError(t, err)
	require.Regexp(t, `leader:   no leader \(last relay-b-2, term 3, lease ended [56]\.\ds ago at \S+Z\)`, out)

	out, _, err = run(t, "status", "--database-url", db.URL, "--json")
	require.NoError(t, err)
	var st relaycmd.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.False(t, st.Lease.Held)
	require.Less(t, st.Lease.ExpiresInSeconds, -4.0)
}

func TestStatus_Errors(t *testing.T) {
	t.Parallel()
	t.Run("schema missing", func(t *testing.T) {
		t.Parallel()
		db := testdb.NewEmpty(t)
		_, _, err := run(t, "status", "--database-url", db.URL)
		require.ErrorContains(t, err, "database schema is outdated (database at version 0, this build needs")
		require.ErrorContains(t, err, "run relay migrate with the same --database-url")
		require.Equal(t, 1, relaycmd.ExitCode(err))
	})
	t.Run("bad flag", func(t *testing.T) {
		t.Parallel()
		_, stderr, err := run(t, "status", "--jsn")
		require.Equal(t, 2, relaycmd.ExitCode(err))
		require.Contains(t, stderr, "did you mean --json?")
	})
	t.Run("help", func(t *testing.T) {
		t.Parallel()
		out, _, err := run(t, "status", "--help")
		require.Equal(t, 0, relaycmd.ExitCode(err))
		require.Contains(t, out, "--json")
		require.Contains(t, out, "--database-url string  (env DATABASE_URL")
	})
}

// --check turns status into a probe: exit 0 only with a leader, no parked
// rows and no backlog older than --max-backlog-age; each problem named.
func TestStatus_Check(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	check := func(args ...string) (stderr string, code int) {
		t.Helper()
		_, stderr, err := run(t, append([]string{"status", "--database-url", db.URL, "--check"}, args...)...)
		return stderr, relaycmd.ExitCode(err)
	}

	stderr, code := check()
	require.Equal(t, 1, code)
	require.Equal(t, "check: no relay of group default has ever held the lease\n", stderr)

	exec(t, db, `INSERT INTO pulsebus.relay_leader (name, leader_id, term, acquired_at, expires_at)
		VALUES ('default', 'relay-a-1', 7, clock_timestamp(), clock_timestamp() + interval '1 minute')`)
	insertEvents(t, db, "lessons", 2)
	stderr, code = check()
	require.Equal(t, 0, code, stderr)
	require.Empty(t, stderr)

	exec(t, db, `UPDATE pulsebus.outbox SET created_at = clock_timestamp() - interval '90 seconds'`)
	exec(t, db, `INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, created_at, attempts, error)
		VALUES (1001, gen_random_uuid(), 'lessons', '', 'x.y', 's', '', now(), '', '{}', '', now(), 1, 'too big')`)
	stderr, code = check()
	require.Equal(t, 1, code)
	require.Regexp(t, `^check: 1 parked row\(s\): relay parked list
check: the oldest of 2 waiting row\(s\) is 1m3\ds old \(over --max-backlog-age 1m0s\)
$`, stderr)
	stderr, code = check("--max-backlog-age", "5m")
	require.Equal(t, 1, code)
	require.NotContains(t, stderr, "oldest")

	exec(t, db, `UPDATE pulsebus.relay_leader SET expires_at = clock_timestamp() - interval '10 seconds'`)
	stderr, _ = check("--max-backlog-age", "5m")
	require.Contains(t, stderr, "check: no relay of group default holds the lease (expired 10s ago)")

	// Without --check the same state exits 0: status only reports.
	_, _, err := run(t, "status", "--database-url", db.URL)
	require.NoError(t, err)
}

// With hold-key (the default) status lists the keys whose rows wait
// behind a parked row, and --check counts them as a problem; with
// --on-refused park nothing is held.
func TestStatus_HeldKeys(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	exec(t, db, `INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, created_at, attempts, error)
		VALUES (0, gen_random_uuid(), 'lessons', '0', 'x.y', 's', '', now(), '', '{}', '', now(), 1, 'too big')`)
	insertEvents(t, db, "lessons", 3) // keys 0, 1, 2: only key 0 is held
	insertEvents(t, db, "lessons", 1) // key 0 again

	out, _, err := run(t, "status", "--database-url", db.URL)
	require.NoError(t, err)
	require.Contains(t, out, "held:      2 rows behind 1 parked row(s) of their key\n  lessons  2 rows, key \"0\" behind parked row 0\n", out)

	_, stderr, err := run(t, "status", "--database-url", db.URL, "--check", "--max-backlog-age", "1h")
	require.Equal(t, 1, relaycmd.ExitCode(err))
	require.Contains(t, stderr, `check: 2 rows of lessons key "0" held behind parked row 0`)

	out, _, err = run(t, "status", "--database-url", db.URL, "--on-refused", "park", "--json")
	require.NoError(t, err)
	var st relaycmd.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Empty(t, st.Held)
}
