package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

func TestMain(m *testing.M) { testmain.Run(m, procharness.RemoveBuilds, testdb.DropTemplate) }

// receiver is the HTTP service behind the consumer's webhook handlers: it
// records the CloudEvents it accepts. /search accepts everything; /crm
// answers 503 to an event's first delivery and 422 to the next, so the
// consumer retries once, then parks the event.
type receiver struct {
	mu       sync.Mutex
	search   map[string]http.Header // ce-id → headers
	bodies   map[string]string
	crmTries map[string]int
}

func newReceiver() *receiver {
	return &receiver{search: map[string]http.Header{}, bodies: map[string]string{}, crmTries: map[string]int{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("ce-id")
	rc.mu.Lock()
	defer rc.mu.Unlock()
	switch r.URL.Path {
	case "/search":
		rc.search[id] = r.Header.Clone()
		rc.bodies[id] = string(body)
	case "/crm":
		rc.crmTries[id]++
		if rc.crmTries[id] == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprint(w, `{"error":"unknown customer"}`)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) searchCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.search)
}

// Events written through pulsebus.publish reach a webhook as CloudEvents
// through the relay and consumer binaries; a refused webhook ends in the dead
// letters, an oversized row is parked, a rolled-back transaction publishes
// nothing, both processes report it all on /metrics and exit 0 on SIGTERM.
// Everyone logs in as a role of their own, none a superuser, each a member
// of one of the group roles the schema ships: the producer of
// pulsebus_producer, the relay of pulsebus_relay, the consumer of
// pulsebus_consumer and the operator's commands of pulsebus_admin.
func TestEndToEnd_SQLFunctionToWebhook(t *testing.T) {
	db := testdb.New(t)
	kc := testkafka.New(t)
	const topic = "edupulse.events"
	kc.CreateTopic(t, topic, 3)
	rc := newReceiver()
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)

	relayBin := procharness.Build(t, "github.com/edupulse/pulsebus/cmd/relay")
	consumerBin := procharness.Build(t, "github.com/edupulse/pulsebus/cmd/consumer")
	common := []string{"KAFKA_BROKERS=" + strings.Join(kc.Addrs, ","), "LOG_FORMAT=json"}
	relayDB := []string{"DATABASE_URL=" + db.LoginAs(t, "pulsebus_relay")}
	consumerDB := []string{"DATABASE_URL=" + db.LoginAs(t, "pulsebus_consumer")}
	adminDB := []string{"DATABASE_URL=" + db.LoginAs(t, "pulsebus_admin")}
	ctx := context.Background()
	producer, err := pgxpool.New(ctx, db.LoginAs(t, "pulsebus_producer"))
	require.NoError(t, err)
	t.Cleanup(producer.Close)

	relayAddr := procharness.FreeAddr(t)
	relay := procharness.Start(t, relayBin, procharness.Options{Name: "relay", HTTPAddr: relayAddr,
		Args: []string{"run"},
		Env: append([]string{"METRICS_ADDR=" + relayAddr, "RELAY_POLL_INTERVAL=200ms", "RELAY_BACKLOG_INTERVAL=200ms",
			"RELAY_MAX_MESSAGE_BYTES=20000"}, append(relayDB, common...)...)})
	consumerAddr := procharness.FreeAddr(t)
	consumer := procharness.Start(t, consumerBin, procharness.Options{Name: "consumer", HTTPAddr: consumerAddr,
		Args: []string{"run"},
		Env: append([]string{"METRICS_ADDR=" + consumerAddr, "CONSUMER_GROUP=edupulse-e2e", "CONSUMER_TOPICS=" + topic,
			"CONSUMER_RETRY_INITIAL_INTERVAL=10ms", "CONSUMER_FLUSH_INTERVAL=100ms",
			"CONSUMER_HANDLERS=name=search,types=lesson.*|quiz.submitted,webhook=" + srv.URL + "/search" +
				";name=crm,types=payment.processed,webhook=" + srv.URL + "/crm,max-attempts=5" +
				";name=audit,types=*,log=debug"}, append(consumerDB, common...)...)})
	require.NoError(t, relay.WaitHTTP("/readyz", 30*time.Second))
	require.NoError(t, consumer.WaitHTTP("/readyz", 30*time.Second))

	// Producers in "another language": plain SQL in transactions.
	const lessons, quizzes, payments, badges = 60, 60, 20, 20
	publish := func(tx pgx.Tx, key, typ string, payload string) {
		_, err := tx.Exec(ctx, `SELECT pulsebus.publish($1, $2, $3, $4::jsonb, '{"tenant": "acme"}', 'lesson-service')`, topic, key, typ, payload)
		require.NoError(t, err)
	}
	for i := range lessons + quizzes + payments + badges {
		tx, err := producer.Begin(ctx)
		require.NoError(t, err)
		key := fmt.Sprintf("agg-%d", i%7)
		switch {
		case i < lessons:
			publish(tx, key, "lesson.published", fmt.Sprintf(`{"lesson_id": "l-%d", "title": "Lesson %d"}`, i, i))
		case i < lessons+quizzes:
			publish(tx, key, "quiz.submitted", fmt.Sprintf(`{"quiz_id": "q-%d", "score_raw": 0.5}`, i))
		case i < lessons+quizzes+payments:
			publish(tx, key, "payment.processed", fmt.Sprintf(`{"payment_id": "p-%d", "amount_cents": 1200}`, i))
		default:
			publish(tx, key, "badge.awarded", fmt.Sprintf(`{"badge_id": "b-%d"}`, i))
		}
		require.NoError(t, tx.Commit(ctx))
	}
	total := lessons + quizzes + payments + badges

	// A rolled-back transaction publishes nothing; an oversized event is
	// parked by the relay, and the stream keeps flowing around it.
	tx, err := producer.Begin(ctx)
	require.NoError(t, err)
	publish(tx, "ghost", "lesson.published", `{"lesson_id": "never"}`)
	require.NoError(t, tx.Rollback(ctx))
	tx, err = producer.Begin(ctx)
	require.NoError(t, err)
	publish(tx, "big", "lesson.published", `{"lesson_id": "big", "pad": "`+strings.Repeat("x", 30_000)+`"}`)
	publish(tx, "after-big", "lesson.published", `{"lesson_id": "after-big", "title": "still flows"}`)
	require.NoError(t, tx.Commit(ctx))
	total++ // after-big

	testpoll.Until(t, 60*time.Second, 50*time.Millisecond, "all search events delivered", func() bool { return rc.searchCount() == lessons+quizzes+1 })
	testpoll.Until(t, 60*time.Second, 50*time.Millisecond, "consumer metrics complete", func() bool {
		m, err := consumer.Metrics()
		return err == nil &&
			m.Value("pulsebus_consumer_events_handled_total", "handler", "audit") == float64(total) &&
			m.Value("pulsebus_consumer_dead_letters_total", "handler", "crm") == payments
	})

	// What the webhook received is a CloudEvent in binary mode.
	rc.mu.Lock()
	for id, h := range rc.search {
		require.Equal(t, "1.0", h.Get("ce-specversion"), id)
		require.Contains(t, []string{"lesson.published", "quiz.submitted"}, h.Get("ce-type"))
		require.Equal(t, "lesson-service", h.Get("ce-source"))
		require.Equal(t, "acme", h.Get("ce-tenant"))
		require.Equal(t, "application/json", h.Get("Content-Type"))
		_, err := time.Parse(time.RFC3339Nano, h.Get("ce-time"))
		require.NoError(t, err, "ce-time")
		var body map[string]any
		require.NoError(t, json.Unmarshal([]byte(rc.bodies[id]), &body), "body of %s", id)
		require.NotEqual(t, "never", body["lesson_id"], "a rolled-back event was delivered")
		require.NotEqual(t, "big", body["lesson_id"], "the oversized event was delivered")
	}
	for id, n := range rc.crmTries {
		require.Equal(t, 2, n, "crm event %s: one retry after 503, then parked on 422", id)
	}
	rc.mu.Unlock()

	rm, err := relay.Metrics()
	require.NoError(t, err)
	require.Equal(t, float64(total), rm.Value("pulsebus_relay_events_published_total", "topic", topic))
	require.Equal(t, float64(1), rm.Value("pulsebus_relay_leader"))
	require.Equal(t, float64(1), rm.Value("pulsebus_relay_parked_total", "reason", "message_too_large"))
	require.Equal(t, float64(total), rm.Value("pulsebus_relay_commit_to_ack_seconds"))
	cm, err := consumer.Metrics()
	require.NoError(t, err)
	require.Equal(t, float64(payments), cm.Value("pulsebus_consumer_retries_total", "handler", "crm"))
	require.Equal(t, float64(lessons+quizzes+1), cm.Value("pulsebus_consumer_events_handled_total", "handler", "search", "outcome", "ok"))
	require.GreaterOrEqual(t, cm.Value("pulsebus_consumer_rebalances_total"), float64(1))

	// Every metric the dashboard and the alerts query is exported by one of
	// the two running binaries.
	for _, name := range dashboardMetrics(t) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		_, inRelay := rm[base]
		_, inConsumer := cm[base]
		require.True(t, inRelay || inConsumer, "the dashboard queries %s, which neither binary exports", name)
	}

	// The operator's view: relay status and the dead-letter listing.
	status := command(t, relayBin, append(adminDB, common...), "status")
	require.Regexp(t, `(?m)^backlog:\s+0 rows`, status)
	require.Regexp(t, `(?m)^parked:\s+1 rows?`, status)
	dead := command(t, consumerBin, append(adminDB, common...), "dead-letters", "list", "--group", "edupulse-e2e")
	require.Equal(t, payments, strings.Count(dead, "payment.processed"), dead)
	require.Contains(t, dead, "422")
	require.NotContains(t, dead, "/crm", "a webhook URL's path may hold a token: errors show scheme://host/... only")
	parked := command(t, relayBin, append(adminDB, common...), "parked", "list")
	require.Contains(t, parked, "message_too_large", parked)
	deleted := command(t, relayBin, append(adminDB, common...), "parked", "delete", "--topic", topic)
	require.Contains(t, deleted, "message_too_large", deleted)

	// SIGTERM: both drain and exit 0 within 10 s.
	require.NoError(t, consumer.Signal(syscall.SIGTERM))
	require.NoError(t, relay.Signal(syscall.SIGTERM))
	code, err := consumer.Wait(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 0, code, "consumer exit code")
	code, err = relay.Wait(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 0, code, "relay exit code")
	var outboxLeft int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pulsebus.outbox`).Scan(&outboxLeft))
	require.Zero(t, outboxLeft)
}

// command runs a one-shot subcommand and returns its stdout.
func command(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s %v: %s", bin, args, stderr.String())
	return string(out)
}

func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	var names []string
	for _, path := range []string{"../../deploy/grafana/dashboards/pulsebus.json", "../../deploy/prometheus/alerts.yml"} {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		for _, m := range regexp.MustCompile(`\bpulsebus_[a-z0-9_]+`).FindAllString(string(raw), -1) {
			if !seen[m] {
				seen[m] = true
				names = append(names, m)
			}
		}
	}
	require.NotEmpty(t, names)
	return names
}
