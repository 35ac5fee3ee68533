// Package deploy_test checks the Grafana dashboard and the Prometheus alert
// rules against the metrics PulseBus really exports, so a renamed metric
// cannot leave a panel or an alert silently empty.
package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/dispatch/dispatchprom"
	"github.com/edupulse/pulsebus/pkg/outbox/outboxprom"
)

func TestMain(m *testing.M) { testmain.Run(m, testdb.DropTemplate) }

var metricName = regexp.MustCompile(`\bpulsebus_[a-z0-9_]+`)

// exported returns every series name the relay's and the consumer's
// Prometheus adapters expose once each hook has fired, with the _bucket,
// _sum and _count series of histograms.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	relay, consumer := outboxprom.New(), dispatchprom.New()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(relay))
	require.NoError(t, reg.Register(consumer))
	// The gauges the binaries read from PostgreSQL.
	db := testdb.New(t)
	require.NoError(t, reg.Register(outboxprom.NewParkedGauges(db.Pool, outboxprom.StateOptions{})))
	require.NoError(t, reg.Register(dispatchprom.NewDeadLetterGauges(db.Pool, "g", []string{"h"}, dispatchprom.StateOptions{})))

	relayHooks := relay.Hooks()
	relayHooks.OnPublished("t", 1)
	relayHooks.OnPublishFailed("broker_unavailable")
	relayHooks.OnBatch(10, time.Millisecond)
	relayHooks.OnCommitToAck(time.Millisecond)
	relayHooks.OnBacklog(1, time.Second)
	relayHooks.OnLeader(true)
	relayHooks.OnParked("t", "message_too_large")
	consumerHooks := consumer.Hooks()
	consumerHooks.OnHandled(dispatch.HandledEvent{Handler: "h", Topic: "t", Outcome: dispatch.OutcomeOK, EventTime: time.Now(), Duration: time.Millisecond, Attempts: 1})
	consumerHooks.OnRetry("h", 1, os.ErrClosed)
	consumerHooks.OnDeadLetter(dispatch.DeadLetterEvent{Handler: "h", Topic: "t"})
	consumerHooks.OnRebalance(map[string][]int{"t": {0}})
	consumerHooks.OnLag("h", "t", 0, 3)
	consumerHooks.OnStall(dispatch.StallEvent{Handler: "h", Topic: "t", Stalled: true})
	consumerHooks.OnOffsetReset(dispatch.OffsetResetEvent{Handler: "h", Topic: "t"})

	families, err := reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

// exprs returns every "expr" string in the dashboard, panels nested in rows
// included, by panel title.
func exprs(t *testing.T, path string) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var dash map[string]any
	require.NoError(t, json.Unmarshal(raw, &dash), "dashboard JSON")
	out := map[string][]string{}
	var walk func(v any, title string)
	walk = func(v any, title string) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["title"].(string); ok {
				title = s
			}
			for k, c := range v {
				if s, ok := c.(string); ok && k == "expr" {
					out[title] = append(out[title], s)
					continue
				}
				walk(c, title)
			}
		case []any:
			for _, c := range v {
				walk(c, title)
			}
		}
	}
	walk(dash["panels"], "")
	return out
}

func TestDashboard_EveryQueryNamesAnExportedMetric(t *testing.T) {
	names := exported(t)
	panels := exprs(t, "grafana/dashboards/pulsebus.json")
	require.NotEmpty(t, panels)
	used := map[string]bool{}
	for title, qs := range panels {
		for _, q := range qs {
			found := metricName.FindAllString(q, -1)
			require.NotEmpty(t, found, "panel %q: query %q names no PulseBus metric", title, q)
			for _, m := range found {
				require.True(t, names[m], "panel %q: query %q uses %s, which PulseBus does not export", title, q, m)
				used[m] = true
			}
		}
	}
	// The dashboard covers what the issue asks for: backlog, publish rate,
	// latency, per-handler lag, dead letters, leader.
	for _, m := range []string{"pulsebus_relay_backlog_rows", "pulsebus_relay_events_published_total",
		"pulsebus_relay_commit_to_ack_seconds_bucket", "pulsebus_consumer_lag",
		"pulsebus_consumer_dead_letters_total", "pulsebus_relay_leader",
		"pulsebus_relay_parked_rows", "pulsebus_consumer_dead_letters_stored",
		"pulsebus_consumer_dead_letter_oldest_age_seconds"} {
		require.True(t, used[m], "no panel shows %s", m)
	}
}

func TestAlerts_EveryRuleNamesAnExportedMetric(t *testing.T) {
	names := exported(t)
	for _, r := range alertRules(t) {
		found := metricName.FindAllString(r.Expr, -1)
		require.NotEmpty(t, found, "alert %s: expression %q names no PulseBus metric", r.Alert, r.Expr)
		for _, m := range found {
			require.True(t, names[m], "alert %s: expression %q uses %s, which PulseBus does not export", r.Alert, r.Expr, m)
		}
	}
	var all []string
	for n := range names {
		all = append(all, n)
	}
	slices.Sort(all)
	t.Logf("exported: %v", all)
}

// alertRules reads the rules of prometheus/alerts.yml.
func alertRules(t *testing.T) []alertRule {
	t.Helper()
	raw, err := os.ReadFile("prometheus/alerts.yml")
	require.NoError(t, err)
	var file struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &file))
	var rules []alertRule
	for _, g := range file.Groups {
		rules = append(rules, g.Rules...)
	}
	require.NotEmpty(t, rules)
	return rules
}

type alertRule struct {
	Alert string `yaml:"alert"`
	Expr  string `yaml:"expr"`
}

// testFileName is the promtool test file of an alert:
// PulseBusOutboxRowsParked -> prometheus/tests/outbox_rows_parked.test.yml.
func testFileName(alert string) string {
	name := strings.TrimPrefix(alert, "PulseBus")
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return "prometheus/tests/" + b.String() + ".test.yml"
}

// Every alert rule has its own promtool test file, which loads the rules,
// tests only that alert, and expects it both firing and silent. (make lint
// and make compose-check run them with promtool test rules.)
func TestAlerts_EveryRuleHasAPromtoolTest(t *testing.T) {
	files, err := filepath.Glob("prometheus/tests/*.test.yml")
	require.NoError(t, err)
	want := map[string]bool{}
	for _, r := range alertRules(t) {
		path := testFileName(r.Alert)
		want[path] = true
		raw, err := os.ReadFile(path)
		require.NoError(t, err, "alert %s has no promtool test file", r.Alert)
		var file struct {
			RuleFiles []string `yaml:"rule_files"`
			Tests     []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		require.NoError(t, yaml.Unmarshal(raw, &file), path)
		require.Equal(t, []string{"../alerts.yml"}, file.RuleFiles, path)
		var fires, silent bool
		for _, tc := range file.Tests {
			for _, a := range tc.AlertRuleTest {
				require.Equal(t, r.Alert, a.Alertname, "%s tests another alert", path)
				fires = fires || len(a.ExpAlerts) > 0
				silent = silent || len(a.ExpAlerts) == 0
			}
		}
		require.True(t, fires, "%s never expects %s firing", path, r.Alert)
		require.True(t, silent, "%s never expects %s silent", path, r.Alert)
	}
	for _, f := range files {
		require.True(t, want[f], "%s tests no alert of alerts.yml", f)
	}
}

// No alert is built on a counter whose series are born at their first
// increment (label values unknown at start: a topic): increase() cannot see
// a series born at 1, so the first event would never alert. Alerts on
// parked rows and dead letters use the gauges read from PostgreSQL.
func TestAlerts_NotOnCountersBornAtOne(t *testing.T) {
	for _, r := range alertRules(t) {
		for _, m := range []string{"pulsebus_relay_parked_total", "pulsebus_relay_events_published_total"} {
			require.NotContains(t, r.Expr, m, "alert %s", r.Alert)
		}
	}
}
