// Package deploy_test checks the Grafana dashboard and the Prometheus alert
// rules against the metrics PulseBus really exports, so a renamed metric
// cannot leave a panel or an alert silently empty.
package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/dispatch/dispatchprom"
	"github.com/edupulse/pulsebus/pkg/outbox/outboxprom"
)

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

	relay.Published("t", 1)
	relay.PublishError("broker_unavailable")
	relay.Batch(10, time.Millisecond)
	relay.CommitToAck(time.Millisecond)
	relay.Backlog(1, time.Second)
	relay.Leader(true)
	relay.Parked("t", "message_too_large")
	consumer.OnHandled(dispatch.HandledEvent{Handler: "h", Topic: "t", Outcome: dispatch.OutcomeOK, EventTime: time.Now(), Duration: time.Millisecond, Attempts: 1})
	consumer.OnRetry("h", 1, os.ErrClosed)
	consumer.OnDeadLetter(dispatch.DeadLetterEvent{Handler: "h", Topic: "t"})
	consumer.OnRebalance(map[string][]int{"t": {0}})
	consumer.OnLag("h", "t", 0, 3)
	consumer.OnStall(dispatch.StallEvent{Handler: "h", Topic: "t", Stalled: true})
	consumer.OnOffsetReset(dispatch.OffsetResetEvent{Handler: "h", Topic: "t"})

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
		"pulsebus_consumer_dead_letters_total", "pulsebus_relay_leader"} {
		require.True(t, used[m], "no panel shows %s", m)
	}
}

func TestAlerts_EveryRuleNamesAnExportedMetric(t *testing.T) {
	names := exported(t)
	raw, err := os.ReadFile("prometheus/alerts.yml")
	require.NoError(t, err)
	exprLine := regexp.MustCompile(`(?m)^\s*expr:\s*(.+)$`)
	rules := exprLine.FindAllStringSubmatch(string(raw), -1)
	require.NotEmpty(t, rules)
	for _, r := range rules {
		found := metricName.FindAllString(r[1], -1)
		require.NotEmpty(t, found, "alert expression %q names no PulseBus metric", r[1])
		for _, m := range found {
			require.True(t, names[m], "alert expression %q uses %s, which PulseBus does not export", r[1], m)
		}
	}
	var all []string
	for n := range names {
		all = append(all, n)
	}
	slices.Sort(all)
	t.Logf("exported: %v", all)
}
