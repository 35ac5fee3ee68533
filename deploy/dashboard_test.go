package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// replicaGauges are gauges every replica reports about the same table (the
// relays about the outbox, the consumers of a group about its dead
// letters): summed over replicas they count the same rows twice.
var replicaGauges = []string{
	"pulsebus_relay_backlog_rows", "pulsebus_relay_backlog_oldest_age_seconds",
	"pulsebus_relay_parked_rows", "pulsebus_relay_parked_oldest_age_seconds",
	"pulsebus_consumer_dead_letters_stored", "pulsebus_consumer_dead_letter_oldest_age_seconds",
	"pulsebus_consumer_held_events",
}

// aggregationOf returns the aggregation or function whose parentheses
// directly enclose position pos of the PromQL expression expr ("sum" for
// "sum by (x) (m)" and "sum(m)"), or "" at the top level.
func aggregationOf(expr string, pos int) string {
	depth := 0
	for i := pos - 1; i >= 0; i-- {
		switch expr[i] {
		case ')':
			depth++
		case '(':
			if depth > 0 {
				depth--
				continue
			}
			before := strings.TrimRight(expr[:i], " ")
			// Skip a grouping clause: "sum by (handler) (".
			if strings.HasSuffix(before, ")") {
				open := strings.LastIndex(before, "(")
				before = strings.TrimRight(before[:open], " ")
				before = strings.TrimSuffix(strings.TrimSuffix(before, "by"), "without")
				before = strings.TrimRight(before, " ")
			}
			return regexp.MustCompile(`[a-z_]+$`).FindString(before)
		}
	}
	return ""
}

func TestAggregationOf(t *testing.T) {
	for expr, want := range map[string]string{
		"sum(pulsebus_relay_backlog_rows)":                                      "sum",
		"sum by (handler) (pulsebus_consumer_dead_letters_stored)":              "sum",
		"sum(max by (group, handler) (pulsebus_consumer_dead_letters_stored))":  "max",
		"max(pulsebus_relay_backlog_rows{job=\"x\"}) > 0":                       "max",
		"pulsebus_relay_backlog_rows":                                           "",
		"sum without (instance) (rate(pulsebus_relay_backlog_rows[5m]))":        "rate",
		"sum(pulsebus_relay_leader) < 1 or absent(pulsebus_relay_backlog_rows)": "absent",
	} {
		i := strings.Index(expr, "pulsebus_relay_backlog_rows")
		if i < 0 {
			i = strings.Index(expr, "pulsebus_consumer_dead_letters_stored")
		}
		require.Equal(t, want, aggregationOf(expr, i), expr)
	}
}

// No dashboard query or alert sums a gauge every replica reports about the
// same table: max, not sum (sum doubled the backlog with two relays).
func TestDashboardAndAlerts_NoSumOverReplicaGauges(t *testing.T) {
	var queries []string
	for title, qs := range exprs(t, "grafana/dashboards/pulsebus.json") {
		for _, q := range qs {
			queries = append(queries, "panel "+title+": "+q)
		}
	}
	for _, r := range alertRules(t) {
		queries = append(queries, "alert "+r.Alert+": "+r.Expr)
	}
	for _, q := range queries {
		for _, g := range replicaGauges {
			for _, loc := range regexp.MustCompile(`\b`+g+`\b`).FindAllStringIndex(q, -1) {
				agg := aggregationOf(q, loc[0])
				require.NotContains(t, []string{"sum", "count", "avg"}, agg,
					"%s\n%s is reported by every replica: aggregate it with max, not %s", q, g, agg)
			}
		}
	}
}

// Every stat panel sets its thresholds: without, Grafana's default paints a
// value red from 80.
func TestDashboard_StatPanelsHaveThresholds(t *testing.T) {
	raw, err := os.ReadFile("grafana/dashboards/pulsebus.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Type        string `json:"type"`
			Title       string `json:"title"`
			FieldConfig struct {
				Defaults struct {
					Thresholds *struct {
						Steps []any `json:"steps"`
					} `json:"thresholds"`
				} `json:"defaults"`
			} `json:"fieldConfig"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	stats := 0
	for _, p := range dash.Panels {
		if p.Type != "stat" {
			continue
		}
		stats++
		require.NotNil(t, p.FieldConfig.Defaults.Thresholds, "stat panel %q has no thresholds", p.Title)
		require.NotEmpty(t, p.FieldConfig.Defaults.Thresholds.Steps, "stat panel %q", p.Title)
	}
	require.NotZero(t, stats)
}
