package consumercmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edupulse/pulsebus/internal/cli"
)

// usageError is a bad command line: unknown flag, missing value, stray
// argument. It exits with 2, like a *cli.ConfigError.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }
func (e *usageError) Is(target error) bool {
	return target == cli.ErrUsage
}

// ExitCode maps Run's error to the process exit code: 0 for nil and for
// --help, 2 for a bad command line or configuration (*cli.ConfigError), 1
// for anything that went wrong at run time.
func ExitCode(err error) int {
	var ce *cli.ConfigError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, cli.ErrUsage), errors.As(err, &ce):
		return 2
	default:
		return 1
	}
}

// command is one subcommand's flag set with its help text and the
// environment defaults that did not parse.
type command struct {
	fs      *flag.FlagSet
	usage   string // "consumer run [flags]"
	about   string // what it does, printed above the flags
	envErrs map[string]error
}

func newCommand(name, usage, about string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &command{fs: fs, usage: usage, about: about, envErrs: map[string]error{}}
}

func (c *command) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n\nFlags (a flag wins over its environment variable):\n", c.usage, strings.TrimSpace(c.about))
	// Defaults come from the environment: never print a secret.
	if f := c.fs.Lookup("database-url"); f != nil {
		f.DefValue = cli.RedactURL(f.DefValue)
	}
	if f := c.fs.Lookup("kafka-sasl-password"); f != nil && f.DefValue != "" {
		f.DefValue = "xxxxx"
	}
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}

// parse parses args. --help prints the usage to stdout and returns
// flag.ErrHelp; a bad command line prints it to stderr and returns a
// usageError. An environment default that did not parse is an error unless
// its flag was given.
func (c *command) parse(args []string, stdout, stderr io.Writer) error {
	err := c.fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.printUsage(stdout)
		return flag.ErrHelp
	}
	if err == nil && c.fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	if err != nil {
		c.printUsage(stderr)
		return &usageError{err: fmt.Errorf("%s: %w", c.fs.Name(), err)}
	}
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, err := range c.envErrs {
		if !set[name] {
			return err
		}
	}
	return nil
}

// setting names a flag with its environment variable, as errors show it.
func setting(flagName, env string) string {
	if env == "" {
		return "--" + flagName
	}
	return fmt.Sprintf("--%s (%s)", flagName, env)
}

func envHelp(usage, env string) string {
	if env == "" {
		return usage
	}
	return usage + " (env " + env + ")"
}

func (c *command) stringVar(p *string, name, env, def, usage string) {
	if env != "" {
		def = cli.EnvString(env, def)
	}
	c.fs.StringVar(p, name, def, envHelp(usage, env))
}

func (c *command) durationVar(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v := os.Getenv(env); env != "" && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			c.envErrs[name] = &cli.ConfigError{Setting: setting(name, env), Reason: fmt.Sprintf("%q is not a duration such as 500ms, 10s or 1m", v)}
		} else {
			def = d
		}
	}
	c.fs.DurationVar(p, name, def, envHelp(usage, env))
}

func (c *command) intVar(p *int, name, env string, def int, usage string) {
	if v := os.Getenv(env); env != "" && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			c.envErrs[name] = &cli.ConfigError{Setting: setting(name, env), Reason: fmt.Sprintf("%q is not a whole number", v)}
		} else {
			def = n
		}
	}
	c.fs.IntVar(p, name, def, envHelp(usage, env))
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validTopic reports whether t is a legal Kafka topic name.
func validTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
