package consumercmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/consumercmd"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// A webhook answering 422 parks its events at once; a message that is not
// an envelope is dead-lettered with its decode error (for both handlers).
// dead-letters list shows them; after the endpoint is fixed, redrive by id
// and by handler delivers them and deletes the rows, while the undecodable
// one fails again and stays.
func TestDeadLetters_ListAndRedrive(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	h := newHook(t)
	h.setStatus(func(*http.Request, int) int { return http.StatusUnprocessableEntity })
	envs := lessons(t, 4)
	garbage := kafka.Message{Key: []byte("k"), Value: []byte("not an envelope"), Headers: []kafka.Header{{Key: "ce_type", Value: []byte("lesson.published")}}}
	b.produce(t, envs, garbage)

	spec := "name=hook,types=lesson.*,webhook=" + h.URL + "/in"
	r := start(t, b.runArgs(spec, "name=audit,types=*,log=debug"))
	base := r.metricsURL()
	testpoll.Until(t, 60*time.Second, 25*time.Millisecond, "5 dead letters for hook, 1 for audit", func() bool {
		dls, err := (&dispatch.Admin{Pool: b.db.Pool}).ListDeadLetters(context.Background(), dispatch.DeadLetterFilter{Group: b.group})
		require.NoError(t, err)
		return len(dls) == 6
	})
	testpoll.Until(t, 10*time.Second, 25*time.Millisecond, "dead letter metrics", func() bool {
		return scrape(t, base, `pulsebus_consumer_dead_letters_total{handler="hook"}`) == 5
	})
	require.Equal(t, 5.0, scrape(t, base, `pulsebus_consumer_events_handled_total{handler="hook",outcome="dead_lettered"}`))
	require.Zero(t, scrape(t, base, `pulsebus_consumer_retries_total{handler="hook"}`), "a 422 is not retried")
	require.Len(t, h.requests(), 4, "one attempt per event")
	require.NoError(t, r.stop())

	// list: a table, then JSON with the whole message.
	out, _, err := command(t, append([]string{"dead-letters", "list"}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Equal(t, 7, strings.Count(out, "\n"), out) // header + 6 rows
	require.Equal(t, 4, strings.Count(out, "422 Unprocessable Entity"), out)
	require.Contains(t, out, "rejected with 422")
	require.Contains(t, out, "ce_specversion")

	out, _, err = command(t, append([]string{"dead-letters", "list", "--json", "--handler-name", "hook"}, b.dbOnly()...)...)
	require.NoError(t, err)
	var rows []struct {
		ID        int64             `json:"id"`
		Handler   string            `json:"handler"`
		EventID   string            `json:"event_id"`
		EventType string            `json:"event_type"`
		Headers   map[string]string `json:"headers"`
		Value     *string           `json:"value"`
		Error     string            `json:"error"`
		Attempts  int               `json:"attempts"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	require.Len(t, rows, 5)
	byEvent := map[string]int64{}
	var garbageID int64
	for _, row := range rows {
		require.Equal(t, "hook", row.Handler)
		require.Equal(t, "lesson.published", row.EventType)
		if row.EventID == "" {
			garbageID = row.ID
			require.Equal(t, "not an envelope", *row.Value)
			require.Contains(t, row.Error, "ce_specversion")
			require.Equal(t, 0, row.Attempts)
			continue
		}
		require.Equal(t, 1, row.Attempts)
		require.Equal(t, "school-1", row.Headers["ce_tenant"])
		byEvent[row.EventID] = row.ID
	}
	require.Len(t, byEvent, 4)
	require.NotZero(t, garbageID)

	// The limit is honoured.
	out, _, err = command(t, append([]string{"dead-letters", "list", "--limit", "2"}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Contains(t, out, "first 2 shown")

	// Redrive of a row whose handler is not configured: refused, row untouched.
	_, _, err = command(t, append([]string{"dead-letters", "redrive", "--id", fmt.Sprint(byEvent[envs[0].ID]),
		"--handler", "name=other,types=*,log=info"}, b.dbOnly()...)...)
	require.ErrorContains(t, err, "belongs to handler hook, which is not configured")
	require.Equal(t, 2, consumercmd.ExitCode(err))

	// The endpoint is fixed. Redrive one by id.
	h.setStatus(nil)
	first := envs[0].ID
	out, _, err = command(t, append([]string{"dead-letters", "redrive", "--id", fmt.Sprint(byEvent[first]), "--handler", spec}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Contains(t, out, "redriven 1, failed 0")
	require.Equal(t, map[string]int{first: 1}, h.delivered("/in"))

	// Then the rest of the handler's: 3 delivered, the garbage fails again.
	out, _, err = command(t, append([]string{"dead-letters", "redrive", "--handler-name", "hook", "--handler", spec}, b.dbOnly()...)...)
	require.Error(t, err)
	require.Equal(t, 1, consumercmd.ExitCode(err))
	require.Contains(t, out, "redriven 3, failed 1")
	require.Contains(t, out, fmt.Sprintf("failed again: id %d:", garbageID))
	delivered := h.delivered("/in")
	require.Len(t, delivered, 4)
	for _, e := range envs {
		require.Equal(t, 1, delivered[e.ID], "event %s", e.ID)
	}
	dls, err := (&dispatch.Admin{Pool: b.db.Pool}).ListDeadLetters(context.Background(), dispatch.DeadLetterFilter{Group: b.group, Handler: "hook"})
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, garbageID, dls[0].ID)
	require.Equal(t, 1, dls[0].Attempts, "the failed redrive counted an attempt")
}

// replay while the consumer runs: the replayed handler gets every event
// again, the other handler none.
func TestReplay_LiveRedelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	h := newHook(t)
	envs := lessons(t, 20)
	b.produce(t, envs)
	r := start(t, b.runArgs(
		"name=a,types=*,webhook="+h.URL+"/a",
		"name=b,types=*,webhook="+h.URL+"/b",
	))
	all := func(path string, n int) func() bool {
		return func() bool {
			d := h.delivered(path)
			if len(d) != len(envs) {
				return false
			}
			for _, c := range d {
				if c != n {
					return false
				}
			}
			return true
		}
	}
	testpoll.Until(t, 60*time.Second, 25*time.Millisecond, "both handlers got every event", func() bool { return all("/a", 1)() && all("/b", 1)() })
	ends := b.kc.EndOffsets(t, b.topic)
	testpoll.Until(t, 10*time.Second, 25*time.Millisecond, "offsets saved", func() bool {
		offs, err := (&dispatch.Admin{Pool: b.db.Pool}).ListOffsets(context.Background(), b.group)
		require.NoError(t, err)
		for _, o := range offs {
			if o.NextOffset != ends[int32(o.Partition)] {
				return false
			}
		}
		return len(offs) == 4
	})

	out, _, err := command(t, append([]string{"replay", "--handler-name", "a", "--to", "earliest"}, b.admin()...)...)
	require.NoError(t, err)
	for p, end := range ends {
		require.Regexp(t, fmt.Sprintf(`(?m)^a\s+%s\s+%d\s+%d\s+0$`, regexp.QuoteMeta(b.topic), p, end), out)
	}
	require.Contains(t, out, "replayed a of group svc to earliest on 2 partition(s)")

	testpoll.Until(t, 60*time.Second, 25*time.Millisecond, "handler a got every event again", all("/a", 2))
	testpoll.Until(t, 10*time.Second, 25*time.Millisecond, "a's offsets back at the end", func() bool {
		offs, err := (&dispatch.Admin{Pool: b.db.Pool}).ListOffsets(context.Background(), b.group)
		require.NoError(t, err)
		for _, o := range offs {
			if o.Handler == "a" && o.NextOffset != ends[int32(o.Partition)] {
				return false
			}
		}
		return true
	})
	require.True(t, all("/b", 1)(), "handler b must not see the replay")
	require.NoError(t, r.stop())
	require.True(t, all("/b", 1)())

	// The other target forms, with the consumer stopped.
	out, _, err = command(t, append([]string{"replay", "--handler-name", "b", "--topic", b.topic, "--partition", "1", "--to", "1"}, b.admin()...)...)
	require.NoError(t, err)
	require.Regexp(t, fmt.Sprintf(`(?m)^b\s+%s\s+1\s+%d\s+1$`, regexp.QuoteMeta(b.topic), ends[1]), out)
	require.NotContains(t, out, "\nb  "+b.topic+"  0")
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	out, _, err = command(t, append([]string{"replay", "--handler-name", "b", "--topic", b.topic, "--partition", "0", "--to", past}, b.admin()...)...)
	require.NoError(t, err)
	require.Regexp(t, fmt.Sprintf(`(?m)^b\s+%s\s+0\s+%d\s+0$`, regexp.QuoteMeta(b.topic), ends[0]), out)
	out, _, err = command(t, append([]string{"replay", "--handler-name", "b", "--to", "latest"}, b.admin()...)...)
	require.NoError(t, err)
	require.Regexp(t, fmt.Sprintf(`(?m)^b\s+%s\s+1\s+1\s+%d$`, regexp.QuoteMeta(b.topic), ends[1]), out)

	// A handler with no offsets needs a topic.
	_, _, err = command(t, append([]string{"replay", "--handler-name", "typo", "--to", "earliest"}, b.admin()...)...)
	require.ErrorContains(t, err, "group svc has no handler typo (its handlers: a, b)")
}
