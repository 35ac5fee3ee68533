// Command pulsebus-demo runs PulseBus end to end on one machine: an
// in-process Kafka-protocol broker (franz-go's kfake) unless --brokers names
// a real one, the schema migrations, the relay and the consumer, a load
// generator writing the EduPulse events through the outbox in real
// transactions, and the handlers of the original sketches (a search indexer
// writing into a table, a badge notifier, a payment ledger, an audit log).
// It prints a live summary every second and, with --duration, a final
// summary, and exits 0 when every event reached every handler that wants
// it.
//
//	make demo                                  # until Ctrl-C
//	go run ./examples/demo/cmd/pulsebus-demo --duration 30s --rate 500
//
// The demo works in a database of its own (--database, default
// pulsebus_demo) on the server of DATABASE_URL, which it drops and creates
// at start and leaves behind for inspection.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/term"

	"github.com/edupulse/pulsebus/examples/demo"
	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/redact"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/migrate"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

func main() {
	ctx, stop := interruptible()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	default:
		fmt.Fprintf(os.Stderr, "pulsebus-demo: %v\n", err)
		os.Exit(cli.ExitCode(err))
	}
}

// exitAborted is the exit status after a second interrupt, as a shell
// reports a process killed by SIGINT.
const exitAborted = 130

// interruptible returns a context cancelled by the first SIGINT or SIGTERM:
// the demo then stops producing and drains. A second signal aborts at once
// with status 130, without waiting for the drain. stop ends the watch.
func interruptible() (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-signals:
			cancel()
		case <-done:
			return
		}
		select {
		case <-signals:
			fmt.Fprintln(os.Stderr, "\npulsebus-demo: aborted; events not yet handled wait in the outbox, on Kafka and in the handler offsets")
			os.Exit(exitAborted)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		close(done)
		cancel()
	}
}

// config is the demo's command line.
type config struct {
	databaseURL string
	database    string
	brokers     []string
	rate        float64
	duration    time.Duration
	drainFor    time.Duration
	partitions  int
	producers   int
	logLevel    string
	dev         bool
	consoleAddr string
}

func parseFlags(args []string, stdout, stderr io.Writer) (config, error) {
	var c config
	cmd := cli.NewCommand("pulsebus-demo", "pulsebus-demo [flags]",
		"Runs relay, consumer, handlers and a load generator on an embedded Kafka-protocol broker\nand prints a live summary. See the README's quick start.")
	cmd.String(&c.databaseURL, "database-url", "DATABASE_URL", cli.DefaultDatabaseURL,
		"PostgreSQL server to use; the demo works in a database of its own on it", nil)
	cmd.String(&c.database, "database", "", "pulsebus_demo", "name of the demo's database, dropped and created at start (refused while another session uses it); pulsebus_dev with --dev", nil)
	cmd.Bool(&c.dev, "dev", "", false, "dev mode: embedded broker, relay and consumer without load; prints the commands to publish and consume yourself")
	var brokers string
	cmd.String(&brokers, "brokers", "", "", "comma-separated Kafka brokers host:port; empty runs an embedded in-process broker", nil)
	cmd.One("rate", "", "200", "float", "business transactions per second the load generator commits (about 1.1 events each)", func(v string) error {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
			return errors.New("must be a positive number")
		}
		c.rate = r
		return nil
	})
	cmd.Duration(&c.duration, "duration", "", 0, 0, 365*24*time.Hour,
		"stop producing after this long, wait for the handlers, print a final summary and exit; 0 runs until Ctrl-C")
	cmd.Duration(&c.drainFor, "drain-timeout", "", time.Minute, time.Second, 24*time.Hour,
		"how long to wait, after producing stopped, for every event to reach every handler")
	cmd.Int(&c.partitions, "partitions", "", 6, 1, 1000, "partitions of the demo topic")
	cmd.Int(&c.producers, "producers", "", 4, 1, 64, "concurrent producer connections of the load generator")
	cmd.String(&c.consoleAddr, "console-addr", "", "127.0.0.1:8080", "listen address of the operator console (token: CONSOLE_TOKEN, or a random one printed at start); empty turns it off", nil)
	cmd.Enum(&c.logLevel, "log-level", "", "warn", []string{"debug", "info", "warn", "error"}, "level of the relay and consumer logs on stderr")
	if err := cmd.Parse(args, stdout, stderr); err != nil {
		return c, err
	}
	if c.dev && cmd.From("database") == "" {
		c.database = "pulsebus_dev"
	}
	for _, b := range strings.Split(brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers = append(c.brokers, b)
		}
	}
	return c, nil
}

const (
	demoTopic = "edupulse.events"
	relayName = "pulsebus-demo"
)

// handlerSpec is one demo handler and what it subscribes to.
type handlerSpec struct {
	name  string
	types []string
}

var demoHandlers = []handlerSpec{
	{"search-indexer", demo.SearchIndexerTypes},
	{"badge-notifier", []string{demo.TypeBadgeAwarded}},
	{"payment-ledger", []string{demo.TypePaymentProcessed}},
	{"audit-log", []string{"*"}},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	log, err := cli.NewLogger(stderr, "text", cfg.logLevel)
	if err != nil {
		return err
	}
	if cfg.dev {
		return runDev(ctx, cfg, stdout, log)
	}

	serverURL, stopPG, err := reachServer(ctx, cfg.databaseURL, log)
	if err != nil {
		return err
	}
	defer stopPG()
	pool, err := recreateDatabase(ctx, serverURL, cfg.database, int32(cfg.producers+16))
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, demo.SchemaSQL); err != nil {
		return fmt.Errorf("create the demo tables: %w", err)
	}

	brokers, brokerDesc := cfg.brokers, "Kafka "+strings.Join(cfg.brokers, ",")
	if len(brokers) == 0 {
		kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(cfg.partitions), demoTopic))
		if err != nil {
			return fmt.Errorf("start the embedded broker: %w", err)
		}
		defer kc.Close()
		brokers = kc.ListenAddrs()
		brokerDesc = "embedded broker " + strings.Join(brokers, ",")
	} else if err := ensureTopic(ctx, brokers, demoTopic, cfg.partitions); err != nil {
		return err
	}

	st := newStats()
	for _, h := range demoHandlers {
		st.addHandler(h.name, h.types)
	}

	stopRelay, err := startRelay(ctx, outbox.RelayConfig{
		Pool: pool, Brokers: brokers, Name: relayName, Logger: log, Hooks: relayHooks(st),
		PollInterval: 500 * time.Millisecond, BacklogInterval: time.Second,
	})
	if err != nil {
		return err
	}
	defer stopRelay()

	// A group of its own per run: with a real broker, an earlier run's
	// committed offsets must not decide where this one starts.
	group := "pulsebus-demo-" + time.Now().UTC().Format("20060102t150405")
	consumer, err := dispatch.New(dispatch.Config{
		Brokers: brokers, Group: group, Topics: []string{demoTopic}, Pool: pool, Logger: log,
		Hooks: consumerHooks{s: st}.hooks(), StartOffset: kafka.LastOffset,
		SessionTimeout: 6 * time.Second, HeartbeatInterval: 500 * time.Millisecond, RebalanceTimeout: 6 * time.Second,
		FetchMaxWait: 50 * time.Millisecond, FlushInterval: 200 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	if err := registerHandlers(consumer, pool); err != nil {
		return err
	}
	consumerCtx, stopConsumer := context.WithCancel(context.WithoutCancel(ctx))
	consumerDone := make(chan error, 1)
	go func() { consumerDone <- consumer.Run(consumerCtx) }()
	defer func() {
		stopConsumer()
		if err := <-consumerDone; err != nil {
			log.Warn("consumer", "err", err)
		}
	}()

	fmt.Fprintf(stdout, "PulseBus demo: PostgreSQL database %s on %s, %s, topic %s (%d partitions)\n",
		cfg.database, redact.DSN(serverURL), brokerDesc, demoTopic, cfg.partitions)
	if cfg.consoleAddr != "" {
		url, token, err := startConsole(consumerCtx, cfg.consoleAddr, pool, brokers, consumer, group, log)
		if err != nil {
			return fmt.Errorf("operator console (--console-addr): %w", err)
		}
		fmt.Fprintf(stdout, "operator console: %s (token %s)\n", url, token)
	}
	fmt.Fprintln(stdout, "waiting for the consumer group to take its partitions...")
	if err := waitForAssignment(ctx, pool, group, len(demoHandlers)*cfg.partitions, consumerDone); err != nil {
		return err
	}

	header := fmt.Sprintf("PulseBus demo · offered %.0f tx/s", cfg.rate)
	if cfg.duration > 0 {
		header += fmt.Sprintf(" for %s", cfg.duration)
	}
	st.start = time.Now()
	loadCtx, stopLoad := context.WithCancel(ctx)
	if cfg.duration > 0 {
		loadCtx, stopLoad = context.WithTimeout(ctx, cfg.duration)
	}
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		newLoad(pool, demoTopic, cfg.rate, cfg.producers, st, log).run(loadCtx)
	}()

	live := newLiveWriter(stdout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-loadDone:
			running = false
		case <-tick.C:
			live.write(st.snapshot(true), header)
		}
	}
	if ctx.Err() != nil && cfg.duration == 0 {
		fmt.Fprintln(stdout, "\ninterrupted: stopping (Ctrl-C again to abort)")
	} else {
		fmt.Fprintf(stdout, "\nproducing stopped; waiting up to %s for every event to reach every handler...\n", cfg.drainFor)
	}

	// Drain: wait until the relay published everything and every handler
	// handled everything it subscribes to. A second interrupt stops waiting.
	waitCtx, cancelWait := context.WithTimeout(context.Background(), cfg.drainFor)
	defer cancelWait()
	interrupted := ctx.Err() != nil
	for !st.snapshot(false).complete() {
		select {
		case <-waitCtx.Done():
		case <-tick.C:
			live.write(st.snapshot(true), header+" · draining")
			continue
		case err := <-consumerDone:
			consumerDone <- err
			return fmt.Errorf("consumer stopped: %v", err)
		}
		break
	}
	final := st.snapshot(false)
	final.writeFinal(stdout)
	switch {
	case final.complete():
		fmt.Fprintln(stdout, "OK: the relay published every event and every handler handled every event it subscribes to, exactly as often as produced.")
		return nil
	case interrupted && cfg.duration == 0:
		fmt.Fprintln(stdout, "stopped before every event was handled; the rest waits in the outbox, on Kafka and in the handler offsets.")
		return nil
	default:
		return errIncomplete
	}
}

// startRelay starts a relay that outlives ctx: after an interrupt it must
// carry the backlog to the handlers while the demo drains. stop ends it.
func startRelay(ctx context.Context, cfg outbox.RelayConfig) (stop func(), err error) {
	relay, err := outbox.NewRelay(cfg)
	if err != nil {
		return nil, err
	}
	if err := relay.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := relay.Stop(sctx); err != nil {
			cfg.Logger.Warn("stop relay", "err", err)
		}
	}, nil
}

func registerHandlers(c *dispatch.Consumer, pool *pgxpool.Pool) error {
	for _, h := range demoHandlers {
		var err error
		switch h.name {
		case "search-indexer":
			err = c.HandleTx(h.name, h.types, demo.SearchIndexer{})
		case "badge-notifier":
			err = c.Handle(h.name, h.types, demo.BadgeNotifier{DB: pool})
		case "payment-ledger":
			err = c.HandleBatchTx(h.name, h.types, demo.PaymentLedger{}, dispatch.WithBatchSize(200))
		case "audit-log":
			err = c.Handle(h.name, h.types, dispatch.HandlerFunc(func(ctx context.Context, env envelope.Envelope) error {
				slog.Debug("audit", "id", env.ID, "type", env.Type, "key", env.Key, "source", env.Source)
				return nil
			}))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// waitForAssignment waits until every handler has an offset row on every
// partition: from then on no event the load writes can fall before a
// handler's start.
func waitForAssignment(ctx context.Context, pool *pgxpool.Pool, group string, want int, consumerDone chan error) error {
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pulsebus.handler_offsets WHERE group_id = $1`, group).Scan(&n); err != nil {
			return err
		}
		if n >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-consumerDone:
			consumerDone <- err
			return fmt.Errorf("consumer stopped before joining: %v", err)
		case <-deadline.C:
			return fmt.Errorf("the consumer did not take its partitions within 60s (%d of %d handler offsets)", n, want)
		case <-poll.C:
		}
	}
}

// liveWriter shows the running counters: on a terminal it redraws a block
// in place, fitted to the terminal's width (read at every redraw, so a
// resize takes effect); otherwise it writes one plain line every
// plainEvery calls, which reads well in a log file.
type liveWriter struct {
	w       io.Writer
	columns func() int // the terminal's width; nil when w is not a terminal
	lines   int        // lines of the block drawn last
	calls   int
}

// plainEvery is how many one-second ticks pass between two plain lines.
const plainEvery = 5

func newLiveWriter(w io.Writer) *liveWriter {
	l := &liveWriter{w: w}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		l.columns = func() int {
			if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 0 {
				return width
			}
			return 80
		}
	}
	return l
}

func (l *liveWriter) write(s snapshot, header string) {
	l.calls++
	if l.columns == nil {
		if l.calls%plainEvery == 1 {
			s.writeLine(l.w)
		}
		return
	}
	if l.lines > 0 {
		fmt.Fprintf(l.w, "\033[%dA\033[J", l.lines) // up to the block's first line, clear to the end
	}
	l.lines = s.writeLive(l.w, header, l.columns())
}

// ensureTopic creates topic on a real cluster unless it exists.
func ensureTopic(ctx context.Context, brokers []string, topic string, partitions int) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1},
	}})
	if err != nil {
		return fmt.Errorf("create topic %s on %v: %w", topic, brokers, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}
