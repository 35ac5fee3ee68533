package outboxprom_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/outbox/outboxprom"
)

// park stores n parked rows, parked age ago, with ids from first on.
func park(t testing.TB, db *testdb.DB, n int, first int64, age time.Duration) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), `
		INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type,
		                                    meta, payload, created_at, attempts, error, parked_at)
		SELECT $2 + i, gen_random_uuid(), 'lessons', '', 'lesson.published', 'test', '', now(), 'application/json',
		       '{}', '\x7b7d', now(), 1, 'message_too_large', clock_timestamp() - $3::interval
		  FROM generate_series(0, $1 - 1) AS i`, n, first, age.String())
	require.NoError(t, err)
}

func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			out[mf.GetName()] = c.GetValue()
		} else {
			out[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	return out
}

// The gauges read 0 on an empty table, then the rows up to the limit and
// the age of the oldest parked one.
func TestParkedGauges_Values(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	empty := prometheus.NewPedanticRegistry()
	require.NoError(t, empty.Register(outboxprom.NewParkedGauges(db.Pool, outboxprom.StateOptions{})))
	require.Equal(t, map[string]float64{
		"pulsebus_relay_parked_rows":               0,
		"pulsebus_relay_parked_oldest_age_seconds": 0,
		"pulsebus_relay_held_rows":                 0,
		"pulsebus_relay_parked_read_errors_total":  0,
	}, gauges(t, empty))

	park(t, db, 3, 100, time.Minute)
	park(t, db, 20, 1, 2*time.Hour) // lower ids, parked earlier
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(outboxprom.NewParkedGauges(db.Pool, outboxprom.StateOptions{Limit: 10})))
	got := gauges(t, reg)
	require.Equal(t, 10.0, got["pulsebus_relay_parked_rows"], "counted up to the limit")
	require.InDelta(t, (2 * time.Hour).Seconds(), got["pulsebus_relay_parked_oldest_age_seconds"], 60)

	reg = prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(outboxprom.NewParkedGauges(db.Pool, outboxprom.StateOptions{})))
	require.Equal(t, 23.0, gauges(t, reg)["pulsebus_relay_parked_rows"])
}

// With hold-key, the rows waiting in the outbox behind a parked row of
// their topic and key are counted; rows of other keys, earlier rows and
// rows without a key are not.
func TestParkedGauges_HeldRows(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	for _, q := range []string{
		// id 1 (k), 3 (k), 4 (l), 5 (''), 6 (k) wait; id 2 (k) is parked.
		`INSERT INTO pulsebus.outbox (id, event_id, topic, key, type, source, subject, event_time, content_type, meta, payload)
		 OVERRIDING SYSTEM VALUE
		 SELECT g, gen_random_uuid(), 'lessons', k, 'x.y', 's', '', now(), '', '{}', '' FROM (VALUES (1, 'k'), (3, 'k'), (4, 'l'), (5, ''), (6, 'k')) AS v(g, k)`,
		`INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, created_at, attempts, error)
		 VALUES (2, gen_random_uuid(), 'lessons', 'k', 'x.y', 's', '', now(), '', '{}', '', now(), 1, 'too big')`,
	} {
		_, err := db.Pool.Exec(ctx, q)
		require.NoError(t, err)
	}
	for _, tc := range []struct {
		holdKeys bool
		want     float64
	}{{true, 2}, {false, 0}} {
		reg := prometheus.NewPedanticRegistry()
		require.NoError(t, reg.Register(outboxprom.NewParkedGauges(db.Pool, outboxprom.StateOptions{HoldKeys: tc.holdKeys})))
		require.Equal(t, tc.want, gauges(t, reg)["pulsebus_relay_held_rows"], "hold keys %t", tc.holdKeys)
	}
}

// On 100,000 parked rows the query reads the limit's worth of rows and one
// index probe for the oldest, not the table.
func TestParkedGauges_QueryCostBounded(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	park(t, db, 100_000, 1, time.Hour)
	_, err := db.Pool.Exec(context.Background(), `VACUUM ANALYZE pulsebus.outbox_parked`)
	require.NoError(t, err)
	var tablePages int64
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT relpages FROM pg_class WHERE oid = 'pulsebus.outbox_parked'::regclass`).Scan(&tablePages))

	var plan []byte
	require.NoError(t, db.Pool.QueryRow(context.Background(), "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+outboxprom.ParkedSQL,
		1000, true).Scan(&plan))
	var nodes []struct {
		Plan planNode `json:"Plan"`
	}
	require.NoError(t, json.Unmarshal(plan, &nodes))
	root := nodes[0].Plan
	var scans []string
	root.walk(func(n planNode) {
		if n.RelationName == "outbox_parked" {
			scans = append(scans, strings.TrimSpace(n.NodeType+" "+n.IndexName))
		}
	})
	require.Contains(t, scans, "Index Only Scan outbox_parked_parked_at", "the oldest is an index probe\n%s", plan)
	buffers := root.SharedHitBlocks + root.SharedReadBlocks
	t.Logf("outbox_parked: %d pages; the query touched %d buffers", tablePages, buffers)
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
