package consumercmd_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/edupulse/pulsebus/internal/consumercmd"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

// With no broker, consumer run retries within --connect-timeout and then
// exits 1 naming the brokers, as the relay does.
func TestRun_NoBrokerGivesUpAfterConnectTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	addr := closedAddr(t)
	args := append(b.runArgs("name=a,types=*,log=info"), "--kafka-brokers", addr, "--connect-timeout", "2s")
	start := time.Now()
	_, stderr, err := command(t, args...)
	elapsed := time.Since(start)
	require.Error(t, err)
	require.Equal(t, 1, consumercmd.ExitCode(err))
	require.Contains(t, err.Error(), "connect to Kafka (brokers="+addr+" ")
	require.Contains(t, err.Error(), "no broker answered within --connect-timeout 2s")
	require.Contains(t, err.Error(), "connection refused")
	require.GreaterOrEqual(t, elapsed, 2*time.Second, "retried until the timeout")
	require.Less(t, elapsed, 30*time.Second)
	require.Contains(t, stderr, "waiting for a Kafka broker")
}

// A broker that comes up within --connect-timeout is waited for: the
// consumer then runs and handles what is on the topic.
func TestRun_WaitsForALateBroker(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	addr := closedAddr(t)
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	h := newHook(t)
	args := []string{"run", "--database-url", db.URL, "--kafka-brokers", addr, "--group", "svc", "--topics", "edupulse.events",
		"--handler", "name=a,types=*,webhook=" + h.URL + "/a", "--metrics-addr", "127.0.0.1:0", "--log-format", "json",
		"--session-timeout", "6s", "--connect-timeout", "2m"}
	r := start(t, args)
	testpoll.Until(t, 30*time.Second, 25*time.Millisecond, "the consumer waits for a broker", func() bool {
		return strings.Contains(r.logs.String(), "waiting for a Kafka broker")
	})
	b := &bundle{db: db, kc: testkafka.New(t, kfake.Ports(mustAtoi(t, port))), topic: "edupulse.events", group: "svc"}
	b.kc.CreateTopic(t, b.topic, 1)
	b.produce(t, lessons(t, 2))
	testpoll.Until(t, 60*time.Second, 25*time.Millisecond, "both events handled", func() bool {
		select {
		case err := <-r.done:
			t.Fatalf("the consumer exited: %v\n%s", err, r.logs.String())
		default:
		}
		return len(h.delivered("/a")) == 2
	})
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
