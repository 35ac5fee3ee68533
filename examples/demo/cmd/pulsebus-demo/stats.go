package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// stats collects what the summary shows: the load generator's commits, and
// the relay's and the consumer's observations through their hooks (the
// same hooks the Prometheus adapters implement).
type stats struct {
	start time.Time

	mu       sync.Mutex
	produced map[string]int64 // by event type, counted after commit
	handlers map[string]*handlerStats
	order    []string // handler names, in registration order

	relayed       atomic.Int64
	publishErrors atomic.Int64
	parked        atomic.Int64
	backlogRows   atomic.Int64
	backlogAge    atomic.Int64 // nanoseconds
	leader        atomic.Bool
	rebalances    atomic.Int64
}

type handlerStats struct {
	types    []string
	matches  func(string) bool
	handled  int64
	dead     int64
	dups     int64
	retries  int64
	lag      map[string]int64 // "topic/partition" → lag
	total    latencyHist      // commit→handle over the whole run
	interval latencyHist      // since the last live line
}

func newStats() *stats {
	return &stats{start: time.Now(), produced: map[string]int64{}, handlers: map[string]*handlerStats{}}
}

// addHandler declares a handler and the event types it subscribes to, so
// the summary can tell how many events it should see.
func (s *stats) addHandler(name string, types []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[name] = &handlerStats{types: types, matches: typeMatcher(types), lag: map[string]int64{}}
	s.order = append(s.order, name)
}

func typeMatcher(types []string) func(string) bool {
	return func(t string) bool {
		for _, want := range types {
			if want == "*" || want == t || (strings.HasSuffix(want, ".*") && strings.HasPrefix(t, strings.TrimSuffix(want, "*"))) {
				return true
			}
		}
		return false
	}
}

func (s *stats) committed(types ...string) {
	s.mu.Lock()
	for _, t := range types {
		s.produced[t]++
	}
	s.mu.Unlock()
}

// relayHooks adapts stats to outbox.Hooks.
func relayHooks(s *stats) outbox.Hooks {
	return outbox.Hooks{
		OnPublished:     func(_ string, n int) { s.relayed.Add(int64(n)) },
		OnPublishFailed: func(outbox.Reason) { s.publishErrors.Add(1) },
		OnParked:        func(string, outbox.Reason) { s.parked.Add(1) },
		OnLeader:        func(is bool) { s.leader.Store(is) },
		OnBacklog: func(rows int64, a time.Duration) {
			s.backlogRows.Store(rows)
			s.backlogAge.Store(int64(a))
		},
	}
}

// consumerHooks adapts stats to dispatch.Hooks.
type consumerHooks struct {
	s *stats
}

func (h consumerHooks) OnHandled(e dispatch.HandledEvent) {
	now := time.Now()
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	hs := h.s.handlers[e.Handler]
	if hs == nil {
		return
	}
	switch e.Outcome {
	case dispatch.OutcomeSkippedDuplicate:
		hs.dups++
		return
	case dispatch.OutcomeDeadLettered:
		hs.dead++
	default:
		hs.handled++
	}
	if !e.EventTime.IsZero() {
		d := now.Sub(e.EventTime)
		hs.total.add(d)
		hs.interval.add(d)
	}
}

func (h consumerHooks) OnRetry(handler string, _ int, _ error) {
	h.s.mu.Lock()
	if hs := h.s.handlers[handler]; hs != nil {
		hs.retries++
	}
	h.s.mu.Unlock()
}

func (h consumerHooks) OnLag(handler, topic string, partition int, lag int64) {
	h.s.mu.Lock()
	if hs := h.s.handlers[handler]; hs != nil {
		hs.lag[fmt.Sprintf("%s/%d", topic, partition)] = lag
	}
	h.s.mu.Unlock()
}

func (h consumerHooks) OnRebalance(map[string][]int) { h.s.rebalances.Add(1) }

// hooks returns the consumer hooks that feed h.
func (h consumerHooks) hooks() dispatch.Hooks {
	return dispatch.Hooks{OnHandled: h.OnHandled, OnRetry: h.OnRetry, OnLag: h.OnLag, OnRebalance: h.OnRebalance}
}

// snapshot is a consistent copy of the counters.
type snapshot struct {
	elapsed                 time.Duration
	produced                map[string]int64
	producedTotal           int64
	relayed, errors, parked int64
	backlogRows             int64
	backlogAge              time.Duration
	leader                  bool
	handlers                []handlerSnapshot
}

type handlerSnapshot struct {
	name                         string
	types                        []string
	expected                     int64
	handled, dead, dups, retries int64
	lag                          int64
	p50, p99, p999               time.Duration // whole run
	intervalP50, intervalP99     time.Duration // since the previous snapshot
	intervalCount                int64
}

// snapshot copies the counters; with resetInterval it starts a new
// interval for the live percentiles.
func (s *stats) snapshot(resetInterval bool) snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := snapshot{
		elapsed: time.Since(s.start), produced: map[string]int64{},
		relayed: s.relayed.Load(), errors: s.publishErrors.Load(), parked: s.parked.Load(),
		backlogRows: s.backlogRows.Load(), backlogAge: time.Duration(s.backlogAge.Load()), leader: s.leader.Load(),
	}
	for t, n := range s.produced {
		snap.produced[t] = n
		snap.producedTotal += n
	}
	for _, name := range s.order {
		hs := s.handlers[name]
		h := handlerSnapshot{
			name: name, types: hs.types, handled: hs.handled, dead: hs.dead, dups: hs.dups, retries: hs.retries,
			p50: hs.total.quantile(0.50), p99: hs.total.quantile(0.99), p999: hs.total.quantile(0.999),
			intervalP50: hs.interval.quantile(0.50), intervalP99: hs.interval.quantile(0.99), intervalCount: hs.interval.n,
		}
		for t, n := range s.produced {
			if hs.matches(t) {
				h.expected += n
			}
		}
		for _, l := range hs.lag {
			h.lag += l
		}
		if resetInterval {
			hs.interval = latencyHist{}
		}
		snap.handlers = append(snap.handlers, h)
	}
	return snap
}

// complete reports whether the relay published every produced event and
// every handler handled every event it subscribes to, none dead-lettered.
func (s snapshot) complete() bool {
	if s.relayed < s.producedTotal || s.parked > 0 {
		return false
	}
	for _, h := range s.handlers {
		if h.handled != h.expected || h.dead > 0 {
			return false
		}
	}
	return true
}

// wideColumns is the terminal width from which the live block uses its wide
// layout (about 100 columns); below it the narrow layout fits 80.
const wideColumns = 100

// writeLive prints the live block for a terminal width columns wide and
// returns its line count.
func (s snapshot) writeLive(w io.Writer, header string, columns int) int {
	lines := 0
	p := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\n", args...)
		lines++
	}
	p("%s · %s", header, fmtElapsed(s.elapsed))
	leader := "no"
	if s.leader {
		leader = "yes"
	}
	interval := func(h handlerSnapshot) (p50, p99 string) {
		if h.intervalCount == 0 {
			return "-", "-"
		}
		return fmtDur(h.intervalP50), fmtDur(h.intervalP99)
	}
	p("  produced %d  relayed %d  backlog %d (oldest %s)", s.producedTotal, s.relayed, s.backlogRows, fmtDur(s.backlogAge))
	p("  relay leader %s  parked %d  publish errors %d", leader, s.parked, s.errors)
	if columns < wideColumns {
		p("  %-16s %9s %6s %6s %9s", "handler", "handled", "dead", "lag", "p99")
		for _, h := range s.handlers {
			_, p99 := interval(h)
			p("  %-16s %9d %6d %6d %9s", h.name, h.handled, h.dead, h.lag, p99)
		}
		return lines
	}
	p("  %-16s %9s %9s %6s %6s %9s %9s  (commit→handle, last 1s)", "handler", "expected", "handled", "dead", "lag", "p50", "p99")
	for _, h := range s.handlers {
		p50, p99 := interval(h)
		p("  %-16s %9d %9d %6d %6d %9s %9s", h.name, h.expected, h.handled, h.dead, h.lag, p50, p99)
	}
	return lines
}

// writeLine prints the snapshot as one line, for output that is not a
// terminal (a log file, CI): "12s produced 2400 relayed 2400 backlog 0 ·
// search-indexer 1800/1800 ...".
func (s snapshot) writeLine(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s produced %d relayed %d backlog %d parked %d ·", fmtElapsed(s.elapsed), s.producedTotal, s.relayed, s.backlogRows, s.parked)
	for _, h := range s.handlers {
		fmt.Fprintf(&b, " %s %d/%d", h.name, h.handled, h.expected)
		if h.dead > 0 {
			fmt.Fprintf(&b, " (%d dead)", h.dead)
		}
	}
	fmt.Fprintln(w, b.String())
}

// writeFinal prints the end-of-run summary.
func (s snapshot) writeFinal(w io.Writer) {
	fmt.Fprintf(w, "\nFinal summary after %s\n", fmtElapsed(s.elapsed))
	types := make([]string, 0, len(s.produced))
	for t := range s.produced {
		types = append(types, t)
	}
	slices.Sort(types)
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = fmt.Sprintf("%s %d", t, s.produced[t])
	}
	fmt.Fprintf(w, "  produced  %d events (%s)\n", s.producedTotal, strings.Join(parts, ", "))
	fmt.Fprintf(w, "  relayed   %d   parked %d   publish errors %d\n", s.relayed, s.parked, s.errors)
	fmt.Fprintf(w, "  %-16s %-58s %9s %9s %5s %5s %8s %9s %9s %9s\n", "handler", "types", "expected", "handled", "dead", "dups", "retries", "p50", "p99", "p99.9")
	for _, h := range s.handlers {
		fmt.Fprintf(w, "  %-16s %-58s %9d %9d %5d %5d %8d %9s %9s %9s\n", h.name, strings.Join(h.types, ","),
			h.expected, h.handled, h.dead, h.dups, h.retries, fmtDur(h.p50), fmtDur(h.p99), fmtDur(h.p999))
	}
	fmt.Fprintln(w, "  (p50/p99/p99.9: commit→handle latency over the whole run, from each event's ce_time)")
}

func fmtElapsed(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

// latencyHist is a log-bucketed histogram: 4% resolution from 10µs up to
// about an hour, in a fixed array, so it costs the same after a minute or a
// day.
type latencyHist struct {
	counts [histBuckets]int64
	n      int64
}

const (
	histBuckets = 500
	histMin     = 10 * time.Microsecond
	histGrowth  = 1.04
)

func (h *latencyHist) add(d time.Duration) {
	i := 0
	if d > histMin {
		i = int(math.Log(float64(d)/float64(histMin))/math.Log(histGrowth)) + 1
	}
	h.counts[min(i, histBuckets-1)]++
	h.n++
}

// quantile returns the upper bound of the bucket holding the q-quantile, 0
// when empty.
func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(float64(histMin) * math.Pow(histGrowth, float64(i)))
		}
	}
	return time.Duration(float64(histMin) * math.Pow(histGrowth, histBuckets-1))
}
