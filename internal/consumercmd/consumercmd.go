package consumercmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/edupulse/pulsebus/internal/cli"
)

const topUsage = `Usage: consumer [command] [flags]

Reads a consumer group's Kafka topics and fans each event out to the
configured handlers, each with its own offsets in PostgreSQL.

Commands:
  run            consume and dispatch to the handlers (the default command)
  migrate        apply the database schema migrations (--status, --down N)
  offsets        per handler, topic and partition: next offset, high watermark, lag
  replay         move a handler's offsets to earliest, latest, a time or an offset
  dead-letters   list or redrive parked messages (dead-letters list|redrive)

Run "consumer <command> --help" for a command's flags.
`

// Run runs the consumer command line (args without the program name),
// writing results to stdout and logs and usage to stderr. It returns nil
// after a clean shutdown (ctx done and the in-flight messages drained);
// [ExitCode] maps its error to the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (strings.HasPrefix(args[0], "-") && !isHelp(args[0])) {
		return runConsumer(ctx, args, stdout, stderr)
	}
	switch args[0] {
	case "run":
		return runConsumer(ctx, args[1:], stdout, stderr)
	case "migrate":
		return cli.RunMigrate(ctx, "consumer", args[1:], stdout, stderr)
	case "offsets":
		return runOffsets(ctx, args[1:], stdout, stderr)
	case "replay":
		return runReplay(ctx, args[1:], stdout, stderr)
	case "dead-letters":
		return runDeadLetters(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, topUsage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, topUsage)
		return &usageError{err: fmt.Errorf("unknown command %q", args[0])}
	}
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" }
