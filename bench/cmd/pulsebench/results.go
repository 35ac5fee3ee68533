package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one row of the benchmark output: a contender in one case of a
// scenario. Zero fields were not measured.
type Result struct {
	Scenario  string `json:"scenario"`
	Case      string `json:"case"`
	Contender string `json:"contender"`
	// Skipped gives the reason a contender did not run.
	Skipped string `json:"skipped,omitempty"`
	// Error is set when the contender failed or lost events.
	Error string `json:"error,omitempty"`

	Events   int64   `json:"events"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"rate"` // events per second
	Distinct int64   `json:"distinct"`
	Dups     int64   `json:"duplicates"`

	// Live scenario.
	OfferedRate   float64 `json:"offered_rate,omitempty"`
	ProducerRate  float64 `json:"producer_rate,omitempty"`
	LatP50Ms      float64 `json:"commit_to_ack_p50_ms,omitempty"`
	LatP99Ms      float64 `json:"commit_to_ack_p99_ms,omitempty"`
	LatP999Ms     float64 `json:"commit_to_ack_p999_ms,omitempty"`
	LatMaxMs      float64 `json:"commit_to_ack_max_ms,omitempty"`
	BacklogAgeP99 float64 `json:"backlog_age_p99_ms,omitempty"`

	// Resource use of the contender's process.
	CPUSeconds    float64 `json:"cpu_seconds,omitempty"`
	CPUPerMillion float64 `json:"cpu_seconds_per_million,omitempty"`
	MaxRSSMiB     float64 `json:"max_rss_mib,omitempty"`
	// CPU of the PostgreSQL backends serving the contender, and of the
	// parent process (the in-process broker; not measured in the live
	// scenario, where the parent also runs the producers), per million
	// events.
	PGCPUPerMillion     float64 `json:"postgres_cpu_seconds_per_million,omitempty"`
	BrokerCPUPerMillion float64 `json:"broker_cpu_seconds_per_million,omitempty"`

	// Consumer scenario: seconds from start to the first handled event
	// (joining the group); Seconds and Rate run from the first to the
	// last event.
	StartupSec float64 `json:"startup_seconds,omitempty"`
	// Stats are the contender's own counters (the relay's hooks, the
	// consumer's retries and dead letters).
	Stats map[string]float64 `json:"contender_stats,omitempty"`

	Note string `json:"note,omitempty"`
}

// Report is the JSON document the benchmark writes.
type Report struct {
	Started  time.Time         `json:"started"`
	Seconds  float64           `json:"seconds"`
	Command  string            `json:"command"`
	Machine  map[string]string `json:"machine"`
	Settings map[string]any    `json:"settings"`
	Results  []Result          `json:"results"`
}

// setSideCPU records the CPU of the contender's PostgreSQL backends and,
// when parent is not negative, of the parent process.
func (r *Result) setSideCPU(backends, parent time.Duration, events int64) {
	if events <= 0 {
		return
	}
	r.PGCPUPerMillion = backends.Seconds() / float64(events) * 1e6
	if parent >= 0 {
		r.BrokerCPUPerMillion = parent.Seconds() / float64(events) * 1e6
	}
}

func (r *Result) setUsage(u childUsage, events int64) {
	r.CPUSeconds = u.CPU.Seconds()
	if events > 0 {
		r.CPUPerMillion = u.CPU.Seconds() / float64(events) * 1e6
	}
	r.MaxRSSMiB = float64(u.MaxRSS) / (1 << 20)
}

// percentile returns the q-quantile (0..1) of sorted durations, in ms.
func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

func fnum(v float64, digits int) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.*f", digits, v)
}

// table is one scenario's results as text cells; a row with a note (an
// error or why it was skipped) carries it after its cells.
type table struct {
	scenario string
	header   []string
	rows     [][]string
	notes    []string // per row, "" for none
}

// tables lays the results out as one table per scenario.
func tables(results []Result) []table {
	var scenarios []string
	for _, r := range results {
		if !slices.Contains(scenarios, r.Scenario) {
			scenarios = append(scenarios, r.Scenario)
		}
	}
	var out []table
	for _, sc := range scenarios {
		t := table{scenario: sc}
		live := sc == "live"
		if live {
			t.header = []string{"case", "contender", "offered/s", "produced/s", "events", "delivered", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "backlog age p99 ms", "CPU s/1M", "PG CPU s/1M", "RSS MiB"}
		} else {
			t.header = []string{"case", "contender", "events", "seconds", "events/s", "delivered", "dups", "CPU s/1M", "PG CPU s/1M", "broker CPU s/1M", "RSS MiB"}
		}
		for _, r := range results {
			if r.Scenario != sc {
				continue
			}
			var row []string
			note := ""
			switch {
			case r.Skipped != "":
				row = []string{r.Case, r.Contender}
				note = "skipped: " + r.Skipped
			case live:
				delivered := fmt.Sprint(r.Distinct)
				if strings.HasPrefix(r.Contender, "producers-alone") {
					delivered = "-"
				}
				row = []string{r.Case, r.Contender, fnum(r.OfferedRate, 0), fnum(r.ProducerRate, 0), fmt.Sprint(r.Events), delivered,
					fnum(r.LatP50Ms, 2), fnum(r.LatP99Ms, 2), fnum(r.LatP999Ms, 2), fnum(r.LatMaxMs, 1),
					fnum(r.BacklogAgeP99, 1), fnum(r.CPUPerMillion, 1), fnum(r.PGCPUPerMillion, 1), fnum(r.MaxRSSMiB, 1)}
			default:
				row = []string{r.Case, r.Contender, fmt.Sprint(r.Events), fmt.Sprintf("%.2f", r.Seconds), fmt.Sprintf("%.0f", r.Rate),
					fmt.Sprint(r.Distinct), fmt.Sprint(r.Dups), fnum(r.CPUPerMillion, 1), fnum(r.PGCPUPerMillion, 1),
					fnum(r.BrokerCPUPerMillion, 1), fnum(r.MaxRSSMiB, 1)}
			}
			if r.Error != "" {
				note = "ERROR: " + r.Error
			}
			t.rows = append(t.rows, row)
			t.notes = append(t.notes, note)
		}
		out = append(out, t)
	}
	return out
}

// printTables writes one table per scenario, then the ratios; verdicts
// says whether to mark targets as met or missed (not for quick mode's tiny
// sizes).
func printTables(w io.Writer, results []Result, verdicts bool) {
	for _, t := range tables(results) {
		fmt.Fprintf(w, "\n== %s ==\n", t.scenario)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(t.header, "\t")+"\t")
		for i, row := range t.rows {
			line := strings.Join(row, "\t") + "\t"
			if len(row) < len(t.header) {
				// Text after the last tab is no cell: it leaves the column
				// widths alone.
				line += "  " + t.notes[i]
			} else if t.notes[i] != "" {
				line += "\n\t\t  " + t.notes[i]
			}
			fmt.Fprintln(tw, line)
		}
		_ = tw.Flush()
	}
	fmt.Fprint(w, "\n"+ratiosSection(results, verdicts, "== %s ==\n"))
}

// writeMarkdown writes the report as Markdown: the command, the machine,
// one table per scenario and the ratios, for docs/benchmarks.md.
func writeMarkdown(w io.Writer, rep Report) {
	fmt.Fprintf(w, "Run %s, %.0f s, `%s`.\n\n", rep.Started.Format("2006-01-02 15:04 MST"), rep.Seconds, rep.Command)
	keys := slices.Sorted(maps.Keys(rep.Machine))
	var m []string
	for _, k := range keys {
		m = append(m, k+" "+rep.Machine[k])
	}
	fmt.Fprintf(w, "Machine: %s.\n", strings.Join(m, ", "))
	for _, t := range tables(rep.Results) {
		fmt.Fprintf(w, "\n**%s**\n\n| %s |\n| :--- | :--- |%s\n", t.scenario, strings.Join(t.header, " | "), strings.Repeat(" ---: |", len(t.header)-2))
		var notes []string
		for i, row := range t.rows {
			cells := append([]string(nil), row...)
			for len(cells) < len(t.header) {
				cells = append(cells, "")
			}
			if t.notes[i] != "" {
				notes = append(notes, fmt.Sprintf("%s / %s: %s", row[0], row[1], t.notes[i]))
				cells[1] += " (see below)"
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		for _, n := range notes {
			fmt.Fprintf(w, "\n- %s", n)
		}
		if len(notes) > 0 {
			fmt.Fprintln(w)
		}
	}
	if r := ratiosSection(rep.Results, rep.Settings["mode"] != "quick", "**%s**\n\n```\n"); r != "" {
		fmt.Fprint(w, "\n"+r+"```\n")
	}
}

// readReport reads a JSON report written by a run.
func readReport(path string) (Report, error) {
	var rep Report
	b, err := os.ReadFile(path)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

// ratiosSection returns the comparisons the targets are stated in, each
// marked "ok", "MISS" or "n/a" when it has a target and verdicts is set,
// under a title formatted with titleFormat; "" when there are none.
func ratiosSection(results []Result, verdicts bool, titleFormat string) string {
	find := func(sc, cs, ct string) *Result {
		for i := range results {
			r := &results[i]
			if r.Scenario == sc && r.Case == cs && r.Contender == ct && r.Skipped == "" && r.Error == "" {
				return r
			}
		}
		return nil
	}
	var lines []string
	add := func(met *bool, format string, args ...any) {
		mark := "    "
		if !verdicts {
			met = nil
		}
		if met == untestable {
			mark = "n/a "
		} else if met != nil {
			mark = "ok  "
			if !*met {
				mark = "MISS"
			}
		}
		lines = append(lines, mark+" "+fmt.Sprintf(format, args...))
	}
	check := func(ok bool) *bool { return &ok }

	relay, bare, wm := find("drain", "backlog", "pulsebus-relay"), find("drain", "backlog", "sql-claim-delete"), find("drain", "backlog", "watermill-forwarder")
	if relay != nil && bare != nil {
		v := relay.Rate / bare.Rate
		add(check(v >= 0.5), "drain: pulsebus-relay / sql-claim-delete = %.1f%% (%.0f vs %.0f events/s; target >= 50%%)", 100*v, relay.Rate, bare.Rate)
	}
	if relay != nil && wm != nil {
		v := relay.Rate / wm.Rate
		add(check(v >= 10), "drain: pulsebus-relay / watermill-forwarder = %.1fx (%.0f vs %.0f events/s; target >= 10x)", v, relay.Rate, wm.Rate)
	}
	if relay != nil {
		add(check(relay.MaxRSSMiB <= 64), "drain: pulsebus-relay peak RSS %.1f MiB (target <= 64); watermill-forwarder %s MiB", relay.MaxRSSMiB, rssOf(wm))
	}

	var rates []string
	for _, r := range results {
		if r.Scenario == "live" && !slices.Contains(rates, r.Case) {
			rates = append(rates, r.Case)
		}
	}
	for _, cs := range rates {
		alone, pr := find("live", cs, "producers-alone-outbox"), find("live", cs, "pulsebus-relay")
		walone, wf := find("live", cs, "producers-alone-watermill"), find("live", cs, "watermill-forwarder")
		if pr != nil {
			var met *bool
			if cs == "rate-5000" {
				met = check(pr.LatP99Ms <= 15)
				if pr.ProducerRate < 0.95*pr.OfferedRate {
					met = untestable // the rate was not reached
				}
			}
			wmp := "-"
			if wf != nil {
				wmp = fmt.Sprintf("%.1f", wf.LatP99Ms)
			}
			add(met, "live %s: pulsebus-relay commit->ack p99 %.2f ms (target at 5k/s <= 15 ms), watermill-forwarder %s ms", cs, pr.LatP99Ms, wmp)
			if pr.ProducerRate < 0.95*pr.OfferedRate {
				add(nil, "live %s: the producers reached only %.0f of %.0f events/s offered with the relay (%.0f/s alone): not a test at the offered rate", cs, pr.ProducerRate, pr.OfferedRate, rateOf(alone))
			}
		}
		if alone != nil && pr != nil {
			add(nil, "live %s: producer rate with pulsebus-relay / alone = %.0f%% (%.0f vs %.0f/s)", cs, 100*pr.ProducerRate/alone.ProducerRate, pr.ProducerRate, alone.ProducerRate)
		}
		if nn := find("live", cs, "producers-alone-no-notify"); nn != nil && alone != nil {
			add(nil, "live %s: producer rate outbox.InsertTx / the same INSERT without pg_notify = %.0f%% (%.0f vs %.0f/s)", cs, 100*alone.ProducerRate/nn.ProducerRate, alone.ProducerRate, nn.ProducerRate)
		}
		if walone != nil && wf != nil {
			add(nil, "live %s: producer rate with watermill-forwarder / alone = %.0f%% (%.0f vs %.0f/s)", cs, 100*wf.ProducerRate/walone.ProducerRate, wf.ProducerRate, walone.ProducerRate)
		}
	}

	for _, cs := range []struct {
		name, wmCase string
		target       float64
	}{{"plain", "plain", 150000}, {"tx-per-event", "tx-per-event", 6000}, {"tx-batched", "tx-per-event", 30000}} {
		p, wmc := find("consumer", cs.name, "pulsebus-dispatch"), find("consumer", cs.wmCase, "watermill-router")
		if p == nil {
			continue
		}
		vs := ""
		if wmc != nil {
			vs = fmt.Sprintf(", watermill-router %s %.0f/s (%.1fx)", cs.wmCase, wmc.Rate, p.Rate/wmc.Rate)
		}
		add(check(p.Rate >= cs.target), "consumer %s: pulsebus-dispatch %.0f events/s (target >= %.0f)%s", cs.name, p.Rate, cs.target, vs)
		add(check(p.MaxRSSMiB <= 64), "consumer %s: pulsebus-dispatch peak RSS %.1f MiB (target <= 64), %.1f CPU s per 1M events; watermill-router %s MiB", cs.name, p.MaxRSSMiB, p.CPUPerMillion, rssOf(wmc))
	}
	if len(lines) == 0 {
		return ""
	}
	title := "ratios and targets"
	if !verdicts {
		title = "ratios (quick mode: sizes too small to judge the targets)"
	}
	return fmt.Sprintf(titleFormat, title) + strings.Join(lines, "\n") + "\n"
}

// untestable marks a target the run could not test.
var untestable = new(bool)

func rssOf(r *Result) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", r.MaxRSSMiB)
}

func rateOf(r *Result) float64 {
	if r == nil {
		return 0
	}
	return r.ProducerRate
}

func writeJSON(path string, rep Report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machineInfo describes the machine for the report.
func machineInfo() map[string]string {
	m := map[string]string{
		"goos":   runtime.GOOS,
		"goarch": runtime.GOARCH,
		"go":     runtime.Version(),
		"nproc":  fmt.Sprint(runtime.NumCPU()),
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				m["memory"] = strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:"))
			}
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					m["cpu"] = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	return m
}
