// Package relaycmd is the relay's command line: the subcommands run (the
// default), status, parked (list, requeue, delete) and migrate, their flags
// with environment fallbacks, the metrics and health HTTP server, and
// shutdown on a signal. cmd/relay is a
// thin main around [Run]; everything here writes to the io.Writers it is
// given, so tests run it in-process.
//
// Configuration: every setting of run and status is a flag with an
// environment variable fallback (cli.Settings: the flag wins over the
// variable, the variable over the default; --help shows defaults, never an
// environment value). All of them are checked before anything connects; a
// bad value fails with a *cli.ConfigError naming the flag and the variable
// and which of them the value came from, and [ExitCode] maps it to 2.
//
// Lifecycle of run: connect to PostgreSQL (checking the schema is migrated)
// and to a Kafka broker, each bounded by --connect-timeout; serve /metrics,
// /healthz and /readyz; start the relay engine (pkg/outbox). When ctx is
// done (SIGTERM or SIGINT in cmd/relay) the relay stops claiming, finishes
// the batch in hand or abandons it after --shutdown-timeout (its rows stay
// in the outbox, claimed by no one), releases the leader lease so a standby
// takes over at once, and Run returns nil: exit status 0.
//
// Parked rows: the relay moves an event the broker refuses for good to
// pulsebus.outbox_parked. "relay parked list" shows them; "relay parked
// requeue" moves them back into the outbox as new rows (new ids, so after
// the rows already waiting) and notifies the relays, all in one
// transaction; "relay parked delete" drops them, printing each one.
//
// Readiness: /readyz answers 200 when PostgreSQL and a Kafka broker answer,
// whether this relay leads or stands by (a standby is ready to take over),
// and 503 otherwise or while shutting down. The body says which, e.g.
// "ready\nlease: leader (term 3)\n" or "not ready: kafka does not
// answer\n...", without addresses, user or database names or relay ids
// (the cause is logged when readiness changes). One check, a query of the
// lease row and an API versions request to Kafka, runs at most once per
// httpserve.ReadyCacheTTL whatever the number of callers.
package relaycmd
