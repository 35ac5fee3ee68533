// Package relaycmd is the relay's command line: the subcommands run (the
// default), status and migrate, their flags with environment fallbacks, the
// metrics and health HTTP server, and shutdown on a signal. cmd/relay is a
// thin main around [Run]; everything here writes to the io.Writers it is
// given, so tests run it in-process.
//
// Configuration: every setting is a flag with an environment variable
// fallback (the flag wins over the variable, the variable over the
// default). All of them are checked before anything connects; a bad value
// fails with a *cli.ConfigError naming the flag and the variable, and
// [ExitCode] maps it to 2.
//
// Lifecycle of run: connect to PostgreSQL (checking the schema is migrated)
// and to a Kafka broker, each bounded by --connect-timeout; serve /metrics,
// /healthz and /readyz; start the relay engine (pkg/outbox). When ctx is
// done (SIGTERM or SIGINT in cmd/relay) the relay stops claiming, finishes
// the batch in hand or abandons it after --shutdown-timeout (its rows stay
// in the outbox, claimed by no one), releases the leader lease so a standby
// takes over at once, and Run returns nil: exit status 0.
//
// Readiness: /readyz answers 200 when PostgreSQL and a Kafka broker answer,
// whether this relay leads or stands by (a standby is ready to take over),
// and 503 otherwise or while shutting down. The body says which, e.g.
// "ready\nlease: leader (term 3)\n".
package relaycmd
