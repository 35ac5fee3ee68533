// Package cli holds what the relay and consumer commands share: flags with
// environment fallbacks ([Settings], [Command]), subcommand dispatch
// ([Group]), exit codes, logging setup, the database connection and the
// migrate subcommand. Commands write to the io.Writers they are given so
// tests can run them in-process.
//
// Configuration: every setting is a flag, most with an environment
// variable fallback. The flag wins over the variable, the variable over the
// default; values are read and checked after the command line is parsed,
// so errors (*[ConfigError], exit status 2) name both the flag and the
// variable and say which one the bad value came from, and --help shows
// defaults but never a value from the environment.
package cli
