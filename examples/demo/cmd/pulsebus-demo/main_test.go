package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

func TestMain(m *testing.M) { testmain.Run(m, procharness.RemoveBuilds) }

// The README's demo command, with a duration: it ends with every handler
// having handled every event it subscribes to, prints latency percentiles,
// and leaves the read models in its database.
func TestDemo_RunsToCompletion(t *testing.T) {
	name := fmt.Sprintf("pulsebus_demo_test_%d", time.Now().UnixNano())
	t.Cleanup(func() { dropDatabase(t, name) })
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := run(ctx, []string{"--database-url", testdb.ServerURL(), "--database", name,
		"--duration", "4s", "--rate", "150", "--partitions", "3", "--console-addr", "127.0.0.1:0"}, &out, &out)
	t.Log(out.String())
	require.NoError(t, err)
	text := out.String()
	require.Contains(t, text, "OK: the relay published every event")
	require.Regexp(t, `operator console: http://127\.0\.0\.1:\d+/ \(token [0-9a-f]{32}\)`, text)

	rows := checkFinalSummary(t, text)
	// The read models hold what the handlers wrote, once per event.
	connCfg, err := pgx.ParseConfig(testdb.ServerURL())
	require.NoError(t, err)
	connCfg.Database = name
	conn, err := pgx.ConnectConfig(ctx, connCfg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var docs, updates, notified, badges, booked, payments int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*), coalesce(sum(updates), 0) FROM edupulse.search_documents`).Scan(&docs, &updates))
	require.NoError(t, conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM edupulse.notifications), (SELECT count(*) FROM edupulse.badges),
		(SELECT count(*) FROM edupulse.ledger), (SELECT count(*) FROM edupulse.payments)`).Scan(&notified, &badges, &booked, &payments))
	require.Positive(t, docs)
	indexed := 0
	for _, r := range rows {
		if r[1] == "search-indexer" {
			indexed, _ = strconv.Atoi(r[3])
		}
	}
	require.Equal(t, indexed, updates, "every indexed event counted once in the documents")
	require.Equal(t, badges, notified, "one notification per badge")
	require.Equal(t, payments, booked, "one ledger row per payment")
	var backlog int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pulsebus.outbox`).Scan(&backlog))
	require.Zero(t, backlog)
}

func TestDemo_NoPostgresSaysHowToStartOne(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no initdb: no temporary cluster either
	port, err := freePort()
	require.NoError(t, err)
	var out bytes.Buffer
	err = run(context.Background(), []string{"--database-url", fmt.Sprintf("postgres://postgres:secret@127.0.0.1:%d/postgres", port), "--duration", "1s"}, &out, &out)
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, "cannot reach PostgreSQL")
	require.Contains(t, msg, "docker run")
	require.Contains(t, msg, "DATABASE_URL=")
	require.NotContains(t, msg, "secret", "the password is redacted")
}

func TestDemo_BadFlagsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		setting string
	}{
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--partitions", "0"}, "--partitions"},
		{[]string{"--producers", "1000"}, "--producers"},
		{[]string{"--duration", "-1s"}, "--duration"},
		{[]string{"--rate", "fast"}, "--rate"},
		{[]string{"extra"}, "arguments"},
	} {
		_, err := parseFlags(tc.args, &bytes.Buffer{}, &bytes.Buffer{})
		var ce *cli.ConfigError
		require.ErrorAs(t, err, &ce, "%v", tc.args)
		require.Contains(t, ce.Setting, tc.setting)
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"--database-url", testdb.ServerURL(), "--database", "Bad-Name"}, &out, &out)
	var ce *cli.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "--database", ce.Setting)
}

func TestDemo_HelpHidesThePasswordOfDatabaseURL(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://app:hunter2@db.internal:5432/app")
	var stdout bytes.Buffer
	_, err := parseFlags([]string{"--help"}, &stdout, &bytes.Buffer{})
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, stdout.String(), "--database-url")
	require.NotContains(t, stdout.String(), "hunter2")
}

func dropDatabase(t *testing.T, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testdb.ServerURL())
	if err != nil {
		t.Errorf("drop %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		t.Errorf("drop %s: %v", name, err)
	}
}

// checkFinalSummary checks the final summary's row of each handler: it
// handled as many events as were produced for it, none dead-lettered, and
// returns the rows (name, expected, handled, dead, dups, p50, p99).
func checkFinalSummary(t *testing.T, text string) [][]string {
	t.Helper()
	i := strings.Index(text, "Final summary")
	require.GreaterOrEqual(t, i, 0, "no final summary in:\n%s", text)
	rows := regexp.MustCompile(`(?m)^  (search-indexer|badge-notifier|payment-ledger|audit-log)\s+\S+\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+(\S+)\s+(\S+)`).FindAllStringSubmatch(text[i:], -1)
	require.Len(t, rows, 4, "one final row per handler")
	for _, r := range rows {
		expected, _ := strconv.Atoi(r[2])
		handled, _ := strconv.Atoi(r[3])
		require.Positive(t, handled, "handler %s handled nothing", r[1])
		require.Equal(t, expected, handled, "handler %s", r[1])
		require.Equal(t, "0", r[4], "dead letters of %s", r[1])
		require.NotEqual(t, "0", r[6], "p50 of %s", r[1])
	}
	return rows
}

// Ctrl-C (SIGINT) without --duration stops the load, and the relay and
// consumer carry what was produced to every handler: the demo exits 0
// within seconds with every handler's count equal to what was produced.
// (Before, the relay stopped with the signal, the backlog could not drain
// and the demo waited out its whole drain timeout, then failed.)
func TestDemo_InterruptDrainsAndExitsZero(t *testing.T) {
	bin := procharness.Build(t, "github.com/edupulse/pulsebus/examples/demo/cmd/pulsebus-demo")
	name := fmt.Sprintf("pulsebus_demo_test_%d", time.Now().UnixNano())
	t.Cleanup(func() { dropDatabase(t, name) })
	p := procharness.Start(t, bin, procharness.Options{Args: []string{
		"--database-url", testdb.ServerURL(), "--database", name, "--rate", "150", "--partitions", "3", "--drain-timeout", "1m",
		"--console-addr", "127.0.0.1:0",
	}})
	// Not a terminal: one plain line every few seconds, the first at once.
	testpoll.Until(t, 2*time.Minute, 100*time.Millisecond, "the demo produces", func() bool {
		return regexp.MustCompile(`produced [1-9]\d* relayed`).MatchString(p.Stdout())
	})
	// The console it printed answers with its token, and only with it.
	m := regexp.MustCompile(`operator console: (http://\S+) \(token ([0-9a-f]{32})\)`).FindStringSubmatch(p.Stdout())
	require.NotNil(t, m, p.Stdout())
	for token, want := range map[string]int{m[2]: http.StatusOK, "wrong-token-0123456789abcdef": http.StatusUnauthorized} {
		req, err := http.NewRequest(http.MethodGet, m[1], nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode)
	}
	require.NoError(t, p.Signal(os.Interrupt))
	start := time.Now()
	code, err := p.Wait(10 * time.Second)
	require.NoError(t, err, "the demo did not exit within 10s of SIGINT:\n%s", p.Stdout())
	t.Logf("exit %d %s after SIGINT", code, time.Since(start).Round(time.Millisecond))
	require.Equal(t, 0, code, p.Stdout()+p.Stderr())
	require.Contains(t, p.Stdout(), "interrupted: stopping (Ctrl-C again to abort)")
	require.Contains(t, p.Stdout(), "OK: the relay published every event")
	checkFinalSummary(t, p.Stdout())
}

// On an 80-column terminal every line of the live block fits, so redrawing
// it in place does not wrap and stack headers; from 100 columns the wide
// layout shows the expected counts and p50 too.
func TestLiveBlock_FitsTheTerminalWidth(t *testing.T) {
	s := snapshot{elapsed: 93 * time.Minute, producedTotal: 123456789, relayed: 123456789, backlogRows: 1234567,
		backlogAge: 95 * time.Second, leader: true, parked: 12345, errors: 99999}
	for _, h := range demoHandlers {
		s.handlers = append(s.handlers, handlerSnapshot{name: h.name, expected: 123456789, handled: 123456789, dead: 99999,
			lag: 999999, intervalCount: 1, intervalP50: 1500 * time.Millisecond, intervalP99: 12 * time.Second})
	}
	header := "PulseBus demo · offered 200 tx/s for 1h0m0s · draining"
	for _, columns := range []int{80, 99} {
		var b strings.Builder
		n := s.writeLive(&b, header, columns)
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		require.Len(t, lines, n, "the returned count is what the redraw moves up by")
		for _, l := range lines {
			require.LessOrEqual(t, utf8.RuneCountInString(l), 80, "at %d columns: %q", columns, l)
		}
		require.NotContains(t, b.String(), "expected")
	}
	var b strings.Builder
	s.writeLive(&b, header, 100)
	require.Contains(t, b.String(), "expected")
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		require.LessOrEqual(t, utf8.RuneCountInString(l), 100, "%q", l)
	}
}

// Two demos on one server must not wipe each other's database: a database
// another session uses is refused, naming --database.
func TestDemo_RefusesADatabaseInUse(t *testing.T) {
	db := testdb.New(t) // its pool holds a session
	require.NoError(t, db.Pool.Ping(context.Background()))
	var out bytes.Buffer
	err := run(context.Background(), []string{"--database-url", testdb.ServerURL(), "--database", db.Name, "--duration", "1s"}, &out, &out)
	var ce *cli.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "--database", ce.Setting)
	require.Contains(t, ce.Reason, "is in use")
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pulsebus.outbox`).Scan(&n), "the database is still there")
}

// Dev mode runs relay and consumer without load and prints commands that
// work as pasted: the psql line publishes an event the built-in consumer
// prints, and the consumer line runs the consumer binary on the same
// broker and database.
func TestDemo_DevModeCommandsWorkAsPrinted(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not installed")
	}
	bin := procharness.Build(t, "github.com/edupulse/pulsebus/examples/demo/cmd/pulsebus-demo")
	consumerBin := procharness.Build(t, "github.com/edupulse/pulsebus/cmd/consumer")
	name := fmt.Sprintf("pulsebus_dev_test_%d", time.Now().UnixNano())
	t.Cleanup(func() { dropDatabase(t, name) })
	dev := procharness.Start(t, bin, procharness.Options{Args: []string{"--dev", "--database-url", testdb.ServerURL(), "--database", name}})
	testpoll.Until(t, 2*time.Minute, 100*time.Millisecond, "dev mode prints its commands", func() bool {
		return strings.Contains(dev.Stdout(), "Ctrl-C stops")
	})
	intro := dev.Stdout()
	psqlLine := regexp.MustCompile(`(?m)^  (psql .*)$`).FindStringSubmatch(intro)
	require.NotNil(t, psqlLine, intro)
	out, err := exec.Command("bash", "-c", psqlLine[1]).CombinedOutput()
	require.NoError(t, err, "%s: %s", psqlLine[1], out)
	testpoll.Until(t, time.Minute, 100*time.Millisecond, "the built-in consumer prints the event", func() bool {
		return strings.Contains(dev.Stdout(), `handled lesson.published key="learner-1"`)
	})

	consumerCmd := regexp.MustCompile(`(?m)^  go run ./cmd/consumer (run .*) \\\n\s+(.*)$`).FindStringSubmatch(intro)
	require.NotNil(t, consumerCmd, intro)
	fields, err := exec.Command("bash", "-c", `eval "set -- $0"; for a in "$@"; do printf '%s\0' "$a"; done`, consumerCmd[1]+" "+consumerCmd[2]).Output()
	require.NoError(t, err)
	argv := strings.Split(strings.TrimSuffix(string(fields), "\x00"), "\x00")
	c := procharness.Start(t, consumerBin, procharness.Options{Args: append(argv, "--metrics-addr", procharness.FreeAddr(t))})
	testpoll.Until(t, time.Minute, 100*time.Millisecond, "the consumer binary logs the event", func() bool {
		return strings.Contains(c.Stderr(), "lesson.published")
	})
	require.NoError(t, dev.Signal(os.Interrupt))
	code, err := dev.Wait(20 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 0, code, dev.Stderr())
}
