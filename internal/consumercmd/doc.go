// Package consumercmd is the consumer binary's command line: the run,
// migrate, offsets, replay and dead-letters subcommands, their flags with
// environment fallbacks, and the built-in handlers (webhook and log)
// configured by handler specs. cmd/consumer only wires signals and exit
// codes around [Run], so everything here runs in tests with an io.Writer.
//
// # Configuration
//
// Settings are flags, most with an environment fallback (cli.Settings): a
// flag given on the command line wins over its variable, the variable over
// the default, and --help shows defaults but never an environment value.
// Settings are checked before anything connects, and a bad one is a
// *cli.ConfigError naming the flag and the variable, and which of them the
// value came from (exit 2).
// Secrets are never logged: the database URL loses its password
// (redact.DSN), webhook URLs show only scheme://host/... (redact.URL), header
// values are not shown.
//
// # Shutdown
//
// run returns nil once its context is done and the consumer has drained:
// fetching stops, in-flight handlers get --drain-timeout to finish, progress
// is saved and the member leaves the group. The /metrics server stays up
// until then.
package consumercmd
