package consumercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/console"
	"github.com/edupulse/pulsebus/internal/httpserve"
	"github.com/edupulse/pulsebus/internal/kafkaconfig"
	"github.com/edupulse/pulsebus/internal/kafkaname"
	"github.com/edupulse/pulsebus/internal/otelsetup"
	"github.com/edupulse/pulsebus/internal/redact"
	"github.com/edupulse/pulsebus/internal/relaycmd"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/dispatch/dispatchprom"
)

// Defaults of the run command that differ from the library's.
const (
	// DefaultMetricsAddr leaves :9090 to the relay, so both can share a
	// host.
	DefaultMetricsAddr = ":9091"
	// DefaultConnectTimeout is how long the consumer waits at start for
	// PostgreSQL and a Kafka broker to answer, as the relay does.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultDrainTimeout fits inside docker compose's 15 s stop grace
	// period and Kubernetes' default 30 s.
	DefaultDrainTimeout = 10 * time.Second
)

// runConfig is the run command's configuration.
type runConfig struct {
	databaseURL   string
	kafka         kafkaconfig.Config
	group         string
	topics        string
	handlers      []string // specs, from --handler or CONSUMER_HANDLERS
	metricsAddr   string
	logFormat     string
	logLevel      string
	retry         dispatch.RetryPolicy
	startOffset   string
	drainTimeout  time.Duration
	flushInterval time.Duration
	sessionTO     time.Duration
	stallTimeout  time.Duration
	console       console.Settings
	connectTO     time.Duration

	// Set by validate.
	specs     []HandlerSpec
	topicList []string
	start     int64
	log       *slog.Logger
}

func (rc *runConfig) register(c *cli.Command) {
	c.String(&rc.databaseURL, "database-url", "DATABASE_URL", cli.DefaultDatabaseURL, "PostgreSQL URL or DSN holding the pulsebus schema", nil)
	c.Secret()
	rc.kafka.Register(c.Settings)
	c.String(&rc.group, "group", "CONSUMER_GROUP", "", "consumer group: the Kafka group and the group_id of the handler offsets (required)", nil)
	c.String(&rc.topics, "topics", "CONSUMER_TOPICS", "", "comma-separated topics to consume (required)", nil)
	c.List(&rc.handlers, "handler", "CONSUMER_HANDLERS", "handler spec: name=N,types=T1|prefix.*|*,webhook=URL|log=LEVEL[,timeout=D][,header=Name:Value][,max-attempts=N][,max-elapsed=D][,retry-for=D][,on-failure=hold-key|dead-letter]; in CONSUMER_HANDLERS, specs separated by ';' or newlines", splitEnvSpecs)
	c.String(&rc.metricsAddr, "metrics-addr", "METRICS_ADDR", DefaultMetricsAddr, "listen address of /metrics, /healthz and /readyz; empty disables", nil)
	c.String(&rc.logFormat, "log-format", "LOG_FORMAT", "auto", "log format: auto (text on a terminal, else JSON), json or text", nil)
	c.String(&rc.logLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn or error", nil)
	c.Int(&rc.retry.MaxAttempts, "max-attempts", "CONSUMER_MAX_ATTEMPTS", dispatch.DefaultMaxAttempts, minInt, maxInt, "attempts per event and handler failing with an error neither transient nor permanent before it is dead-lettered (first one included)")
	c.Duration(&rc.retry.MaxElapsed, "max-elapsed", "CONSUMER_MAX_ELAPSED", dispatch.DefaultMaxElapsed, minDuration, maxDuration, "no retry of an error neither transient nor permanent starts later than this after an event's first attempt")
	c.Duration(&rc.retry.RetryFor, "retry-for", "CONSUMER_RETRY_FOR", dispatch.DefaultRetryFor, minDuration, maxDuration, "how long transient failures (network errors, timeouts, HTTP 5xx, 408, 429) are retried, holding the partition for the handler, before the event is dead-lettered")
	c.Duration(&rc.retry.InitialInterval, "retry-initial-interval", "CONSUMER_RETRY_INITIAL_INTERVAL", dispatch.DefaultInitialInterval, minDuration, maxDuration, "first retry back-off; each next one is 1.5 times longer, with jitter")
	c.Duration(&rc.retry.MaxInterval, "retry-max-interval", "CONSUMER_RETRY_MAX_INTERVAL", dispatch.DefaultMaxInterval, minDuration, maxDuration, "longest single retry back-off")
	c.String(&rc.startOffset, "start-offset", "CONSUMER_START_OFFSET", "earliest", "where a handler starts on a partition it has no offset for (and the group none): earliest or latest", nil)
	c.Duration(&rc.drainTimeout, "drain-timeout", "CONSUMER_DRAIN_TIMEOUT", DefaultDrainTimeout, minDuration, maxDuration, "on SIGTERM, how long in-flight handlers may finish before they are cancelled")
	c.Duration(&rc.flushInterval, "flush-interval", "CONSUMER_FLUSH_INTERVAL", dispatch.DefaultFlushInterval, minDuration, maxDuration, "how often plain handlers' progress is saved: at most this much is re-delivered after a crash")
	c.Duration(&rc.sessionTO, "session-timeout", "CONSUMER_SESSION_TIMEOUT", dispatch.DefaultSessionTimeout, minDuration, maxDuration, "Kafka group session timeout: how soon a dead member's partitions move")
	c.Duration(&rc.connectTO, "connect-timeout", "CONSUMER_CONNECT_TIMEOUT", DefaultConnectTimeout, minDuration, maxDuration, "at start, how long to wait for PostgreSQL and for a Kafka broker to answer, retrying with back-off; then exit 1")
	c.Duration(&rc.stallTimeout, "stall-timeout", "CONSUMER_STALL_TIMEOUT", dispatch.DefaultStallTimeout, minDuration, maxDuration, "a handler that has not advanced on a partition for this long while messages wait is stalled: logged at error, counted, /readyz not ready")
	rc.console.Register(c.Settings)
}

// validate checks the settings; errors are *cli.ConfigError naming the flag
// and its environment variable.
func (rc *runConfig) validate(c *cli.Command, stderr io.Writer) error {
	var err error
	if rc.log, err = cli.NewLogger(stderr, rc.logFormat, rc.logLevel); err != nil {
		return err
	}
	for _, w := range append(c.Warnings(), rc.kafka.Warnings()...) {
		rc.log.Warn(w)
	}
	if rc.group == "" {
		return c.Invalid("group", "required")
	}
	rc.topicList = cli.SplitList(rc.topics)
	if len(rc.topicList) == 0 {
		return c.Invalid("topics", "required: at least one topic")
	}
	for _, t := range rc.topicList {
		if err := kafkaname.ValidateTopic(t); err != nil {
			return c.Invalid("topics", err.Error())
		}
	}
	if rc.specs, err = parseHandlerSpecs(c.Settings, "handler", "CONSUMER_HANDLERS", rc.handlers); err != nil {
		return err
	}
	if len(rc.specs) == 0 {
		return c.Invalid("handler", "required: at least one handler, e.g. name=audit,types=*,log=info")
	}
	if err := checkRetry(c, rc.retry); err != nil {
		return err
	}
	switch rc.startOffset {
	case "earliest":
		rc.start = kafka.FirstOffset
	case "latest":
		rc.start = kafka.LastOffset
	default:
		return c.Invalid("start-offset", fmt.Sprintf("%q is not earliest or latest", rc.startOffset))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"drain-timeout", rc.drainTimeout},
		{"flush-interval", rc.flushInterval},
		{"session-timeout", rc.sessionTO},
		{"stall-timeout", rc.stallTimeout},
		{"connect-timeout", rc.connectTO},
	} {
		if d.v <= 0 {
			return c.Invalid(d.name, fmt.Sprintf("%s is not a positive duration", d.v))
		}
	}
	if rc.metricsAddr != "" {
		host, port, err := net.SplitHostPort(rc.metricsAddr)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 || strings.ContainsAny(host, " /") {
			return c.Invalid("metrics-addr", fmt.Sprintf("%q is not host:port (e.g. :9091)", rc.metricsAddr))
		}
	}
	if err := rc.console.Validate(); err != nil {
		return err
	}
	return rc.kafka.Validate()
}

func checkRetry(c *cli.Command, p dispatch.RetryPolicy) error {
	switch {
	case p.MaxAttempts < 1:
		return c.Invalid("max-attempts", fmt.Sprintf("%d: want at least 1", p.MaxAttempts))
	case p.MaxElapsed <= 0:
		return c.Invalid("max-elapsed", fmt.Sprintf("%s is not a positive duration", p.MaxElapsed))
	case p.RetryFor <= 0:
		return c.Invalid("retry-for", fmt.Sprintf("%s is not a positive duration", p.RetryFor))
	case p.InitialInterval <= 0:
		return c.Invalid("retry-initial-interval", fmt.Sprintf("%s is not a positive duration", p.InitialInterval))
	case p.MaxInterval < p.InitialInterval:
		return c.Invalid("retry-max-interval", fmt.Sprintf("%s is shorter than --retry-initial-interval %s", p.MaxInterval, p.InitialInterval))
	}
	return nil
}

const runAbout = `Joins the consumer group, reads the topics and runs every configured handler
on the events it wants, each handler with its own offsets in PostgreSQL. A
handler failing transiently (its endpoint unreachable, timing out or answering
5xx, 408 or 429) is retried with back-off for --retry-for, holding its
partition; a failure for good (another 4xx) parks the event in the dead
letters at once, any other failure after --max-attempts; then the handler
moves on (with on-failure=hold-key in its spec, the event's key waits: its
later events are held behind the dead letter until it is redriven or
deleted, while the other keys go on). SIGTERM or SIGINT stops fetching, lets the in-flight handlers finish
(--drain-timeout), saves progress and exits 0.

Built-in handlers (--handler, repeatable, or CONSUMER_HANDLERS):
  name=audit-log,types=*,log=info
  name=search,types=lesson.*|quiz.submitted,webhook=https://search.internal/events,timeout=5s
  name=crm,types=payment.processed,webhook=https://crm/hook,header=Authorization:Bearer ${CRM_TOKEN},retry-for=30m
A webhook handler POSTs each event as a CloudEvent (HTTP binary mode) and
retries network errors, timeouts, 5xx, 408 and 429 (waiting at least what a
Retry-After asks for) for --retry-for or the spec's retry-for; other statuses
park the event at once. ${VAR} in a header value is read from the
environment.`

func runConsumer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := cli.NewRunCommand(ctx, "consumer run", runAbout)
	var rc runConfig
	rc.register(cmd)
	if err := cmd.Parse(args, stdout, stderr); err != nil {
		return err
	}
	if err := rc.validate(cmd, stderr); err != nil {
		return err
	}
	log := rc.log
	stopTracing, err := otelsetup.Start(ctx, cli.AppName("consumer", ""), cli.Version(), log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("OpenTelemetry: flushing spans at exit", "err", err)
		}
	}()
	dialer, err := rc.kafka.Dialer()
	if err != nil {
		return err
	}
	pool, err := rc.connect(ctx)
	if err != nil && ctx.Err() != nil {
		// A signal while starting (waiting for a broker, most likely): a
		// clean stop.
		log.Info("consumer stopped during start-up", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	defer pool.Close()

	metrics := dispatchprom.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	c, err := dispatch.New(dispatch.Config{
		Brokers:        rc.kafka.Brokers,
		Dialer:         dialer,
		Group:          rc.group,
		Topics:         rc.topicList,
		Pool:           pool,
		Logger:         log,
		Hooks:          metrics.Hooks(),
		Retry:          rc.retry,
		StartOffset:    rc.start,
		DrainTimeout:   rc.drainTimeout,
		FlushInterval:  rc.flushInterval,
		SessionTimeout: rc.sessionTO,
		StallTimeout:   rc.stallTimeout,
	})
	if err != nil {
		return err
	}
	descs, err := registerHandlers(c, rc.specs, log, true, cmd.Label("handler"))
	if err != nil {
		return err
	}
	// Every handler's series from the first scrape: its counters at 0, and
	// its dead letters as stored in PostgreSQL.
	handlerNames := make([]string, len(rc.specs))
	for i, s := range rc.specs {
		handlerNames[i] = s.Name
	}
	metrics.InitHandlers(handlerNames...)
	reg.MustRegister(dispatchprom.NewDeadLetterGauges(pool, rc.group, handlerNames, dispatchprom.StateOptions{}))
	log.Info("consumer configuration", "version", cli.Version(), "group", rc.group, "topics", rc.topicList, "kafka", rc.kafka.String(),
		"database", redact.DSN(rc.databaseURL), "handlers", descs, "start_offset", rc.startOffset,
		"max_attempts", rc.retry.MaxAttempts, "max_elapsed", rc.retry.MaxElapsed, "retry_for", rc.retry.RetryFor, "drain_timeout", rc.drainTimeout,
		"connect_timeout", rc.connectTO)

	// The HTTP server outlives ctx until the consumer has drained, so
	// /metrics shows the drain.
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	var httpDone <-chan error
	if rc.metricsAddr != "" {
		ready := &readiness{ready: func(ctx context.Context) error {
			if err := c.Ready(ctx); err != nil {
				return err
			}
			return c.Stalled()
		}, log: log}
		_, httpDone, err = httpserve.Start(httpCtx, rc.metricsAddr, reg, ready.check, log)
		if err != nil {
			return fmt.Errorf("--metrics-addr (METRICS_ADDR): %w", err)
		}
	}
	if rc.console.Addr != "" {
		if err := startConsole(httpCtx, rc, c, pool, reg, log); err != nil {
			return err
		}
	}
	runErr := c.Run(ctx)
	stopHTTP()
	if httpDone != nil {
		if err := <-httpDone; err != nil && runErr == nil {
			log.Warn("metrics server", "err", err)
		}
	}
	if runErr != nil {
		return runErr
	}
	log.Info("consumer exited cleanly")
	return nil
}

// startConsole serves the operator console until ctx is done; it redrives
// dead letters of the handlers this consumer runs and shows their
// commit-to-handle p99 from reg. A console that fails
// while serving is logged; the consumer keeps running.
func startConsole(ctx context.Context, rc runConfig, c *dispatch.Consumer, pool *pgxpool.Pool, reg prometheus.Gatherer, log *slog.Logger) error {
	cfg, err := relaycmd.ConsoleConfig(rc.console, "consumer", pool, &rc.kafka, log)
	if err != nil {
		return err
	}
	cfg.Redrive, cfg.RedriveGroup, cfg.Metrics = &dispatch.Admin{Pool: pool, Consumer: c}, rc.group, reg
	for _, s := range rc.specs {
		cfg.RedriveHandlers = append(cfg.RedriveHandlers, s.Name)
	}
	srv, err := console.New(cfg)
	if err != nil {
		return err
	}
	_, done, err := srv.Start(ctx)
	if err != nil {
		return err
	}
	go func() {
		if err := <-done; err != nil {
			log.Error("console stopped", "err", err)
		}
	}()
	return nil
}

// connect waits, within --connect-timeout, for PostgreSQL, checks the
// schema and waits for a Kafka broker to answer.
func (rc *runConfig) connect(ctx context.Context) (*pgxpool.Pool, error) {
	startCtx, cancel := context.WithTimeout(ctx, rc.connectTO)
	defer cancel()
	pool, err := cli.Connect(startCtx, rc.databaseURL, cli.AppName("consumer", ""))
	if err != nil {
		if startCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (no answer within --connect-timeout %s)", err, rc.connectTO)
		}
		return nil, err
	}
	if err := checkSchema(startCtx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	if err := rc.kafka.WaitForBroker(startCtx, rc.connectTO, rc.log); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// registerHandlers builds the built-in handlers of specs and registers them
// on c, returning their descriptions for the log. warnHidden warns about log
// handlers whose level the logger does not show; setting names the specs'
// flag and variable in errors.
func registerHandlers(c *dispatch.Consumer, specs []HandlerSpec, log *slog.Logger, warnHidden bool, setting string) ([]string, error) {
	descs := make([]string, 0, len(specs))
	for _, s := range specs {
		var h dispatch.Handler
		if s.Log != nil {
			h = newLogHandler(log, s.Name, *s.Log)
			if warnHidden && !log.Enabled(context.Background(), *s.Log) {
				log.Warn("log handler writes below --log-level: its lines will not show", "handler", s.Name, "level", s.Log.String())
			}
		} else {
			wh, err := s.newWebhook()
			if err != nil {
				return nil, &cli.ConfigError{Setting: setting, Reason: fmt.Sprintf("handler %s: %v", s.Name, err)}
			}
			h = wh
		}
		opts := []dispatch.HandlerOption{dispatch.WithRetry(s.Retry)}
		if s.HoldKey {
			opts = append(opts, dispatch.WithKeyOrder())
		}
		if err := c.Handle(s.Name, s.Types, h, opts...); err != nil {
			var ce *cli.ConfigError
			if errors.As(err, &ce) {
				return nil, err
			}
			return nil, &cli.ConfigError{Setting: setting, Reason: err.Error()}
		}
		descs = append(descs, s.Describe())
	}
	return descs, nil
}
