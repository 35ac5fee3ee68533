package main_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// The consumer is built once per test binary by procharness (without
// -race: these tests check the process's signals and exit codes,
// consumercmd's tests check the logic).
func TestMain(m *testing.M) { testmain.Run(m, procharness.RemoveBuilds, testdb.DropTemplate) }

// consumer runs the binary with args and a clean environment plus env.
func consumer(t *testing.T, env []string, args ...string) (*exec.Cmd, *procharness.SyncBuffer, *procharness.SyncBuffer) {
	t.Helper()
	cmd := exec.Command(procharness.Build(t, "github.com/edupulse/pulsebus/cmd/consumer"), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	stdout, stderr := &procharness.SyncBuffer{}, &procharness.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("consumer stderr:\n%s", stderr.String())
		}
	})
	return cmd, stdout, stderr
}

func exitCode(t *testing.T, cmd *exec.Cmd, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		require.NoError(t, err)
		return 0
	case <-time.After(within):
		t.Fatalf("consumer did not exit within %s", within)
		return -1
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	cmd, stdout, _ := consumer(t, nil, "--help")
	require.Equal(t, 0, exitCode(t, cmd, 10*time.Second))
	require.Contains(t, stdout.String(), "dead-letters")

	cmd, _, stderr := consumer(t, nil, "run", "--topics", "t", "--handler", "name=a,types=*,log=info")
	require.Equal(t, 2, exitCode(t, cmd, 10*time.Second))
	require.Contains(t, stderr.String(), "consumer: config: --group (CONSUMER_GROUP): required")

	cmd, _, stderr = consumer(t, []string{"CONSUMER_HANDLERS=name=a,types=*,log=info", "CONSUMER_GROUP=g", "CONSUMER_TOPICS=t",
		"DATABASE_URL=postgres://postgres:pw@127.0.0.1:1/x?connect_timeout=2"})
	require.Equal(t, 1, exitCode(t, cmd, 20*time.Second))
	require.Contains(t, stderr.String(), "connect to PostgreSQL")
	require.NotContains(t, stderr.String(), ":pw@")
}

// SIGTERM after the consumer handled everything: it drains, saves its
// offsets and exits 0.
func TestSIGTERMExitsZero(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	kc := testkafka.New(t)
	kc.CreateTopic(t, "events", 2)
	var msgs []kafka.Message
	for i := 0; i < 20; i++ {
		env := envelope.Envelope{ID: uuid.Must(uuid.NewV7()).String(), Type: "lesson.published", Source: "test", Time: time.Now().UTC(),
			Key: uuid.NewString(), ContentType: envelope.ContentTypeJSON, Payload: []byte(`{}`)}
		m, err := envelope.ToMessage(env)
		require.NoError(t, err)
		msgs = append(msgs, m)
	}
	// A transport of its own, closed after: kafka-go's default one keeps
	// connection goroutines that goleak (testmain.Run) reports.
	tr := &kafka.Transport{}
	w := &kafka.Writer{Addr: kafka.TCP(kc.Addrs...), Topic: "events", Balancer: &kafka.Hash{}, BatchTimeout: 2 * time.Millisecond,
		RequiredAcks: kafka.RequireAll, Transport: tr} // acknowledged: the end offsets below count every message
	require.NoError(t, w.WriteMessages(context.Background(), msgs...))
	require.NoError(t, w.Close())
	tr.CloseIdleConnections()

	cmd, _, stderr := consumer(t, []string{
		"DATABASE_URL=" + db.URL,
		"KAFKA_BROKERS=" + strings.Join(kc.Addrs, ","),
		"CONSUMER_GROUP=svc",
		"CONSUMER_TOPICS=events",
		"CONSUMER_HANDLERS=name=audit,types=*,log=info",
		"METRICS_ADDR=127.0.0.1:0",
		"LOG_FORMAT=json",
		"CONSUMER_FLUSH_INTERVAL=50ms",
		"CONSUMER_SESSION_TIMEOUT=6s",
	}, "run")
	ends := kc.EndOffsets(t, "events")
	deadline := time.Now().Add(60 * time.Second)
	for {
		offs, err := (&dispatch.Admin{Pool: db.Pool}).ListOffsets(context.Background(), "svc")
		require.NoError(t, err)
		done := len(offs) == 2
		for _, o := range offs {
			done = done && o.NextOffset == ends[int32(o.Partition)]
		}
		if done {
			break
		}
		require.False(t, time.Now().After(deadline), "offsets never reached the end; stderr:\n%s", stderr.String())
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, exitCode(t, cmd, 30*time.Second))
	require.Contains(t, stderr.String(), "consumer exited cleanly")
	require.Equal(t, 20, strings.Count(stderr.String(), `"msg":"event"`))
}

// consumer migrate --down refuses what would lose events or makes no sense:
// a version above the current one or below 0, with --status (exit 2), a
// drop of tables holding rows without --force (exit 1, naming the counts).
func TestMigrateDownIsSafe(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	_, err := db.Pool.Exec(context.Background(), `SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}')`)
	require.NoError(t, err)
	env := []string{"DATABASE_URL=" + db.URL}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"migrate", "--down", "99"}, 2, "--down: version 99 is above the schema's current version"},
		{[]string{"migrate", "--down", "-1"}, 2, "is not a schema version"},
		{[]string{"migrate", "--status", "--down", "0"}, 2, "--status/--down: give one of them, not both"},
		{[]string{"migrate", "--down", "0"}, 1, "would drop tables that hold rows: pulsebus.outbox (1 row)"},
	} {
		cmd, _, stderr := consumer(t, env, tc.args...)
		require.Equal(t, tc.code, exitCode(t, cmd, 20*time.Second), "%v: %s", tc.args, stderr.String())
		require.Contains(t, stderr.String(), tc.want, "%v", tc.args)
	}
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pulsebus.outbox`).Scan(&n))
	require.Equal(t, 1, n, "the unpublished event is still there")
}
