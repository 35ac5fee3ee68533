// Command consumer is the PulseBus consumer: it reads a consumer group's
// topics and fans events out to webhook and log handlers, with per-handler
// offsets, retries, dead letters and replay. See internal/consumercmd and
// the README for its subcommands, flags and environment variables.
//
// Exit codes: 0 after a clean shutdown (SIGTERM or SIGINT, in-flight
// messages drained) or --help; 2 for a bad command line or configuration; 1
// for a failure at run time.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/consumercmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := consumercmd.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	cli.ReportError(os.Stderr, "consumer", err)
	os.Exit(consumercmd.ExitCode(err))
}
