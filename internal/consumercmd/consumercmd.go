package consumercmd

import (
	"context"
	"io"

	"github.com/edupulse/pulsebus/internal/cli"
)

// Run runs the consumer command line (args without the program name),
// writing results to stdout and logs and usage to stderr. It returns nil
// after a clean shutdown (ctx done and the in-flight messages drained);
// [ExitCode] maps its error to the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return commands().Run(ctx, args, stdout, stderr)
}

// commands is the consumer's command line: "consumer --group g ..." runs
// the consumer, "consumer --help" prints run's help, which lists the
// commands too.
func commands() *cli.Group {
	return &cli.Group{
		Name: "consumer",
		About: `Reads a consumer group's Kafka topics and fans each event out to the
configured handlers, each with its own offsets in PostgreSQL.`,
		Default: "run",
		Commands: []cli.Subcommand{
			{Name: "run", Summary: "consume and dispatch to the handlers", Run: runConsumer},
			{Name: "migrate", Summary: "apply the database schema migrations (--status, --down N)", Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				return cli.RunMigrate(ctx, "consumer", args, stdout, stderr)
			}},
			{Name: "offsets", Summary: "per handler, topic and partition: next offset, high watermark, lag", Run: runOffsets},
			{Name: "replay", Summary: "move a handler's offsets to earliest, latest, a time or an offset", Run: runReplay},
			{Name: "dead-letters", Summary: "list, show or redrive dead letters (dead-letters list|show|redrive)", Run: runDeadLetters},
		},
	}
}

// ExitCode maps Run's error to the process exit code, as [cli.ExitCode]
// does: 0 for nil and for --help, 2 for a bad command line or
// configuration (*cli.ConfigError, cli.ErrUsage), 1 for anything that went
// wrong at run time.
func ExitCode(err error) int { return cli.ExitCode(err) }
