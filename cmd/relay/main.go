// Command relay is the PulseBus relay. See the README for its subcommands,
// flags and environment variables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/edupulse/pulsebus/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "relay: %v\n", err)
		}
		os.Exit(2)
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: relay <command> [flags]

Commands:
  migrate   apply the database schema migrations (--status, --down N)

Run "relay <command> --help" for a command's flags.
`)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return flag.ErrHelp
	}
	switch args[0] {
	case "migrate":
		return cli.RunMigrate(ctx, "relay", args[1:], stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		return nil
	default:
		usage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
