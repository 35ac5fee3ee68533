package relaycmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/console"
	"github.com/edupulse/pulsebus/internal/kafkaconfig"
	"github.com/edupulse/pulsebus/internal/otelsetup"
	"github.com/edupulse/pulsebus/internal/redact"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/migrate"
	"github.com/edupulse/pulsebus/pkg/outbox"
	"github.com/edupulse/pulsebus/pkg/outbox/outboxprom"
)

// Defaults of the run command that the outbox package does not define.
const (
	DefaultMetricsAddr     = ":9090"
	DefaultShutdownTimeout = 5 * time.Second
	DefaultConnectTimeout  = 10 * time.Second
)

// runConfig is the run command's configuration.
type runConfig struct {
	databaseURL       string
	kafka             kafkaconfig.Config
	name, id          string
	warnings          []string // unsafe but valid settings, logged at start
	batchSize         int
	maxBatchBytes     int
	onRefused         string
	pollInterval      time.Duration
	pollOnly          bool
	leaseTTL          time.Duration
	writeTimeout      time.Duration // 0: the relay's default, min(outbox.DefaultWriteTimeout, leaseTTL/2)
	createTopics      bool
	topicPartitions   int
	replicationFactor int
	compression       string
	maxMessageBytes   int
	maxPayloadBytes   int
	backlogInterval   time.Duration // 0 disables
	metricsAddr       string
	logFormat         string
	logLevel          string
	shutdownTimeout   time.Duration
	connectTimeout    time.Duration
	console           console.Settings
}

var compressions = map[string]kafka.Compression{
	"none": 0, "gzip": kafka.Gzip, "snappy": kafka.Snappy, "lz4": kafka.Lz4, "zstd": kafka.Zstd,
}

// runFlags defines the run command's flags on ss into c.
func runFlags(ss *cli.Settings, c *runConfig) {
	ss.String(&c.databaseURL, "database-url", "DATABASE_URL", cli.DefaultDatabaseURL,
		"PostgreSQL URL or DSN; the password never appears in logs", cli.NonEmpty)
	ss.Secret()
	ss.String(&c.name, "name", "RELAY_NAME", outbox.DefaultRelayName,
		"relay group: relays with the same name share one leader lease and only the leader publishes", cli.NonEmpty)
	ss.String(&c.id, "id", "RELAY_ID", "",
		"this relay's id in the lease row (default hostname-pid-random)", nil)
	ss.Int(&c.batchSize, "batch-size", "RELAY_BATCH_SIZE", outbox.DefaultBatchSize, 1, 100_000,
		"most rows claimed, produced and deleted per transaction")
	ss.Enum(&c.onRefused, "on-refused", "RELAY_ON_REFUSED", string(outbox.OnRefusedHoldKey),
		[]string{string(outbox.OnRefusedHoldKey), string(outbox.OnRefusedPark)},
		"a row the broker refuses for good is parked; with hold-key the later rows of its topic and key wait behind it until it is requeued or deleted, with park they go out without it")
	ss.Int(&c.maxBatchBytes, "max-batch-bytes", "RELAY_MAX_BATCH_BYTES", outbox.DefaultMaxBatchBytes, outbox.MinMaxBatchBytes, math.MaxInt32,
		"most row bytes (payload, key, meta) the relay holds in memory, the batch in hand and the one claimed ahead together; a larger row is claimed alone")
	ss.Duration(&c.pollInterval, "poll-interval", "RELAY_POLL_INTERVAL", outbox.DefaultPollInterval, time.Millisecond, time.Hour,
		"fallback poll period when no notification arrives (jittered down by up to 20%), and how often a standby tries to take the lease")
	ss.Bool(&c.pollOnly, "poll-only", "RELAY_POLL_ONLY", false,
		"do not LISTEN for commits; wake on the poll interval, and follow up quickly after a claim that found rows (for poolers such as PgBouncer in transaction mode)")
	ss.Duration(&c.leaseTTL, "lease-ttl", "RELAY_LEASE_TTL", outbox.DefaultLeaseTTL, 3*time.Second/2, time.Hour,
		"leader lease lifetime without renewal; a standby takes over within lease TTL plus one poll interval after the leader dies")
	ss.Duration(&c.writeTimeout, "write-timeout", "RELAY_WRITE_TIMEOUT", 0, 0, time.Hour,
		"bound on one produce request; must be below the lease TTL (0: 10s or half the lease TTL, whichever is less)")
	ss.ShowDefault("0, meaning min(10s, lease-ttl/2)")
	ss.Bool(&c.createTopics, "create-topics", "RELAY_CREATE_TOPICS", false,
		"create missing topics with --topic-partitions and --topic-replication-factor; when off, rows for a missing topic wait and the error names it")
	ss.Int(&c.topicPartitions, "topic-partitions", "RELAY_TOPIC_PARTITIONS", outbox.DefaultTopicPartitions, 1, 100_000,
		"partitions of a topic the relay creates")
	ss.Int(&c.replicationFactor, "topic-replication-factor", "RELAY_TOPIC_REPLICATION_FACTOR", outbox.DefaultReplicationFactor, 1, 100,
		"replication factor of a topic the relay creates")
	ss.Enum(&c.compression, "compression", "RELAY_COMPRESSION", "none", []string{"none", "gzip", "snappy", "lz4", "zstd"},
		"compression of produced batches")
	ss.Int(&c.maxMessageBytes, "max-message-bytes", "RELAY_MAX_MESSAGE_BYTES", outbox.DefaultMaxMessageBytes, 1024, math.MaxInt32,
		"most bytes per produce request and so per message; larger messages are parked; keep at or below the broker's message.max.bytes")
	ss.Int(&c.maxPayloadBytes, "max-payload-bytes", "RELAY_MAX_PAYLOAD_BYTES", envelope.DefaultMaxPayloadBytes, 1, math.MaxInt32,
		"most payload bytes of an event; larger ones are parked; at most --max-message-bytes; raise it with pulsebus.limits.max_payload_bytes, which producers are held to")
	ss.Duration(&c.backlogInterval, "backlog-interval", "RELAY_BACKLOG_INTERVAL", outbox.DefaultBacklogInterval, 0, time.Hour,
		"how often the backlog gauges are measured, and the parked gauges read at most (0 turns both off)")
	ss.String(&c.metricsAddr, "metrics-addr", "METRICS_ADDR", DefaultMetricsAddr,
		"listen address of /metrics, /healthz and /readyz", checkAddr)
	ss.Enum(&c.logFormat, "log-format", "LOG_FORMAT", "auto", []string{"auto", "json", "text"},
		"log format; auto is text on a terminal, JSON otherwise")
	ss.Enum(&c.logLevel, "log-level", "LOG_LEVEL", "info", []string{"debug", "info", "warn", "error"},
		"least level logged")
	ss.Duration(&c.shutdownTimeout, "shutdown-timeout", "RELAY_SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, time.Millisecond, time.Hour,
		"on SIGTERM, how long the batch in hand may take to finish before it is abandoned (its rows stay in the outbox)")
	ss.Duration(&c.connectTimeout, "connect-timeout", "RELAY_CONNECT_TIMEOUT", DefaultConnectTimeout, time.Millisecond, time.Hour,
		"at start, how long to wait for PostgreSQL and for a Kafka broker to answer")
	c.kafka.Register(ss)
	c.console.Register(ss)
}

func checkAddr(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("is not host:port (e.g. :9090 or 127.0.0.1:9090)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("has no valid port")
	}
	return nil
}

// parseRun parses and checks the run command's flags.
func parseRun(ctx context.Context, args []string, stdout, stderr io.Writer) (runConfig, error) {
	var c runConfig
	cmd := cli.NewRunCommand(ctx, prog+" run", `Relays events from the outbox to Kafka until SIGTERM or SIGINT, then
finishes the batch in hand, releases the leader lease and exits 0. The flags
work without the command name too. Every flag has an environment variable
fallback.`)
	runFlags(cmd.Settings, &c)
	if err := cmd.Parse(args, stdout, stderr); err != nil {
		return c, err
	}
	if err := c.kafka.Validate(); err != nil {
		return c, err
	}
	if err := c.console.Validate(); err != nil {
		return c, err
	}
	if c.writeTimeout >= c.leaseTTL {
		return c, cmd.Invalid("write-timeout", fmt.Sprintf("%s must be below --lease-ttl (RELAY_LEASE_TTL) %s", c.writeTimeout, c.leaseTTL))
	}
	// The default payload limit may exceed a small --max-message-bytes:
	// such payloads are parked as too large, as they always were. One set
	// on purpose must fit a message.
	if c.maxPayloadBytes > c.maxMessageBytes && cmd.From("max-payload-bytes") != "" {
		return c, cmd.Invalid("max-payload-bytes", fmt.Sprintf("%d must not exceed --max-message-bytes (RELAY_MAX_MESSAGE_BYTES) %d: a payload that large never fits a message",
			c.maxPayloadBytes, c.maxMessageBytes))
	}
	c.warnings = append(cmd.Warnings(), c.kafka.Warnings()...)
	return c, nil
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseRun(ctx, args, stdout, stderr)
	if err != nil {
		return err
	}
	log, err := cli.NewLogger(stderr, c.logFormat, c.logLevel)
	if err != nil {
		return err
	}
	for _, w := range c.warnings {
		log.Warn(w)
	}
	stopTracing, err := otelsetup.Start(ctx, cli.AppName(prog, ""), cli.Version(), log)
	if err != nil {
		return err
	}
	defer shutdownTracing(stopTracing, log)
	err = runRelay(ctx, c, log)
	if err != nil && ctx.Err() != nil {
		// A signal while starting (connecting, most likely): a clean stop.
		log.Info("relay stopped during start-up", "err", err)
		return nil
	}
	if err != nil {
		log.Error("relay failed", "err", err)
		return &cli.LoggedError{Err: err}
	}
	return nil
}

func runRelay(ctx context.Context, c runConfig, log *slog.Logger) error {
	log.Info("relay starting",
		"version", cli.Version(),
		"database", redact.DSN(c.databaseURL),
		"kafka", c.kafka.String(),
		"name", c.name,
		"batch_size", c.batchSize,
		"max_batch_bytes", c.maxBatchBytes,
		"on_refused", c.onRefused,
		"poll_interval", c.pollInterval,
		"poll_only", c.pollOnly,
		"lease_ttl", c.leaseTTL,
		"create_topics", c.createTopics,
		"topic_partitions", c.topicPartitions,
		"topic_replication_factor", c.replicationFactor,
		"compression", c.compression,
		"max_message_bytes", c.maxMessageBytes,
		"max_payload_bytes", c.maxPayloadBytes,
		"backlog_interval", c.backlogInterval,
		"metrics_addr", c.metricsAddr,
		"shutdown_timeout", c.shutdownTimeout,
		"connect_timeout", c.connectTimeout,
	)

	startCtx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	pool, err := connectDB(startCtx, c.databaseURL, cli.AppName(prog, ""), c.connectTimeout)
	if err != nil {
		return err
	}
	// engineStuck: the relay engine did not stop; its goroutines still hold
	// connections, and closing the pool would wait for them.
	engineStuck := false
	defer func() {
		if !engineStuck {
			pool.Close()
		}
	}()

	limits := envelope.DefaultLimits()
	limits.MaxPayloadBytes = c.maxPayloadBytes
	warnAboutSchemaLimits(ctx, pool, limits, log)

	transport, err := c.kafka.Transport()
	if err != nil {
		return err
	}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(c.kafka.Brokers...), Transport: transport, Timeout: c.connectTimeout}
	if err := c.kafka.WaitForBroker(startCtx, c.connectTimeout, log); err != nil {
		return err
	}
	cancel()

	metrics := outboxprom.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics,
	)
	backlogInterval := c.backlogInterval
	if backlogInterval == 0 {
		backlogInterval = -1
	} else {
		// Read at scrape time, at most once per backlog interval, so the
		// parked-rows alert fires while rows stay parked and after a
		// restart.
		reg.MustRegister(outboxprom.NewParkedGauges(pool, outboxprom.StateOptions{MaxAge: c.backlogInterval,
			HoldKeys: c.onRefused == string(outbox.OnRefusedHoldKey)}))
	}
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool:                   pool,
		Brokers:                c.kafka.Brokers,
		Transport:              transport,
		Compression:            compressions[c.compression],
		Name:                   c.name,
		ID:                     c.id,
		LeaseTTL:               c.leaseTTL,
		BatchSize:              c.batchSize,
		PollInterval:           c.pollInterval,
		PollOnly:               c.pollOnly,
		WriteTimeout:           c.writeTimeout,
		MaxMessageBytes:        c.maxMessageBytes,
		Limits:                 &limits,
		MaxBatchBytes:          c.maxBatchBytes,
		OnRefused:              outbox.OnRefused(c.onRefused),
		AutoCreateTopics:       c.createTopics,
		TopicPartitions:        c.topicPartitions,
		TopicReplicationFactor: c.replicationFactor,
		BacklogInterval:        backlogInterval,
		Hooks:                  relayHooks(metrics, c.createTopics, log),
		Logger:                 log,
	})
	if err != nil {
		return &cli.ConfigError{Setting: "relay configuration", Reason: err.Error()}
	}

	ready := &readiness{pool: pool, client: client, relay: relay, name: c.name, log: log}
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	addr, httpDone, err := serveHTTP(httpCtx, c.metricsAddr, handler(reg, ready))
	if err != nil {
		return err
	}
	log.Info("serving /metrics, /healthz and /readyz", "addr", addr)
	var consoleDone <-chan error
	if c.console.Addr != "" {
		if consoleDone, err = startConsole(httpCtx, c, pool, log); err != nil {
			return err
		}
	}

	if err := relay.Start(ctx); err != nil {
		return err
	}
	// The library fills in what the flags leave zero; log what it chose.
	log.Info("relay started", "relay_id", relay.ID(), "write_timeout", relay.Config().WriteTimeout)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: stop claiming, finish the batch in hand, release the lease",
			"cause", context.Cause(ctx), "shutdown_timeout", c.shutdownTimeout)
	case err := <-httpDone:
		runErr = fmt.Errorf("metrics and health server on %s: %w", addr, err)
	case err := <-consoleDone:
		runErr = fmt.Errorf("console on %s: %w", c.console.Addr, err)
	}
	ready.stopping.Store(true)
	if !stopRelay(relay, c.shutdownTimeout, log) {
		// Something in the engine did not return. Nothing is lost by
		// leaving now: rows are deleted only by a committed transaction,
		// and an unreleased lease expires after its TTL. The process
		// exits; an in-process caller leaks the engine's goroutines.
		engineStuck = true
		stopHTTP()
		return runErr
	}
	stopHTTP()
	if err := <-httpDone; err != nil && runErr == nil {
		log.Warn("metrics and health server shutdown", "err", err)
	}
	if runErr == nil {
		log.Info("relay stopped")
	}
	return runErr
}

// startConsole serves the operator console until ctx is done.
func startConsole(ctx context.Context, c runConfig, pool *pgxpool.Pool, log *slog.Logger) (<-chan error, error) {
	cfg, err := ConsoleConfig(c.console, prog, pool, &c.kafka, log)
	if err != nil {
		return nil, err
	}
	srv, err := console.New(cfg)
	if err != nil {
		return nil, err
	}
	_, done, err := srv.Start(ctx)
	return done, err
}

// StopGrace is how long past --shutdown-timeout Run waits for the relay
// engine to wind down (release the lease, close the Kafka writer) before it
// returns anyway, so the process exits within shutdown timeout + StopGrace.
const StopGrace = 3 * time.Second

// stopRelay stops relay, abandoning the batch in hand after timeout, and
// reports whether it stopped within timeout + StopGrace.
func stopRelay(relay *outbox.Relay, timeout time.Duration, log *slog.Logger) bool {
	stopCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- relay.Stop(stopCtx) }()
	grace := time.NewTimer(timeout + StopGrace)
	defer grace.Stop()
	select {
	case err := <-done:
		if err != nil {
			log.Warn("relay stop: the batch in hand was abandoned; its rows stay in the outbox", "err", err)
		}
		return true
	case <-grace.C:
		log.Error("relay stop: the relay engine did not stop within the shutdown timeout plus grace; exiting without it (rows not yet deleted stay in the outbox)",
			"shutdown_timeout", timeout, "grace", StopGrace, "lease_released", !relay.IsLeader())
		return false
	}
}

// connectDB opens the pool, bounding every new connection's dial by
// timeout, and checks the schema is migrated.
func connectDB(ctx context.Context, databaseURL, appName string, timeout time.Duration) (*pgxpool.Pool, error) {
	if _, err := pgxpool.ParseConfig(databaseURL); err != nil {
		return nil, &cli.ConfigError{Setting: "--database-url (DATABASE_URL)", Reason: "not a valid PostgreSQL URL or DSN"}
	}
	pool, err := cli.Connect(ctx, databaseURL, appName)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("%w (no answer within --connect-timeout %s)", err, timeout)
		}
		return nil, err
	}
	if err := migrate.Check(ctx, pool); err != nil {
		pool.Close()
		if errors.Is(err, migrate.ErrOutdated) {
			return nil, fmt.Errorf("%w: run %s migrate with the same --database-url", err, prog)
		}
		return nil, fmt.Errorf("check schema at %s: %w", redact.DSN(databaseURL), err)
	}
	return pool, nil
}

// warnAboutSchemaLimits logs a warning when pulsebus.limits lets producers
// write events that the relay, with limits, would park: a limit raised in
// the schema and not on the relay.
func warnAboutSchemaLimits(ctx context.Context, pool *pgxpool.Pool, limits envelope.Limits, log *slog.Logger) {
	schema, err := outbox.LoadLimits(ctx, pool)
	if err != nil {
		log.Warn("could not compare the relay's limits with pulsebus.limits", "err", err)
		return
	}
	for _, l := range []struct {
		name            string
		schema, relay   int
		raiseOnTheRelay string
	}{
		{"max_payload_bytes", schema.MaxPayloadBytes, limits.MaxPayloadBytes, "--max-payload-bytes"},
		{"max_key_bytes", schema.MaxKeyBytes, limits.MaxKeyBytes, ""},
		{"max_headers", schema.MaxHeaders, limits.MaxHeaders, ""},
		{"max_header_value_bytes", schema.MaxHeaderValueBytes, limits.MaxHeaderValueBytes, ""},
	} {
		if l.schema > l.relay {
			fix := "lower it in pulsebus.limits"
			if l.raiseOnTheRelay != "" {
				fix = "raise " + l.raiseOnTheRelay + " (and --max-message-bytes, within the broker's message.max.bytes) or lower it in pulsebus.limits"
			}
			log.Warn("pulsebus.limits lets producers write events this relay parks: "+fix,
				"limit", "pulsebus.limits."+l.name, "schema", l.schema, "relay", l.relay)
		}
	}
}

// pingKafka asks a broker for its API versions.
func pingKafka(ctx context.Context, client *kafka.Client) error {
	resp, err := client.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	if err != nil {
		return err
	}
	return resp.Error
}

// shutdownTracing flushes the spans still buffered, for at most 5 s.
func shutdownTracing(stop func(context.Context) error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn("OpenTelemetry: flushing spans at exit", "err", err)
	}
}

// relayHooks are the metrics' hooks and, unless the relay creates topics,
// a hint on how to let it: the library's error for a missing topic names
// RelayConfig.AutoCreateTopics, not the flag that sets it. The hint is
// logged at most once per missingTopicHintEvery.
func relayHooks(metrics *outboxprom.Metrics, createTopics bool, log *slog.Logger) outbox.Hooks {
	hooks := metrics.Hooks()
	if createTopics {
		return hooks
	}
	count := hooks.OnPublishFailed
	var lastHint atomic.Int64 // unix nanoseconds
	hooks.OnPublishFailed = func(reason outbox.Reason) {
		count(reason)
		if reason != outbox.ReasonUnknownTopic {
			return
		}
		now, last := time.Now().UnixNano(), lastHint.Load()
		if last != 0 && now-last < int64(missingTopicHintEvery) || !lastHint.CompareAndSwap(last, now) {
			return
		}
		log.Warn("a Kafka topic the outbox has rows for does not exist: create it, or start the relay with --create-topics (RELAY_CREATE_TOPICS)")
	}
	return hooks
}

// missingTopicHintEvery is the least time between two hints on a missing
// topic.
const missingTopicHintEvery = time.Minute
