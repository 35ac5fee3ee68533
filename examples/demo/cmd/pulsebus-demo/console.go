package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/internal/console"
	"github.com/edupulse/pulsebus/internal/relaycmd"
	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// startConsole serves the operator console on addr until ctx is done, with
// every action the demo's relay and consumer can take. Its token is
// CONSOLE_TOKEN, or a random one. It returns the console's URL and token.
func startConsole(ctx context.Context, addr string, pool *pgxpool.Pool, brokers []string, consumer *dispatch.Consumer, group string, log *slog.Logger) (url, token string, err error) {
	token = os.Getenv("CONSOLE_TOKEN")
	if token == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		token = hex.EncodeToString(b)
	}
	transport := &kafka.Transport{}
	cfg := console.Config{
		Settings:     console.Settings{Addr: addr, Token: token},
		Binary:       "demo",
		Data:         console.NewData(pool),
		Kafka:        &kafka.Client{Addr: kafka.TCP(brokers...), Transport: transport, Timeout: 5 * time.Second},
		Parked:       relaycmd.ConsoleParked(pool),
		Replay:       &dispatch.Admin{Pool: pool, Brokers: brokers},
		Redrive:      &dispatch.Admin{Pool: pool, Consumer: consumer},
		RedriveGroup: group,
		Logger:       log,
	}
	for _, h := range demoHandlers {
		cfg.RedriveHandlers = append(cfg.RedriveHandlers, h.name)
	}
	srv, err := console.New(cfg)
	if err != nil {
		return "", "", err
	}
	bound, done, err := srv.Start(ctx)
	if err != nil {
		return "", "", err
	}
	go func() {
		if err := <-done; err != nil {
			log.Warn("console", "err", err)
		}
		transport.CloseIdleConnections()
	}()
	return "http://" + bound + "/", token, nil
}
