package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

// prometheusConfig scrapes the relay and the consumer every second and
// evaluates deploy/prometheus/alerts.yml, unchanged, every second. The two
// alerts under test have no "for:", so they fire at the first evaluation
// that sees the condition; no test copy of the rules is needed.
const prometheusConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: pulsebus-relay
    static_configs: [{targets: [%q]}]
  - job_name: pulsebus-consumer
    static_configs: [{targets: [%q]}]
`

// The relay and consumer binaries scraped by a real Prometheus server with
// the deploy/prometheus alert rules: neither PulseBusOutboxRowsParked nor
// PulseBusDeadLettersStored fires while all is well; a parked row and a
// dead letter make both fire (the first of each, with the series at 0
// before); every rule evaluates without error; every query of the Grafana
// dashboard returns data; and once the operator deleted the parked row and
// redrove the dead letter, both alerts resolve.
func TestPrometheus_AlertsFireAndDashboardQueriesReturnData(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil && os.Getenv("PULSEBUS_REQUIRE_PROMETHEUS") != "" {
		t.Fatalf("PULSEBUS_REQUIRE_PROMETHEUS is set (as .ci/run sets it) but there is no prometheus binary: %v", err)
	}
	if err != nil {
		t.Skip("prometheus is not installed (Debian: apt-get install prometheus; .ci/run installs it, so CI runs this test)")
	}
	db := testdb.New(t)
	kc := testkafka.New(t)
	const topic, group = "edupulse.events", "edupulse-prom"
	kc.CreateTopic(t, topic, 2)
	var crmFixed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/crm" && !crmFixed.Load() {
			w.WriteHeader(http.StatusUnprocessableEntity) // parks the event at once
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)

	relayBin := procharness.Build(t, "github.com/edupulse/pulsebus/cmd/relay")
	consumerBin := procharness.Build(t, "github.com/edupulse/pulsebus/cmd/consumer")
	common := []string{"DATABASE_URL=" + db.URL, "KAFKA_BROKERS=" + strings.Join(kc.Addrs, ","), "LOG_FORMAT=json"}
	relayAddr, consumerAddr, promAddr := procharness.FreeAddr(t), procharness.FreeAddr(t), procharness.FreeAddr(t)
	relay := procharness.Start(t, relayBin, procharness.Options{Name: "relay", HTTPAddr: relayAddr, Args: []string{"run"},
		Env: append([]string{"METRICS_ADDR=" + relayAddr, "RELAY_POLL_INTERVAL=200ms", "RELAY_BACKLOG_INTERVAL=200ms",
			"RELAY_MAX_MESSAGE_BYTES=20000"}, common...)})
	consumer := procharness.Start(t, consumerBin, procharness.Options{Name: "consumer", HTTPAddr: consumerAddr, Args: []string{"run"},
		Env: append([]string{"METRICS_ADDR=" + consumerAddr, "CONSUMER_GROUP=" + group, "CONSUMER_TOPICS=" + topic,
			"CONSUMER_FLUSH_INTERVAL=100ms",
			"CONSUMER_HANDLERS=name=search,types=lesson.*,webhook=" + srv.URL + "/search" +
				";name=crm,types=payment.processed,webhook=" + srv.URL + "/crm" +
				";name=audit,types=*,log=debug"}, common...)})
	require.NoError(t, relay.WaitHTTP("/readyz", 60*time.Second))
	require.NoError(t, consumer.WaitHTTP("/readyz", 60*time.Second))

	rules, err := filepath.Abs("../../deploy/prometheus/alerts.yml")
	require.NoError(t, err)
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(config, fmt.Appendf(nil, prometheusConfig, rules, relayAddr, consumerAddr), 0o600))
	prom := procharness.Start(t, promBin, procharness.Options{Name: "prometheus", HTTPAddr: promAddr,
		Args: []string{"--config.file=" + config, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + promAddr, "--log.level=warn"}})
	require.NoError(t, prom.WaitHTTP("/-/ready", 60*time.Second))
	api := promAPI{t: t, prom: prom}

	// Both targets scraped, every rule evaluated without error, and the
	// two alerts quiet while nothing is parked.
	testpoll.Until(t, 60*time.Second, 100*time.Millisecond, "both targets up", func() bool {
		up := api.query(`up == 1`)
		return len(up) == 2
	})
	testpoll.Until(t, 60*time.Second, 100*time.Millisecond, "every rule evaluated once", func() bool {
		return api.rulesEvaluated()
	})
	testpoll.Until(t, 30*time.Second, 100*time.Millisecond, "the parked and dead-letter gauges scraped at 0", func() bool {
		return len(api.query(`max(pulsebus_relay_parked_rows) == 0`)) == 1 &&
			len(api.query(`max by (group, handler) (pulsebus_consumer_dead_letters_stored{handler="crm"}) == 0`)) == 1
	})
	require.Empty(t, api.alerts("PulseBusOutboxRowsParked"), "no parked rows yet")
	require.Empty(t, api.alerts("PulseBusDeadLettersStored"), "no dead letters yet")

	// Events through pulsebus.publish: ordinary ones, a payment the crm
	// endpoint refuses for good (a dead letter), and one too large for
	// --max-message-bytes (a parked row).
	ctx := context.Background()
	publish := func(key, typ, payload string) {
		_, err := db.Pool.Exec(ctx, `SELECT pulsebus.publish($1, $2, $3, $4::jsonb)`, topic, key, typ, payload)
		require.NoError(t, err)
	}
	for i := range 10 {
		publish(fmt.Sprintf("l-%d", i), "lesson.published", fmt.Sprintf(`{"lesson_id": "l-%d"}`, i))
	}
	publish("p-1", "payment.processed", `{"payment_id": "p-1"}`)
	publish("big", "lesson.published", `{"lesson_id": "big", "pad": "`+strings.Repeat("x", 30_000)+`"}`)

	var parked, dead []promAlert
	testpoll.Until(t, 90*time.Second, 200*time.Millisecond, "PulseBusOutboxRowsParked and PulseBusDeadLettersStored firing", func() bool {
		parked, dead = api.alerts("PulseBusOutboxRowsParked"), api.alerts("PulseBusDeadLettersStored")
		return len(parked) == 1 && parked[0].State == "firing" && len(dead) == 1 && dead[0].State == "firing"
	})
	require.Equal(t, "warning", parked[0].Labels["severity"])
	require.Equal(t, "1e+00", parked[0].Value)
	require.Equal(t, map[string]string{"alertname": "PulseBusDeadLettersStored", "group": group, "handler": "crm", "severity": "warning"}, dead[0].Labels)
	require.Equal(t, "1e+00", dead[0].Value)
	require.Contains(t, dead[0].Annotations["description"], "consumer dead-letters list --group "+group+" --handler-name crm")
	require.True(t, api.rulesEvaluated(), "every rule still evaluates without error")

	// Every panel query of the dashboard returns data.
	queries := dashboardQueries(t)
	require.NotEmpty(t, queries)
	for _, q := range queries {
		testpoll.Until(t, 90*time.Second, 250*time.Millisecond, "dashboard query returns data: "+q.panel+": "+q.expr, func() bool {
			return len(api.query(q.expr)) > 0
		})
	}

	// The operator's fix: the parked row deleted, the dead letter redriven
	// to the repaired endpoint. Both alerts resolve.
	command(t, relayBin, common, "parked", "delete", "--topic", topic)
	crmFixed.Store(true)
	out := command(t, consumerBin, append([]string{"CONSUMER_HANDLERS=name=crm,types=payment.processed,webhook=" + srv.URL + "/crm"}, common...),
		"dead-letters", "redrive", "--group", group, "--handler-name", "crm")
	require.Contains(t, out, "redriven 1, failed 0")
	testpoll.Until(t, 90*time.Second, 200*time.Millisecond, "both alerts resolved", func() bool {
		return len(api.alerts("PulseBusOutboxRowsParked")) == 0 && len(api.alerts("PulseBusDeadLettersStored")) == 0
	})
}

// promAPI queries a Prometheus server's HTTP API.
type promAPI struct {
	t    *testing.T
	prom *procharness.Process
}

// get fetches path and decodes the "data" of a successful answer into v.
func (a promAPI) get(path string, v any) {
	a.t.Helper()
	code, body, err := a.prom.Get(path)
	require.NoError(a.t, err)
	require.Equal(a.t, http.StatusOK, code, body)
	var resp struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	require.NoError(a.t, json.Unmarshal([]byte(body), &resp), body)
	require.Equal(a.t, "success", resp.Status, resp.Error)
	require.NoError(a.t, json.Unmarshal(resp.Data, v), body)
}

// query runs an instant query and returns its samples' labels.
func (a promAPI) query(expr string) []map[string]string {
	a.t.Helper()
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
		} `json:"result"`
	}
	a.get("/api/v1/query?query="+url.QueryEscape(expr), &data)
	require.Equal(a.t, "vector", data.ResultType, expr)
	out := make([]map[string]string, len(data.Result))
	for i, r := range data.Result {
		out[i] = r.Metric
	}
	return out
}

// promAlert is one alert of /api/v1/alerts.
type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	Value       string            `json:"value"`
}

// alerts returns the active (pending or firing) alerts named name.
func (a promAPI) alerts(name string) []promAlert {
	a.t.Helper()
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	a.get("/api/v1/alerts", &data)
	var out []promAlert
	for _, al := range data.Alerts {
		if al.Labels["alertname"] == name {
			out = append(out, al)
		}
	}
	return out
}

// rulesEvaluated reports whether every rule of the loaded files has been
// evaluated, and fails the test if one failed to evaluate.
func (a promAPI) rulesEvaluated() bool {
	a.t.Helper()
	var data struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	a.get("/api/v1/rules", &data)
	n := 0
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			require.NotEqual(a.t, "err", r.Health, "rule %s: %s", r.Name, r.LastError)
			if r.Health != "ok" {
				return false
			}
			n++
		}
	}
	require.NotZero(a.t, n, "no rules loaded")
	return true
}

// dashboardQuery is one target of a Grafana panel.
type dashboardQuery struct{ panel, expr string }

// dashboardQueries returns every panel target of the PulseBus dashboard.
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/grafana/dashboards/pulsebus.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(raw, &dash))
	var out []dashboardQuery
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			require.NotContains(t, tg.Expr, "$", "panel %s: a dashboard variable this test cannot fill in", p.Title)
			out = append(out, dashboardQuery{panel: p.Title, expr: tg.Expr})
		}
	}
	return out
}
