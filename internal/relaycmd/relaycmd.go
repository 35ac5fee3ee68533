package relaycmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/edupulse/pulsebus/internal/cli"
)

const prog = "relay"

// Run runs the relay command line args (without the program name), writing
// command output to stdout and logs and usage to stderr. It returns when the
// command is done; for run, when ctx is done and the relay has shut down,
// with nil after a clean shutdown. Use [ExitCode] for the process's exit
// status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd, rest := "run", args
	if len(args) > 0 && !isFlag(args[0]) {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runCommand(ctx, rest, stdout, stderr)
	case "status":
		return statusCommand(ctx, rest, stdout, stderr)
	case "parked":
		return parkedCommand(ctx, rest, stdout, stderr)
	case "migrate":
		// RunMigrate prints to stderr only for a bad command line, and
		// returns the flag package's untyped error then.
		w := &watchWriter{w: stderr}
		err := cli.RunMigrate(ctx, prog, rest, stdout, w)
		if err != nil && w.wrote && !errors.Is(err, flag.ErrHelp) {
			var ce *cli.ConfigError
			if !errors.As(err, &ce) {
				err = fmt.Errorf("%w: %w", cli.ErrUsage, err)
			}
		}
		return err
	case "help":
		if len(rest) > 0 && rest[0] != "help" {
			// "relay help parked list" is "relay parked list --help".
			return Run(ctx, append(slices.Clone(rest), "--help"), stdout, stderr)
		}
		usage(stdout)
		return nil
	default:
		usage(stderr)
		return fmt.Errorf("%w: unknown command %q", cli.ErrUsage, cmd)
	}
}

// isFlag reports whether arg is a flag rather than a subcommand; "relay
// --batch-size 10" runs the relay, "relay --help" prints the top-level
// usage (handled by run's flag set, which lists the commands too).
func isFlag(arg string) bool { return len(arg) > 0 && arg[0] == '-' }

// ExitCode maps an error from [Run] to an exit status: 0 for nil and for
// a help request, 2 for a bad command line or configuration
// (*cli.ConfigError, cli.ErrUsage), 1 for anything else (a runtime failure:
// PostgreSQL or Kafka unreachable, the schema not migrated, ...).
func ExitCode(err error) int {
	var ce *cli.ConfigError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ce), errors.Is(err, cli.ErrUsage):
		return 2
	default:
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: relay [command] [flags]

The PulseBus relay moves events from the PostgreSQL outbox (pulsebus.outbox)
to Kafka: in commit order per key, nothing lost, one leader among replicas.

Commands:
  run       relay events until SIGTERM/SIGINT (the default command)
  status    print the outbox backlog, parked rows and the leader lease
  parked    list, requeue or delete the rows the broker refused for good
  migrate   apply the database schema migrations (--status, --down N)
  help      print this, or "relay help <command>" for a command's flags

Run "relay <command> --help" for a command's flags. Every flag has an
environment variable fallback; flags win over the environment.
`)
}

// parseFlags parses args with fs, printing usage to stdout when help was
// asked for and to stderr on a bad command line, whose error wraps
// cli.ErrUsage.
func parseFlags(fs *flag.FlagSet, args []string, printUsage func(io.Writer), stdout, stderr io.Writer) error {
	out := stderr
	for _, a := range args {
		if a == "--" {
			break
		}
		if slices.Contains([]string{"-h", "-help", "--help", "--h"}, a) {
			out = stdout
		}
	}
	fs.SetOutput(out)
	fs.Usage = func() { printUsage(out) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return &cli.ConfigError{Setting: "arguments", Reason: fmt.Sprintf("unexpected %q; flags only", fs.Args())}
	}
	return nil
}

// watchWriter records whether anything was written through it.
type watchWriter struct {
	w     io.Writer
	wrote bool
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.w.Write(p)
}
