package consumercmd_test

import (
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/consumercmd"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
)

// closedAddr returns a 127.0.0.1 address nothing listens on: connections to
// it are refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// seedOffsets gives handlers offsets on every partition of topics, as a
// replay with --topic does for a new handler.
func (b *bundle) seedOffsets(t *testing.T, topics []string, handlers ...string) {
	t.Helper()
	for _, h := range handlers {
		for _, topic := range topics {
			_, _, err := command(t, append([]string{"replay", "--handler-name", h, "--topic", topic, "--to", "earliest"}, b.admin()...)...)
			require.NoError(t, err)
		}
	}
}

// replay names what is wrong when nothing matches: a handler the group does
// not have (listing those it has), a partition the topic does not have
// (with its partition count).
func TestReplay_NamesWhatIsWrong(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	b.seedOffsets(t, []string{b.topic}, "indexer", "audit")

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--handler-name", "nosuch", "--to", "earliest"},
			"replay: group svc has no handler nosuch (its handlers: audit, indexer); to start a new handler's offsets, name a topic"},
		{[]string{"--handler-name", "indexer", "--partition", "42", "--to", "earliest"},
			"replay: handler indexer of group svc has no offsets on partition 42: edupulse.events has 3 partitions (0 to 2)"},
		{[]string{"--handler-name", "indexer", "--topic", b.topic, "--partition", "42", "--to", "earliest"},
			"replay: topic edupulse.events has 3 partitions (0 to 2): no partition 42"},
	} {
		_, _, err := command(t, append(append([]string{"replay"}, c.args...), b.admin()...)...)
		require.EqualError(t, err, c.want, c.args)
		require.Equal(t, 1, consumercmd.ExitCode(err))
	}

	empty := setup(t, 1)
	_, _, err := command(t, append([]string{"replay", "--handler-name", "x", "--to", "earliest"}, empty.admin()...)...)
	require.EqualError(t, err, "replay: group svc has no handler offsets at all (check the group); to start handler x's offsets, name a topic")
}

// Every admin subcommand on a database without the schema says so and
// names the command that fixes it, instead of a missing relation.
func TestAdmin_UnmigratedDatabaseNamesTheFix(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	db := testdb.NewEmpty(t)
	dbOnly := []string{"--database-url", db.URL, "--group", b.group}
	withKafka := append([]string{"--kafka-brokers", strings.Join(b.kc.Addrs, ",")}, dbOnly...)
	for _, args := range [][]string{
		append([]string{"offsets"}, withKafka...),
		append([]string{"replay", "--handler-name", "h", "--topic", b.topic, "--to", "earliest"}, withKafka...),
		append([]string{"dead-letters", "list"}, dbOnly...),
		append([]string{"dead-letters", "show", "--id", "1"}, dbOnly...),
		append([]string{"dead-letters", "redrive", "--id", "1", "--handler", "name=h,types=*,log=info"}, dbOnly...),
	} {
		_, _, err := command(t, args...)
		require.Error(t, err, args)
		require.NotContains(t, err.Error(), "SQLSTATE", args)
		require.Contains(t, err.Error(), "database schema is outdated", args)
		require.Contains(t, err.Error(), "(database at version 0, this build needs", args)
		require.Contains(t, err.Error(), "run consumer migrate with the same --database-url", args)
		require.Equal(t, 1, consumercmd.ExitCode(err), args)
	}
}

// offsets prints one line per handler by default and the partitions with
// --by-partition, filtered by --handler-name and --topic.
func TestOffsets_SummaryByPartitionAndFilters(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	other := "edupulse.other"
	b.kc.CreateTopic(t, other, 3)
	b.produce(t, lessons(t, 4))
	b.seedOffsets(t, []string{b.topic, other}, "indexer", "audit")

	out, _, err := command(t, append([]string{"offsets"}, b.admin()...)...)
	require.NoError(t, err)
	stamp := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`
	require.Regexp(t, `^HANDLER +TOPICS +PARTITIONS +LAG +LAST_UPDATED\n`+
		`audit +2 +6 +4 +`+stamp+`\n`+
		`indexer +2 +6 +4 +`+stamp+`\n`+
		`\(one line per handler; --by-partition for each topic and partition\)\n$`, out)

	out, _, err = command(t, append([]string{"offsets", "--by-partition"}, b.admin()...)...)
	require.NoError(t, err)
	require.Equal(t, 13, strings.Count(out, "\n"), out) // header + 2 handlers × 2 topics × 3 partitions

	out, _, err = command(t, append([]string{"offsets", "--by-partition", "--handler-name", "audit", "--topic", b.topic}, b.admin()...)...)
	require.NoError(t, err)
	require.Equal(t, 4, strings.Count(out, "\n"), out)
	require.Regexp(t, `(?m)^audit +edupulse\.events +0 +0 +\d+ +\d+ +`+stamp+`$`, out)
	require.NotContains(t, out, "indexer")
	require.NotContains(t, out, other)

	out, _, err = command(t, append([]string{"offsets", "--handler-name", "indexer", "--topic", other}, b.admin()...)...)
	require.NoError(t, err)
	require.Regexp(t, `(?m)^indexer +1 +3 +0 +`+stamp+`$`, out)
	require.NotContains(t, out, "audit")

	_, _, err = command(t, append([]string{"offsets", "--handler-name", "nosuch"}, b.admin()...)...)
	require.EqualError(t, err, "group svc has no handler nosuch (its handlers: audit, indexer)")
	_, _, err = command(t, append([]string{"offsets", "--topic", "nosuch"}, b.admin()...)...)
	require.EqualError(t, err, "no handler of group svc has offsets on topic nosuch (its topics: edupulse.events, edupulse.other)")
}

// With Kafka unreachable, offsets exits 1 as table and as JSON; JSON rows
// carry the error and no made-up watermark or lag.
func TestOffsets_KafkaUnreachable(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	b.seedOffsets(t, []string{b.topic}, "indexer")
	down := []string{"--database-url", b.db.URL, "--kafka-brokers", closedAddr(t), "--group", b.group}

	out, stderr, err := command(t, append([]string{"offsets"}, down...)...)
	require.Error(t, err)
	require.Equal(t, 1, consumercmd.ExitCode(err))
	require.Contains(t, err.Error(), "could not read 2 high watermark(s) from Kafka")
	require.Regexp(t, `(?m)^indexer +1 +2 +\? +`, out)
	require.Contains(t, stderr, "connection refused")

	for _, view := range [][]string{{"--json"}, {"--json", "--by-partition"}} {
		out, _, err = command(t, append(append([]string{"offsets"}, view...), down...)...)
		require.Error(t, err, view)
		require.Equal(t, 1, consumercmd.ExitCode(err), view)
		var rows []map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
		require.NotEmpty(t, rows)
		for _, r := range rows {
			require.Nil(t, r["lag"], view)
			require.Contains(t, r["error"], "connection refused", view)
			if _, ok := r["partition"]; ok {
				require.Nil(t, r["high_watermark"], view)
			}
		}
	}
}

// One meaning per flag name: --handler is a spec everywhere (run, redrive),
// --handler-name selects a handler (replay, offsets, dead-letters). The old
// spellings work for one release with a warning.
func TestHandlerFlags_OneMeaningAndDeprecatedSpellings(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)

	_, stderr, err := command(t, append([]string{"replay", "--handler", "h", "--topic", b.topic, "--to", "earliest"}, b.admin()...)...)
	require.NoError(t, err)
	require.Contains(t, stderr, "warning: consumer replay --handler NAME is deprecated and goes in the next release: use --handler-name NAME\n")

	_, stderr, err = command(t, append([]string{"dead-letters", "list", "--handler", "h"}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Contains(t, stderr, "warning: consumer dead-letters list --handler NAME is deprecated and goes in the next release: use --handler-name NAME\n")

	_, _, err = command(t, append([]string{"replay", "--handler", "h", "--handler-name", "g", "--topic", b.topic, "--to", "earliest"}, b.admin()...)...)
	require.EqualError(t, err, "config: --handler-name: --handler h (deprecated) and --handler-name g disagree; give --handler-name only")

	// redrive: --handler is the spec, --handler-name the selector; the old
	// spellings (--handler NAME, --handler-spec SPEC) still work.
	spec := "name=h,types=*,log=info"
	out, stderr, err := command(t, append([]string{"dead-letters", "redrive", "--handler-name", "h", "--handler", spec}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Equal(t, "redriven 0, failed 0\n", out)
	require.Empty(t, stderr)
	out, stderr, err = command(t, append([]string{"dead-letters", "redrive", "--handler", "h", "--handler-spec", spec}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Equal(t, "redriven 0, failed 0\n", out)
	require.Contains(t, stderr, "warning: consumer dead-letters redrive --handler NAME is deprecated and goes in the next release: use --handler-name NAME\n")
	require.Contains(t, stderr, "warning: consumer dead-letters redrive --handler-spec SPEC is deprecated and goes in the next release: use --handler SPEC\n")

	// Help shows each flag's one meaning.
	for _, c := range []struct{ cmd, want string }{
		{"replay", "--handler-name string"},
		{"offsets", "--handler-name string"},
		{"dead-letters list", "--handler-name string"},
		{"dead-letters redrive", "--handler value  (repeatable, env CONSUMER_HANDLERS)"},
	} {
		out, _, err := command(t, append(strings.Fields(c.cmd), "--help")...)
		require.Equal(t, 0, consumercmd.ExitCode(err))
		require.Contains(t, out, c.want, c.cmd)
		if c.cmd != "offsets" { // which never had --handler
			require.Regexp(t, regexp.MustCompile(`(?m)^  --handler(-spec)? (string|value)(  \(repeatable\))?\n\s+deprecated`), out, c.cmd)
		}
	}
}

// The old redrive --handler NAME still finds the specs in CONSUMER_HANDLERS.
func TestHandlerFlags_RedriveOldNameWithSpecsInTheEnvironment(t *testing.T) {
	b := setup(t, 1)
	t.Setenv("CONSUMER_HANDLERS", "name=h,types=*,log=info")
	out, stderr, err := command(t, append([]string{"dead-letters", "redrive", "--handler", "h"}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Equal(t, "redriven 0, failed 0\n", out)
	require.Contains(t, stderr, "--handler NAME is deprecated")
}
