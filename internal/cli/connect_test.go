package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/migrate"
)

// stoppedCluster is a throwaway PostgreSQL cluster, initialised in a
// temporary directory but not started. PostgreSQL refuses to run as root,
// so as root its commands run as the postgres user.
type stoppedCluster struct {
	t   *testing.T
	dir string
}

func newStoppedCluster(t *testing.T) *stoppedCluster {
	t.Helper()
	for _, tool := range []string{"initdb", "pg_ctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH: cannot start a throwaway PostgreSQL cluster", tool)
		}
	}
	dir, err := os.MkdirTemp("", "pulsebus-late-pg-")
	require.NoError(t, err)
	c := &stoppedCluster{t: t, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root without a postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(dir, uid, gid))
	}
	t.Cleanup(func() {
		_ = c.command("pg_ctl", "-D", c.data(), "stop", "-m", "immediate", "-s").Run()
		_ = os.RemoveAll(dir)
	})
	out, err := c.command("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync").CombinedOutput()
	require.NoError(t, err, "initdb: %s", out)
	return c
}

func (c *stoppedCluster) data() string { return filepath.Join(c.dir, "data") }

func (c *stoppedCluster) command(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		path, err := exec.LookPath(name)
		require.NoError(c.t, err)
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(name, args...)
}

// start starts the cluster on 127.0.0.1:port and waits until it accepts
// connections.
func (c *stoppedCluster) start(port int) {
	c.t.Helper()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off", port, c.dir)
	out, err := c.command("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-o", opts, "-w", "-t", "60", "start").CombinedOutput()
	require.NoError(c.t, err, "pg_ctl start: %s", out)
}

// refusingListener accepts TCP connections and closes them at once, as a
// port nobody serves yet would fail them; accepted receives one value per
// connection.
func refusingListener(t *testing.T) (ln net.Listener, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ch := make(chan struct{}, 100)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.Close()
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln, ch
}

// migrate against a PostgreSQL that starts only after migrate began (the
// compose stack's first start) keeps trying and then applies the schema.
func TestRunMigrate_WaitsForADatabaseThatStartsLate(t *testing.T) {
	t.Parallel()
	cluster := newStoppedCluster(t)
	ln, accepted := refusingListener(t)
	port := ln.Addr().(*net.TCPAddr).Port

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		var out, errOut bytes.Buffer
		err := cli.RunMigrate(ctx, "relay", []string{"--database-url", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}, &out, &errOut)
		done <- result{out.String(), err}
	}()
	for i := 0; i < 2; i++ { // two failed attempts: migrate is retrying
		select {
		case <-accepted:
		case r := <-done:
			t.Fatalf("migrate returned before the database started: %v", r.err)
		case <-time.After(30 * time.Second):
			t.Fatal("migrate made no second connection attempt within 30s")
		}
	}
	require.NoError(t, ln.Close())
	cluster.start(port)

	select {
	case r := <-done:
		require.NoError(t, r.err)
		require.Contains(t, r.out, fmt.Sprintf("schema now at version %d", migrate.Latest()))
	case <-ctx.Done():
		t.Fatal("migrate did not finish after the database started")
	}
}

// Without a deadline of its own, Connect gives up on a database that never
// answers after DefaultConnectTimeout, saying how often it tried.
func TestConnect_GivesUpAfterTheConnectTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now

	start := time.Now()
	_, err = cli.Connect(context.Background(), "postgres://u:s3cret@"+addr+"/db?sslmode=disable", "pulsebus-test")
	took := time.Since(start)
	require.Error(t, err)
	require.GreaterOrEqual(t, took, cli.DefaultConnectTimeout-time.Second)
	require.Less(t, took, cli.DefaultConnectTimeout+10*time.Second)
	require.Contains(t, err.Error(), "connect to PostgreSQL at postgres://u:xxxxx@"+addr)
	require.Regexp(t, `\(\d+ attempts in \d+(\.\d+)?s\)$`, err.Error())
	require.NotContains(t, err.Error(), "s3cret")
}

// A failure that waiting does not fix (here a database that does not exist)
// returns at once.
func TestConnect_PermanentFailureIsNotRetried(t *testing.T) {
	t.Parallel()
	url := strings.Replace(testdb.ServerURL(), "/test?", "/pulsebus_no_such_database?", 1)
	require.NotEqual(t, testdb.ServerURL(), url, "TEST_DATABASE_URL names database test")
	start := time.Now()
	_, err := cli.Connect(context.Background(), url, "pulsebus-test")
	require.Error(t, err)
	require.Contains(t, err.Error(), "pulsebus_no_such_database")
	require.NotContains(t, err.Error(), "attempts")
	require.Less(t, time.Since(start), cli.DefaultConnectTimeout/2)
}
