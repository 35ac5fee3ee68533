package relaycmd

import (
	"context"
	"io"

	"github.com/edupulse/pulsebus/internal/cli"
)

const prog = "relay"

// Run runs the relay command line args (without the program name), writing
// command output to stdout and logs and usage to stderr. It returns when the
// command is done; for run, when ctx is done and the relay has shut down,
// with nil after a clean shutdown. Use [ExitCode] for the process's exit
// status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return commands().Run(ctx, args, stdout, stderr)
}

// commands is the relay's command line: "relay --batch-size 10" runs the
// relay, "relay --help" prints run's help, which lists the commands too.
func commands() *cli.Group {
	return &cli.Group{
		Name: prog,
		About: `The PulseBus relay moves events from the PostgreSQL outbox (pulsebus.outbox)
to Kafka: in commit order per key, nothing lost, one leader among replicas.`,
		Default: "run",
		Commands: []cli.Subcommand{
			{Name: "run", Summary: "relay events until SIGTERM/SIGINT", Run: runCommand},
			{Name: "status", Summary: "print the outbox backlog, parked rows and the leader lease", Run: statusCommand},
			{Name: "outbox", Summary: "list, park or delete the rows still waiting in the outbox", Run: outboxCommand},
			{Name: "parked", Summary: "list, requeue or delete the rows the broker refused for good", Run: parkedCommand},
			{Name: "migrate", Summary: "apply the database schema migrations (--status, --down N)", Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
				return cli.RunMigrate(ctx, prog, args, stdout, stderr)
			}},
		},
	}
}

// ExitCode maps an error from [Run] to an exit status, as [cli.ExitCode]
// does: 0 for nil and for a help request, 2 for a bad command line or
// configuration (*cli.ConfigError, cli.ErrUsage), 1 for anything else (a
// runtime failure: PostgreSQL or Kafka unreachable, the schema not
// migrated, ...).
func ExitCode(err error) int { return cli.ExitCode(err) }
