package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/testdb"
	"github.com/edupulse/pulsebus/internal/testmain"
)

func TestMain(m *testing.M) { testmain.Run(m) }

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
		"--duration", "4s", "--rate", "150", "--partitions", "3"}, &out, &out)
	t.Log(out.String())
	require.NoError(t, err)
	text := out.String()
	require.Contains(t, text, "OK: the relay published every event")

	final := text[strings.Index(text, "Final summary"):]
	rows := regexp.MustCompile(`(?m)^  (search-indexer|badge-notifier|payment-ledger|audit-log)\s+\S+\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+(\S+)\s+(\S+)`).FindAllStringSubmatch(final, -1)
	require.Len(t, rows, 4, "one final row per handler")
	for _, r := range rows {
		expected, _ := strconv.Atoi(r[2])
		handled, _ := strconv.Atoi(r[3])
		require.Positive(t, handled, "handler %s handled nothing", r[1])
		require.Equal(t, expected, handled, "handler %s", r[1])
		require.Equal(t, "0", r[4], "dead letters of %s", r[1])
		require.NotEqual(t, "0", r[6], "p50 of %s", r[1])
	}

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
