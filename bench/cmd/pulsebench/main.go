// Command pulsebench benchmarks PulseBus against the bare PostgreSQL limit
// and against Watermill, on the local PostgreSQL and an in-process kfake
// broker, and prints a table and writes JSON results.
//
// Usage:
//
//	pulsebench [--quick] [--scenarios drain,live,consumer] [--contenders ...] [--json path] [--markdown path]
//	pulsebench report results.json    # a run's results as Markdown
//
// Every contender runs in a child process (`pulsebench run-contender`, an
// internal subcommand) so its CPU time and peak RSS are measured alone. See
// docs/benchmarks.md for the scenarios and the numbers.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "run-contender" {
		os.Exit(runChild())
	}
	if len(os.Args) > 1 && os.Args[1] == "report" {
		os.Exit(runReport(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:]))
}

// bench holds the settings and the shared broker of one run.
type bench struct {
	quick       bool
	scenarios   []string
	only        []string
	events      int64
	wmEvents    int64
	txEvents    int64
	wmPoll      time.Duration
	batch       int
	partitions  int
	payloadSize int
	producers   int
	liveFor     time.Duration
	rates       []float64
	profileDir  string

	kc      *testkafka.Cluster
	brokers []string
	admin   *kafkaAdmin

	mu      sync.Mutex
	results []Result
}

func (b *bench) add(r Result) {
	b.mu.Lock()
	b.results = append(b.results, r)
	b.mu.Unlock()
}

// want reports whether the contender was selected with --contenders.
func (b *bench) want(name string) bool { return len(b.only) == 0 || slices.Contains(b.only, name) }

func (b *bench) profilePath(scenario, contender string) string {
	if b.profileDir == "" {
		return ""
	}
	return filepath.Join(b.profileDir, scenario+"-"+contender+".pprof")
}

// timeoutFor bounds waiting for n events at a pessimistic 500 events/s
// plus 30 s; in quick mode, which must finish within a minute, 1000
// events/s plus 8 s.
func (b *bench) timeoutFor(n int64) time.Duration {
	if b.quick {
		return 8*time.Second + time.Duration(n/1000)*time.Second
	}
	return 30*time.Second + time.Duration(n/500)*time.Second
}

func run(args []string) int {
	fs := flag.NewFlagSet("pulsebench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "smoke-test mode: small sizes, everything in about a minute, no assertions on speed")
	scenarios := fs.String("scenarios", "drain,live,consumer", "comma-separated scenarios to run: drain, live, consumer (resource use is reported by each)")
	contendersFlag := fs.String("contenders", "", "comma-separated contenders to run (default all): sql-claim-delete, pulsebus-relay, watermill-forwarder, pulsebus-dispatch, watermill-router")
	events := fs.Int64("events", 1_000_000, "events per drain and consumer run (quick mode: 5000)")
	wmEvents := fs.Int64("watermill-events", 100_000, "cap on the events the Watermill forwarder drains (it is far slower; its rate is per second all the same)")
	txEvents := fs.Int64("tx-events", 200_000, "events for the one-transaction-per-event consumer cases, PulseBus and Watermill alike (quick mode: 2000)")
	wmPoll := fs.Duration("watermill-poll", 100*time.Millisecond, "poll interval of the Watermill SQL subscriber (its default is 1s)")
	batch := fs.Int("batch", 1000, "rows per claim for sql-claim-delete and the PulseBus relay")
	partitions := fs.Int("partitions", 4, "partitions per topic")
	payload := fs.Int("payload", 256, "payload bytes per event")
	producers := fs.Int("producers", 16, "producer goroutines in the live scenario")
	liveFor := fs.Duration("live-duration", 20*time.Second, "how long producers run in each live case (quick mode: 2s)")
	rates := fs.String("rates", "1000,5000,10000", "offered rates (events/s) of the live scenario (quick mode: 1000)")
	mdPath := fs.String("markdown", "", "also write the results as Markdown (tables and ratios, for docs/benchmarks.md) here")
	jsonPath := fs.String("json", "", "write results as JSON here (default bench/results/<mode>-<time>.json under the working directory's results/)")
	profileDir := fs.String("cpuprofile-dir", "", "write a pprof CPU profile of every contender process into this directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	b := &bench{
		quick: *quick, events: *events, wmEvents: *wmEvents, txEvents: *txEvents, wmPoll: *wmPoll, batch: *batch, partitions: *partitions,
		payloadSize: *payload, producers: *producers, liveFor: *liveFor, profileDir: *profileDir,
	}
	if b.quick {
		if !set["events"] {
			b.events = 5000
		}
		if !set["watermill-events"] {
			b.wmEvents = 5000
		}
		if !set["tx-events"] {
			b.txEvents = 2000
		}
		if !set["live-duration"] {
			b.liveFor = 2 * time.Second
		}
		if !set["rates"] {
			*rates = "1000"
		}
	}
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.Contains([]string{"drain", "live", "consumer"}, s) {
			fmt.Fprintf(os.Stderr, "pulsebench: --scenarios: unknown scenario %q (drain, live, consumer)\n", s)
			return 2
		}
		b.scenarios = append(b.scenarios, s)
	}
	for _, c := range strings.Split(*contendersFlag, ",") {
		if c = strings.TrimSpace(c); c != "" {
			b.only = append(b.only, c)
		}
	}
	for _, r := range strings.Split(*rates, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(os.Stderr, "pulsebench: --rates: %q is not a positive number\n", r)
			return 2
		}
		b.rates = append(b.rates, v)
	}
	if b.events <= 0 || b.wmEvents <= 0 || b.txEvents <= 0 || b.wmPoll <= 0 || b.liveFor <= 0 || b.batch <= 0 || b.partitions <= 0 || b.payloadSize < 32 || b.producers <= 0 {
		fmt.Fprintln(os.Stderr, "pulsebench: --events, --watermill-events, --tx-events, --watermill-poll, --live-duration, --batch, --partitions, --producers must be positive and --payload at least 32")
		return 2
	}
	if b.profileDir != "" {
		if err := os.MkdirAll(b.profileDir, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "pulsebench: %v\n", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	started := time.Now()
	loadStart := loadAvg()
	kc, err := testkafka.Start(kfake.NumBrokers(1))
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulsebench: %v\n", err)
		return 1
	}
	defer kc.Close()
	b.kc, b.brokers = kc, kc.Addrs
	if b.admin, err = newKafkaAdmin(b.brokers); err != nil {
		fmt.Fprintf(os.Stderr, "pulsebench: %v\n", err)
		return 1
	}
	defer b.admin.Close()
	pgInfo := postgresInfo(ctx)
	logf("kfake at %v, PostgreSQL at %s, mode %s, events %d", b.brokers, testdb.RedactedServerURL(), b.mode(), b.events)

	failed := false
	for _, sc := range b.scenarios {
		var err error
		t := time.Now()
		switch sc {
		case "drain":
			err = b.runDrain(ctx)
		case "live":
			err = b.runLive(ctx)
		case "consumer":
			err = b.runConsumer(ctx)
		}
		logf("%s: finished in %s", sc, time.Since(t).Round(time.Millisecond))
		if err != nil {
			fmt.Fprintf(os.Stderr, "pulsebench: %s: %v\n", sc, err)
			failed = true
		}
		if ctx.Err() != nil {
			break
		}
	}
	printTables(os.Stdout, b.results, !b.quick)
	for _, r := range b.results {
		if r.Error != "" {
			failed = true
		}
	}
	rep := Report{
		Started: started.UTC(), Seconds: time.Since(started).Seconds(),
		Command: strings.TrimSpace("pulsebench " + strings.Join(args, " ")), Machine: machineInfo(),
		Settings: map[string]any{
			"mode": b.mode(), "events": b.events, "watermill_events": b.wmEvents, "batch": b.batch,
			"partitions": b.partitions, "payload_bytes": b.payloadSize, "producers": b.producers,
			"live_duration_s": b.liveFor.Seconds(), "rates": b.rates,
			"tx_events": b.txEvents, "watermill_poll_ms": b.wmPoll.Milliseconds(),
		},
		Results: b.results,
	}
	// Other work on the machine skews every number: record how busy it was.
	rep.Machine["loadavg_start"], rep.Machine["loadavg_end"] = loadStart, loadAvg()
	rep.Machine["postgres"] = pgInfo
	path := *jsonPath
	if path == "" {
		path = filepath.Join("results", fmt.Sprintf("%s-%s.json", b.mode(), started.UTC().Format("20060102T150405Z")))
	}
	if err := writeJSON(path, rep); err != nil {
		fmt.Fprintf(os.Stderr, "pulsebench: write %s: %v\n", path, err)
		failed = true
	} else {
		fmt.Printf("\nresults written to %s (%.0fs in all)\n", path, rep.Seconds)
	}
	if *mdPath != "" {
		if err := writeMarkdownFile(*mdPath, rep); err != nil {
			fmt.Fprintf(os.Stderr, "pulsebench: %v\n", err)
			failed = true
		} else {
			fmt.Printf("markdown written to %s\n", *mdPath)
		}
	}
	if failed {
		fmt.Println("pulsebench: FAILED (see errors above)")
		return 1
	}
	return 0
}

// runReport is `pulsebench report results.json`: it prints a run's
// results as Markdown.
func runReport(args []string) int {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(os.Stderr, "usage: pulsebench report results.json   (prints the run as Markdown)")
		return 2
	}
	rep, err := readReport(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulsebench report: %v\n", err)
		return 1
	}
	writeMarkdown(os.Stdout, rep)
	return 0
}

func writeMarkdownFile(path string, rep Report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	writeMarkdown(f, rep)
	return f.Close()
}

func (b *bench) mode() string {
	if b.quick {
		return "quick"
	}
	return "full"
}

// startCPUProfile starts a pprof CPU profile written to path.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
