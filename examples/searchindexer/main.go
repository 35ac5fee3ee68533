// Command searchindexer shows how a team builds its own consumer binary with
// Go handlers, using only PulseBus's public packages: pkg/dispatch for the
// consumer, pkg/dispatch/dispatchprom for its metrics, pkg/envelope for the
// typed events and pgx for the database. See README.md.
//
//	DATABASE_URL=postgres://... KAFKA_BROKERS=localhost:29092 go run ./examples/searchindexer
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/dispatch/dispatchprom"
	"github.com/edupulse/pulsebus/pkg/migrate"
)

// config is the service's configuration: flags, defaulting to the
// environment.
type config struct {
	DatabaseURL string
	Brokers     []string
	Group       string
	Topics      []string
	MetricsAddr string // empty: no metrics server
}

func main() {
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	var cfg config
	var brokers, topics string
	flag.StringVar(&cfg.DatabaseURL, "database-url", env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"), "PostgreSQL URL (env DATABASE_URL)")
	flag.StringVar(&brokers, "brokers", env("KAFKA_BROKERS", "127.0.0.1:9092"), "Kafka brokers, comma-separated (env KAFKA_BROKERS)")
	flag.StringVar(&cfg.Group, "group", env("CONSUMER_GROUP", "search-indexer"), "consumer group (env CONSUMER_GROUP)")
	flag.StringVar(&topics, "topics", env("CONSUMER_TOPICS", "edupulse.events"), "topics, comma-separated (env CONSUMER_TOPICS)")
	flag.StringVar(&cfg.MetricsAddr, "metrics-addr", env("METRICS_ADDR", ":9092"), "address of /metrics (env METRICS_ADDR)")
	flag.Parse()
	cfg.Brokers, cfg.Topics = strings.Split(brokers, ","), strings.Split(topics, ",")

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	// SIGTERM cancels ctx; run then drains the in-flight events and returns.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("search indexer failed", "err", err)
		os.Exit(1)
	}
}

// run consumes until ctx is done.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return errors.New("DATABASE_URL is not a valid PostgreSQL URL")
	}
	// A transactional handler holds a connection per partition it is
	// working on: leave room for every assigned partition.
	poolCfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	// PulseBus's tables come from its migrations (`consumer migrate`); the
	// indexer's own table is the service's business.
	if err := migrate.Check(ctx, pool); err != nil {
		return fmt.Errorf("%w: run consumer migrate with this DATABASE_URL first", err)
	}
	if _, err := pool.Exec(ctx, tableSQL); err != nil {
		return fmt.Errorf("create search_documents: %w", err)
	}

	metrics := dispatchprom.New()
	c, err := dispatch.New(dispatch.Config{
		Brokers: cfg.Brokers,
		Group:   cfg.Group,
		Topics:  cfg.Topics,
		Pool:    pool,
		Logger:  log,
		Hooks:   metrics.Hooks(),
		Retry:   dispatch.RetryPolicy{MaxAttempts: 10, MaxElapsed: time.Minute},
	})
	if err != nil {
		return err
	}
	if err := c.HandleTx("search-indexer", Types, Indexer{}); err != nil {
		return err
	}

	if cfg.MetricsAddr != "" {
		// The handler's counters at 0 from the first scrape, and its stored
		// dead letters, which the dashboard and alert rules read.
		metrics.InitHandlers("search-indexer")
		reg := prometheus.NewRegistry()
		reg.MustRegister(metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			dispatchprom.NewDeadLetterGauges(pool, cfg.Group, []string{"search-indexer"}, dispatchprom.StateOptions{}))
		srv := &http.Server{Addr: cfg.MetricsAddr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer srv.Close()
	}
	return c.Run(ctx)
}
