// Command relay is the PulseBus relay: it moves events from the PostgreSQL
// outbox to Kafka. "relay --help" lists its commands and flags; the
// internal/relaycmd package implements them.
//
// Exit status: 0 after a clean shutdown on SIGTERM or SIGINT (and for
// --help), 2 for a bad command line or configuration, 1 for a runtime
// failure. A second signal during shutdown ends the process at once.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/relaycmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore the default action: a second signal kills
	}()
	err := relaycmd.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	cli.ReportError(os.Stderr, "relay", err)
	os.Exit(relaycmd.ExitCode(err))
}
