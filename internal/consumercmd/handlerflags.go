package consumercmd

import (
	"fmt"
	"io"

	"github.com/edupulse/pulsebus/internal/cli"
)

// One meaning per flag name: --handler is a handler spec (run, dead-letters
// redrive), --handler-name selects a handler by name (replay, offsets,
// dead-letters list and redrive). Before, replay and dead-letters took the
// name as --handler and redrive the spec as --handler-spec; those spellings
// still work until the next release, with a warning.

// handlerNameFlag is the --handler-name selector of a subcommand, with the
// deprecated --handler NAME spelling when the subcommand had it.
type handlerNameFlag struct {
	name       string
	deprecated string // from --handler NAME
	command    string // "consumer replay", for the warning
}

// register defines --handler-name, and with withOld the deprecated
// --handler NAME.
func (f *handlerNameFlag) register(c *cli.Command, command, usage string, withOld bool) {
	f.command = command
	c.String(&f.name, "handler-name", "", "", usage, nil)
	if withOld {
		c.String(&f.deprecated, "handler", "", "", "deprecated: use --handler-name (goes in the next release)", nil)
	}
}

// resolve returns the selected handler name after parsing, warning on
// stderr about the deprecated spelling.
func (f *handlerNameFlag) resolve(stderr io.Writer) (string, error) {
	if f.deprecated == "" {
		return f.name, nil
	}
	warnDeprecated(stderr, f.command, "--handler NAME", "--handler-name NAME")
	if f.name != "" && f.name != f.deprecated {
		return "", &cli.ConfigError{Setting: "--handler-name", Reason: fmt.Sprintf(
			"--handler %s (deprecated) and --handler-name %s disagree; give --handler-name only", f.deprecated, f.name)}
	}
	return f.deprecated, nil
}

// warnDeprecated tells the user of command that old is deprecated in
// favour of replacement.
func warnDeprecated(stderr io.Writer, command, old, replacement string) {
	fmt.Fprintf(stderr, "warning: %s %s is deprecated and goes in the next release: use %s\n", command, old, replacement)
}
