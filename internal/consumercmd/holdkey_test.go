package consumercmd_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/examples/demo"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// keyed builds one lesson.published envelope per key, in that order.
func keyed(t *testing.T, keys ...string) []envelope.Envelope {
	t.Helper()
	out := make([]envelope.Envelope, len(keys))
	for i, k := range keys {
		ev := demo.LessonPublished{LessonID: uuid.New(), TeacherID: uuid.New(), Title: fmt.Sprintf("Lesson %d", i),
			PublishedAt: time.Now().UTC().Truncate(time.Microsecond)}
		env, err := envelope.New("lessons-api", ev, envelope.WithKey(k))
		require.NoError(t, err)
		out[i] = env
	}
	return out
}

// deliveredInOrder returns the ids of the events answered 2xx on path, in
// the order they arrived.
func (h *hook) deliveredInOrder(path string) []string {
	var out []string
	for _, d := range h.requests() {
		if d.path == path && d.status < 300 {
			out = append(out, d.header.Get("ce-id"))
		}
	}
	return out
}

// only keeps the ids of ids that are in want, in order.
func only(ids []string, want ...envelope.Envelope) []string {
	keep := map[string]bool{}
	for _, e := range want {
		keep[e.ID] = true
	}
	var out []string
	for _, id := range ids {
		if keep[id] {
			out = append(out, id)
		}
	}
	return out
}

func ids(envs ...envelope.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.ID
	}
	return out
}

// A webhook handler with on-failure=hold-key whose endpoint refuses e1 of
// key K (400, permanent): K's e2 and e3 are not delivered while the other
// keys are; a handler without it (the default, dead-letter) gets e2 and e3
// at once. The endpoint recovers, dead-letters redrive delivers e1, and the
// consumer then delivers e2 and e3: in that order, each exactly once.
// Deleting a head releases its key the same way, without it.
func TestRun_HoldKeyKeepsOrderThroughADeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t, 1) // one partition: the other keys go on past K on the same one
	h := newHook(t)
	evs := keyed(t, "K", "L", "K", "M", "K", "M", "L")
	e1, l1, e2, m1, e3, m2, l2 := evs[0], evs[1], evs[2], evs[3], evs[4], evs[5], evs[6]
	refuse := map[string]bool{e1.ID: true, m1.ID: true}
	h.setStatus(func(r *http.Request, _ int) int {
		if refuse[r.Header.Get("ce-id")] {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	spec := "name=ordered,types=*,webhook=" + h.URL + "/ordered,on-failure=hold-key"
	r := start(t, b.runArgs(spec, "name=loose,types=*,webhook="+h.URL+"/loose"))
	base := r.metricsURL()
	b.produce(t, evs)

	testpoll.Until(t, 60*time.Second, 25*time.Millisecond, "L delivered to ordered, everything but e1 and m1 to loose", func() bool {
		return len(only(h.deliveredInOrder("/ordered"), l1, l2)) == 2 && len(h.delivered("/loose")) == 5
	})
	testpoll.Until(t, 30*time.Second, 50*time.Millisecond, "3 events held in the gauge", func() bool {
		return scrape(t, base, `pulsebus_consumer_held_events{group="svc",handler="ordered"}`) == 3
	})
	require.Zero(t, scrape(t, base, `pulsebus_consumer_held_events{group="svc",handler="loose"}`))
	require.Equal(t, 3.0, scrape(t, base, `pulsebus_consumer_events_handled_total{handler="ordered",outcome="held"}`))
	require.Equal(t, ids(l1, l2), h.deliveredInOrder("/ordered"), "K and M wait behind e1 and m1")
	require.Equal(t, ids(e2, e3), only(h.deliveredInOrder("/loose"), e1, e2, e3), "the default handler does not hold")

	var heldLog map[string]any
	for _, l := range jsonLines(r.logs) {
		if strings.HasPrefix(fmt.Sprint(l["msg"]), "key held") && l["key"] == "K" {
			heldLog = l
		}
	}
	require.NotNil(t, heldLog, "a log line names the held key\n%s", r.logs.String())
	require.Equal(t, e1.ID, heldLog["head_event_id"])
	require.Equal(t, "ordered", heldLog["handler"])

	// list shows the held keys with how many wait; --held the events with
	// the dead letter they wait for.
	dls, err := (&dispatch.Admin{Pool: b.db.Pool}).ListDeadLetters(context.Background(), dispatch.DeadLetterFilter{Group: b.group, Handler: "ordered"})
	require.NoError(t, err)
	require.Len(t, dls, 2)
	heads := map[string]int64{}
	for _, d := range dls {
		require.True(t, d.HoldsKey)
		heads[string(d.Key)] = d.ID
	}
	out, _, err := command(t, append([]string{"dead-letters", "list", "--handler-name", "ordered"}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Contains(t, out, "key K: 2 waiting", out)
	require.Contains(t, out, "key M: 1 waiting", out)
	require.Contains(t, out, "3 event(s) wait behind", out)
	out, _, err = command(t, append([]string{"dead-letters", "list", "--held"}, b.dbOnly()...)...)
	require.NoError(t, err)
	for _, e := range []envelope.Envelope{e2, e3} {
		require.Regexp(t, fmt.Sprintf(`(?m)^\d+\s+ordered\s+.*\s+K\s+lesson.published\s+%s\s+\S+\s+dead letter %d$`, e.ID, heads["K"]), out)
	}
	require.Regexp(t, fmt.Sprintf(`(?m)^\d+\s+ordered\s+.*\s+M\s+lesson.published\s+%s\s+\S+\s+dead letter %d$`, m2.ID, heads["M"]), out)

	// The endpoint recovers for e1: the redrive delivers it, the consumer
	// then e2 and e3, in order, once each.
	delete(refuse, e1.ID)
	out, _, err = command(t, append([]string{"dead-letters", "redrive", "--id", fmt.Sprint(heads["K"]), "--handler", spec}, b.dbOnly()...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "redriven 1, failed 0")
	require.Contains(t, out, "1 of them held their key")
	testpoll.Until(t, 60*time.Second, 25*time.Millisecond, "e2 and e3 delivered", func() bool {
		return len(only(h.deliveredInOrder("/ordered"), e3)) == 1
	})

	// m1 is given up: deleting it releases m2.
	out, _, err = command(t, append([]string{"dead-letters", "delete", "--id", fmt.Sprint(heads["M"])}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Contains(t, out, fmt.Sprintf("deleted dead letter %d: handler ordered", heads["M"]))
	require.Contains(t, out, "released key M: 1 held event(s) run next")
	testpoll.Until(t, 60*time.Second, 25*time.Millisecond, "m2 delivered", func() bool {
		return len(only(h.deliveredInOrder("/ordered"), m2)) == 1
	})
	testpoll.Until(t, 30*time.Second, 50*time.Millisecond, "no event held in the gauge", func() bool {
		return scrape(t, base, `pulsebus_consumer_held_events{group="svc",handler="ordered"}`) == 0
	})
	require.NoError(t, r.stop())

	require.Equal(t, ids(e1, e2, e3), only(h.deliveredInOrder("/ordered"), e1, e2, e3), "K in Kafka order")
	delivered := h.delivered("/ordered")
	for _, e := range []envelope.Envelope{e1, e2, e3, l1, l2, m2} {
		require.Equal(t, 1, delivered[e.ID], "event %s exactly once", e.ID)
	}
	require.Zero(t, delivered[m1.ID], "the deleted head is not run")
	out, _, err = command(t, append([]string{"dead-letters", "list", "--held"}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Equal(t, "no held events in group svc\n", out)
	dls, err = (&dispatch.Admin{Pool: b.db.Pool}).ListDeadLetters(context.Background(), dispatch.DeadLetterFilter{Group: b.group, Handler: "ordered"})
	require.NoError(t, err)
	require.Empty(t, dls)

	// Bad input: delete needs an id or a handler, and names a missing id.
	_, _, err = command(t, append([]string{"dead-letters", "delete"}, b.dbOnly()...)...)
	require.ErrorContains(t, err, "give one: --id ID or --handler-name NAME")
	_, _, err = command(t, append([]string{"dead-letters", "delete", "--id", "999999"}, b.dbOnly()...)...)
	require.ErrorContains(t, err, "no dead letter 999999 in group svc")
}
