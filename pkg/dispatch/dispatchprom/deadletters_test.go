package dispatchprom_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/dispatch/dispatchprom"
)

// addDeadLetters stores n dead letters of handler in group, created age
// ago, at offsets from first on.
func addDeadLetters(t testing.TB, db *testdb.DB, group, handler string, n int, first int64, age time.Duration) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), `
		INSERT INTO pulsebus.dead_letters (group_id, handler, topic, partition, kafka_offset, error, attempts,
		                                   first_failed_at, last_failed_at, created_at)
		SELECT $1, $2, 'events', 0, $4 + i, 'boom', 1, now(), now(), clock_timestamp() - $5::interval
		  FROM generate_series(0, $3 - 1) AS i`, group, handler, n, first, age.String())
	require.NoError(t, err)
}

// addHeldEvents stores n events of handler in group held behind key k.
func addHeldEvents(t testing.TB, db *testdb.DB, group, handler string, n int, first int64) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), `
		INSERT INTO pulsebus.held_events (group_id, handler, topic, partition, kafka_offset, message_key,
		                                  message_header_keys, message_header_values)
		SELECT $1, $2, 'events', 0, $4 + i, 'k', '{}', '{}' FROM generate_series(0, $3 - 1) AS i`, group, handler, n, first)
	require.NoError(t, err)
}

// The gauges report every handler asked for, at 0 when it has none, only
// the rows of their own group, the oldest row's age, the held events, and
// stop counting at the limit.
func TestDeadLetterGauges_Values(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	addDeadLetters(t, db, "svc", "crm", 3, 0, time.Hour)
	addDeadLetters(t, db, "svc", "crm", 1, 100, time.Minute)
	addDeadLetters(t, db, "svc", "search", 25, 0, 0)
	addDeadLetters(t, db, "other-group", "audit", 2, 0, 0)
	addDeadLetters(t, db, "svc", "removed-handler", 2, 0, 0)
	addHeldEvents(t, db, "svc", "crm", 3, 1)
	addHeldEvents(t, db, "svc", "search", 12, 1)
	addHeldEvents(t, db, "other-group", "audit", 2, 1)

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(dispatchprom.NewDeadLetterGauges(db.Pool, "svc", []string{"crm", "search", "audit"},
		dispatchprom.StateOptions{Limit: 10})))
	got := gatherValues(t, reg)
	age := got[`pulsebus_consumer_dead_letter_oldest_age_seconds{group="svc",handler="crm"}`]
	require.InDelta(t, time.Hour.Seconds(), age, 60)
	delete(got, `pulsebus_consumer_dead_letter_oldest_age_seconds{group="svc",handler="crm"}`)
	search := got[`pulsebus_consumer_dead_letter_oldest_age_seconds{group="svc",handler="search"}`]
	require.InDelta(t, 0, search, 60)
	delete(got, `pulsebus_consumer_dead_letter_oldest_age_seconds{group="svc",handler="search"}`)
	require.Equal(t, map[string]float64{
		`pulsebus_consumer_dead_letters_stored{group="svc",handler="crm"}`:              4,
		`pulsebus_consumer_dead_letters_stored{group="svc",handler="search"}`:           10, // the limit
		`pulsebus_consumer_dead_letters_stored{group="svc",handler="audit"}`:            0,  // its rows are another group's
		`pulsebus_consumer_dead_letter_oldest_age_seconds{group="svc",handler="audit"}`: 0,
		`pulsebus_consumer_held_events{group="svc",handler="crm"}`:                      3,
		`pulsebus_consumer_held_events{group="svc",handler="search"}`:                   10, // the limit
		`pulsebus_consumer_held_events{group="svc",handler="audit"}`:                    0,
		`pulsebus_consumer_dead_letter_read_errors_total{group="svc"}`:                  0,
	}, got)

	// Two groups in one process register side by side.
	require.NoError(t, reg.Register(dispatchprom.NewDeadLetterGauges(db.Pool, "other-group", []string{"audit"}, dispatchprom.StateOptions{})))
	require.Equal(t, 2.0, gatherValues(t, reg)[`pulsebus_consumer_dead_letters_stored{group="other-group",handler="audit"}`])
}

// A database that cannot answer counts a read error; the gauges are absent
// until a read succeeds.
func TestDeadLetterGauges_ReadError(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	_, err := db.Pool.Exec(context.Background(), `DROP TABLE pulsebus.dead_letters`)
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(dispatchprom.NewDeadLetterGauges(db.Pool, "svc", []string{"crm"}, dispatchprom.StateOptions{})))
	require.Equal(t, map[string]float64{`pulsebus_consumer_dead_letter_read_errors_total{group="svc"}`: 1}, gatherValues(t, reg))
}

// The query's cost does not grow with the table: on 60,000 dead letters
// it reads the limit's worth of index entries per handler and one probe for
// the oldest, never the table.
func TestDeadLetterGauges_QueryCostBounded(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	addDeadLetters(t, db, "svc", "crm", 50_000, 0, time.Hour)
	addDeadLetters(t, db, "svc", "search", 10_000, 0, time.Hour)
	_, err := db.Pool.Exec(context.Background(), `VACUUM ANALYZE pulsebus.dead_letters`)
	require.NoError(t, err)
	var tablePages int64
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT relpages FROM pg_class WHERE oid = 'pulsebus.dead_letters'::regclass`).Scan(&tablePages))

	var plan []byte
	require.NoError(t, db.Pool.QueryRow(context.Background(), "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+dispatchprom.DeadLettersSQL,
		"svc", []string{"crm", "search", "audit"}, 1000).Scan(&plan))
	var nodes []struct {
		Plan planNode `json:"Plan"`
	}
	require.NoError(t, json.Unmarshal(plan, &nodes))
	root := nodes[0].Plan
	var scans []string
	root.walk(func(n planNode) {
		if n.RelationName == "dead_letters" {
			scans = append(scans, n.NodeType+" "+n.IndexName)
		}
	})
	require.NotEmpty(t, scans)
	for _, s := range scans {
		require.True(t, strings.HasPrefix(s, "Index Only Scan dead_letters_group_handler_created_at"), "plan: %v\n%s", scans, plan)
	}
	buffers := root.SharedHitBlocks + root.SharedReadBlocks
	t.Logf("dead_letters: %d pages; the query touched %d buffers", tablePages, buffers)
	require.Less(t, buffers, tablePages/4, "the query reads a small part of the table\n%s", plan)
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node the tests read.
type planNode struct {
	NodeType         string     `json:"Node Type"`
	RelationName     string     `json:"Relation Name"`
	IndexName        string     `json:"Index Name"`
	SharedHitBlocks  int64      `json:"Shared Hit Blocks"`
	SharedReadBlocks int64      `json:"Shared Read Blocks"`
	Plans            []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// gatherValues returns every gauge and counter gathered from reg by its
// series in the exposition format's spelling.
func gatherValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			series := mf.GetName()
			if len(labels) > 0 {
				series += "{" + strings.Join(labels, ",") + "}"
			}
			if c := m.GetCounter(); c != nil {
				out[series] = c.GetValue()
			} else {
				out[series] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
