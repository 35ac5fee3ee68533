package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestPayloadSeq_RoundTrip(t *testing.T) {
	for _, seq := range []int64{0, 7, 999_999, 1 << 40} {
		p := makePayload(seq, 256)
		if len(p) != 256 {
			t.Fatalf("makePayload(%d, 256) is %d bytes", seq, len(p))
		}
		got, ok := payloadSeq(p)
		if !ok || got != seq {
			t.Fatalf("payloadSeq(makePayload(%d)) = %d, %v", seq, got, ok)
		}
	}
	for _, bad := range []string{"", `{"seq":`, `{"seq":x}`, `{"other":1}`} {
		if _, ok := payloadSeq([]byte(bad)); ok {
			t.Fatalf("payloadSeq(%q) accepted", bad)
		}
	}
}

func TestHistogram_Quantile(t *testing.T) {
	h := newHistogram()
	if h.Quantile(0.99) != 0 {
		t.Fatal("empty histogram has a quantile")
	}
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.99, 990}, {1, 1000}} {
		got := h.Quantile(c.q)
		if math.Abs(got-c.want)/c.want > 0.021 { // one 2% bucket
			t.Errorf("Quantile(%v) = %.2f ms, want %.0f ms within 2%%", c.q, got, c.want)
		}
	}
	if h.MaxMs() != 1000 || h.Count() != 1000 {
		t.Fatalf("max %.1f count %d", h.MaxMs(), h.Count())
	}
	h.Record(-time.Second)
	if h.Count() != 1001 {
		t.Fatal("negative duration not counted")
	}
}

func TestComputeLiveStats(t *testing.T) {
	ms := int64(time.Millisecond)
	tl := newLiveTimeline(5)
	// Four events committed 10 ms apart; each takes 5 ms to arrive except
	// event 1, which takes 35 ms (it holds the backlog up); seq 4 never
	// committed.
	commits := []int64{100, 110, 120, 130}
	lat := []int64{5, 35, 5, 5}
	for i := range commits {
		tl.commit[i].Store(commits[i] * ms)
		tl.arrive[i].Store((commits[i] + lat[i]) * ms)
	}
	st := computeLiveStats(tl, 40*ms)
	if st.committed != 4 || st.delivered != 4 {
		t.Fatalf("committed %d delivered %d, want 4 and 4", st.committed, st.delivered)
	}
	if st.p50 != 5 || st.maxMs != 35 || st.p99 != 35 {
		t.Fatalf("p50 %.1f p99 %.1f max %.1f, want 5, 35, 35", st.p50, st.p99, st.maxMs)
	}
	// Samples at 100, 110, ..., 140 ms: the oldest pending event is
	// 0 (age 0), 1 (age 0), 1 (10), 1 (20), 1 (30): p99 30 ms.
	if st.backlogP99Ms != 30 {
		t.Fatalf("backlog age p99 %.1f ms, want 30", st.backlogP99Ms)
	}

	// An event that never arrived counts as pending for the whole window.
	tl.arrive[3].Store(0)
	st = computeLiveStats(tl, 40*ms)
	if st.delivered != 3 {
		t.Fatalf("delivered %d, want 3", st.delivered)
	}
	if st.backlogP99Ms != 30 {
		t.Fatalf("backlog age p99 %.1f ms, want 30 (event 1 is older than event 3)", st.backlogP99Ms)
	}
}

func TestPercentile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for i := range d {
		d[i] *= time.Millisecond
	}
	if got := percentile(d, 0.5); got != 5 {
		t.Fatalf("p50 = %v", got)
	}
	if got := percentile(d, 0.99); got != 10 {
		t.Fatalf("p99 = %v", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Fatalf("p50 of nothing = %v", got)
	}
}

func TestWriteMarkdown(t *testing.T) {
	rep := Report{
		Command:  "pulsebench --quick",
		Machine:  map[string]string{"nproc": "2"},
		Settings: map[string]any{"mode": "full"},
		Results: []Result{
			{Scenario: "drain", Case: "backlog", Contender: "sql-claim-delete", Events: 10, Rate: 100, Distinct: 10},
			{Scenario: "drain", Case: "backlog", Contender: "pulsebus-relay", Events: 10, Rate: 40, Distinct: 10},
			{Scenario: "drain", Case: "backlog", Contender: "watermill-forwarder", Error: "LOST EVENTS: 9 of 10 delivered"},
			{Scenario: "consumer", Case: "tx-batched", Contender: "watermill-router", Skipped: "no batch handler"},
		},
	}
	var sb strings.Builder
	writeMarkdown(&sb, rep)
	out := sb.String()
	for _, want := range []string{
		"| backlog | pulsebus-relay | 10 |",
		"- backlog / watermill-forwarder: ERROR: LOST EVENTS: 9 of 10 delivered",
		"- tx-batched / watermill-router: skipped: no batch handler",
		"MISS drain: pulsebus-relay / sql-claim-delete = 40.0%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}
