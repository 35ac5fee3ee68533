package dispatch_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// A test can run a consumer in a child process, so it can really be
// SIGKILLed or frozen: the test binary re-executes itself with childEnv set,
// and TestMain runs childMain instead of the tests.
const childEnv = "PULSEBUS_DISPATCH_CHILD"

// childMain runs a consumer configured by the CHILD_* environment until
// SIGTERM. Its handlers, all on every event type:
//
//   - "count" (unless CHILD_NO_COUNT is set): transactional, one event per
//     transaction; counts each event in handled and logs (event, member,
//     partition) in handled_log, both in the handler's transaction;
//   - "batch" (with CHILD_BATCH): HandleBatchTx counting into handled;
//   - "plain" (with CHILD_PLAIN_FILE): a plain handler appending each event
//     id to that file (at-least-once);
//   - "ordered" (with CHILD_ORDERED): orderedTx with WithKeyOrder.
//
// CHILD_FLUSH_INTERVAL overrides Config.FlushInterval.
//
// It exits 0 after a clean stop, 1 on errors.
func childMain() int {
	env := func(k string) string { return os.Getenv("CHILD_" + k) }
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pcfg, err := pgxpool.ParseConfig(env("DB_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	pcfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer pool.Close()
	member := env("MEMBER")
	cfg := childConfig(strings.Split(env("BROKERS"), ","), env("GROUP"), env("TOPIC"), pool)
	if d, err := time.ParseDuration(env("FLUSH_INTERVAL")); err == nil {
		cfg.FlushInterval, cfg.FlushMessages = d, 1_000_000
	}
	c, err := dispatch.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	must := func(err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
	}
	if env("NO_COUNT") == "" {
		must(c.HandleTx("count", []string{"*"}, dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, e envelope.Envelope) error {
			m, _ := dispatch.MessageFromContext(ctx)
			b := &pgx.Batch{}
			b.Queue(`INSERT INTO handled (handler, event_id) VALUES ('count', $1)
				ON CONFLICT (handler, event_id) DO UPDATE SET n = handled.n + 1`, e.ID)
			b.Queue(`INSERT INTO handled_log (event_id, member, partition) VALUES ($1, $2, $3)`, e.ID, member, m.Partition)
			return tx.SendBatch(ctx, b).Close()
		})))
	}
	if env("BATCH") != "" {
		must(c.HandleBatchTx("batch", []string{"*"}, countBatchTx("batch"), dispatch.WithBatchSize(50)))
	}
	if path := env("PLAIN_FILE"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		must(err)
		defer f.Close()
		must(c.Handle("plain", []string{"*"}, dispatch.HandlerFunc(func(ctx context.Context, e envelope.Envelope) error {
			// One write per event: what the kernel has survives a SIGKILL.
			_, err := f.Write([]byte(e.ID + "\n"))
			return err
		})))
	}
	if env("ORDERED") != "" {
		must(c.HandleTx("ordered", []string{"*"}, orderedTx, dispatch.WithKeyOrder()))
	}
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// orderedTx is a transactional handler that logs each event in
// ordered_log, in its transaction, and fails for good on the events listed
// in refused.
var orderedTx = dispatch.TxHandlerFunc(func(ctx context.Context, tx pgx.Tx, e envelope.Envelope) error {
	var refused bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM refused WHERE event_id = $1)`, e.ID).Scan(&refused); err != nil {
		return err
	}
	if refused {
		return dispatch.Permanent(fmt.Errorf("event %s is refused", e.ID))
	}
	_, err := tx.Exec(ctx, `INSERT INTO ordered_log (event_id, key) VALUES ($1, $2)`, e.ID, e.Key)
	return err
})

// childConfig is the consumer configuration of the tests: short timings
// (setup lowers kfake's minimum session timeout).
func childConfig(brokers []string, group, topic string, pool *pgxpool.Pool) dispatch.Config {
	return dispatch.Config{
		Brokers:           brokers,
		Group:             group,
		Topics:            []string{topic},
		Pool:              pool,
		Logger:            testLogger(),
		SessionTimeout:    3 * time.Second,
		RebalanceTimeout:  5 * time.Second,
		HeartbeatInterval: 300 * time.Millisecond,
		FlushInterval:     50 * time.Millisecond,
		CommitInterval:    200 * time.Millisecond,
		FetchMaxWait:      100 * time.Millisecond,
		JoinGroupBackoff:  200 * time.Millisecond,
		TxIdleTimeout:     3 * time.Second,
		Retry:             dispatch.RetryPolicy{InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
	}
}

// createChildTables makes the tables childMain's handlers write.
func createChildTables(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `CREATE TABLE handled_log (
		event_id uuid NOT NULL, member text NOT NULL, partition int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`); err != nil {
		t.Fatal(err)
	}
}

// child is a consumer running in a child process.
type child struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	out    *procharness.SyncBuffer
	exited chan struct{}
	err    error // after exited
}

// startChild starts childMain as member name of group on b's topic.
// extra are more CHILD_ variables (BATCH=1, PLAIN_FILE=path).
func startChild(t *testing.T, b *bundle, group, name string, extra ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, name: name, out: &procharness.SyncBuffer{}, exited: make(chan struct{})}
	c.cmd = exec.Command(exe, "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childEnv+"=1",
		"CHILD_BROKERS="+strings.Join(b.kc.Addrs, ","), "CHILD_DB_URL="+b.db.URL,
		"CHILD_GROUP="+group, "CHILD_TOPIC="+b.topic, "CHILD_MEMBER="+name)
	for _, e := range extra {
		c.cmd.Env = append(c.cmd.Env, "CHILD_"+e)
	}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			if t.Failed() { // a goroutine dump shows where it is stuck
				_ = c.cmd.Process.Signal(syscall.SIGCONT)
				_ = c.cmd.Process.Signal(syscall.SIGQUIT)
				select {
				case <-c.exited:
				case <-time.After(5 * time.Second):
				}
			}
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			t.Logf("child %s output:\n%s", c.name, c.out.String())
		}
	})
	return c
}

// kill sends SIGKILL and waits for the exit.
func (c *child) kill() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill %s: %v", c.name, err)
	}
	<-c.exited
}

// signal sends sig to the child.
func (c *child) signal(sig syscall.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %s to %s: %v", sig, c.name, err)
	}
}

// stop sends SIGTERM and requires a clean exit within d.
func (c *child) stop(d time.Duration) {
	c.t.Helper()
	c.signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		if c.err != nil {
			c.t.Fatalf("child %s exited with %v; output:\n%s", c.name, c.err, c.out.String())
		}
	case <-time.After(d):
		c.t.Fatalf("child %s did not stop within %s", c.name, d)
	}
}
