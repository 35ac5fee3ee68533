package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// ErrUsage is returned for a bad command line; the usage was printed.
var ErrUsage = errors.New("usage")

// Command is one subcommand's flags ([Settings]) and help text.
type Command struct {
	*Settings
	fs           *flag.FlagSet
	usage, about string
}

// NewCommand returns a command named name ("relay status"). Its help reads
// "Usage: " + usage, then about, then the flags.
func NewCommand(name, usage, about string) *Command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Parse prints errors and help itself
	fs.Usage = func() {}
	return &Command{Settings: NewSettings(fs), fs: fs, usage: usage, about: about}
}

// NewRunCommand returns the command name ("relay run") of a group whose
// default it is. Run as the default ("relay --help"), its help is the
// group's (usage, commands) followed by about; named ("relay run --help"),
// only its own usage and about.
func NewRunCommand(ctx context.Context, name, about string) *Command {
	if g := GroupOfDefault(ctx); g != nil {
		sub := strings.TrimPrefix(name, g.Name+" ")
		return NewCommand(name, g.Synopsis(), g.Description()+"\n\nThe "+sub+" command (the default):\n"+about)
	}
	return NewCommand(name, name+" [flags]", about)
}

// FlagSet returns the command's flag set, for flags defined without
// [Settings] (help lists them after the settings).
func (c *Command) FlagSet() *flag.FlagSet { return c.fs }

// PrintHelp writes the command's help to w.
func (c *Command) PrintHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n", c.usage)
	if about := strings.TrimSpace(c.about); about != "" {
		fmt.Fprintf(w, "%s\n\n", about)
	}
	fmt.Fprint(w, "Flags (a flag wins over its environment variable):\n")
	c.PrintUsage(w)
}

// Parse parses args (flags only) and resolves the settings:
//   - -h or --help: the help goes to stdout and Parse returns flag.ErrHelp;
//   - an unknown flag or a missing value: the error, a guess at the flag
//     meant and a pointer to --help go to stderr, and the error, a
//     [LoggedError] (printed already), wraps [ErrUsage];
//   - an argument that is not a flag, or a bad value: a *ConfigError.
func (c *Command) Parse(args []string, stdout, stderr io.Writer) error {
	err := c.fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.PrintHelp(stdout)
		return err
	}
	if err != nil {
		// The error, a guess at what was meant, and where the help is: the
		// whole help would bury the one line that matters.
		fmt.Fprintf(stderr, "%s: %v\n", c.fs.Name(), err)
		if guess := c.didYouMean(err); guess != "" {
			fmt.Fprintf(stderr, "did you mean --%s?\n", guess)
		}
		fmt.Fprintf(stderr, "Run '%s --help' for the flags.\n", c.fs.Name())
		return &LoggedError{fmt.Errorf("%w: %s: %w", ErrUsage, c.fs.Name(), err)}
	}
	if c.fs.NArg() > 0 {
		return &ConfigError{Setting: "arguments", Reason: fmt.Sprintf("unexpected %q; flags only", c.fs.Args())}
	}
	return c.Resolve()
}

// didYouMean returns the defined flag closest to the unknown one err names
// (by edit distance, at most 2 edits, or a prefix), or "".
func (c *Command) didYouMean(err error) string {
	const prefix = "flag provided but not defined: "
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return ""
	}
	unknown := strings.TrimLeft(strings.TrimPrefix(msg, prefix), "-")
	best, bestDist := "", 3
	c.fs.VisitAll(func(f *flag.Flag) {
		d := editDistance(unknown, f.Name)
		if strings.HasPrefix(f.Name, unknown) && len(unknown) >= 3 {
			d = min(d, 1)
		}
		if d < bestDist {
			best, bestDist = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ExitCode maps a command's error to the process exit status: 0 for nil
// and for a help request (flag.ErrHelp), 2 for a bad command line or
// configuration ([ErrUsage], *ConfigError), 1 for anything else (a runtime
// failure: PostgreSQL or Kafka unreachable, the schema not migrated, ...).
func ExitCode(err error) int {
	var ce *ConfigError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ce), errors.Is(err, ErrUsage):
		return 2
	default:
		return 1
	}
}

// Subcommand is one command of a [Group].
type Subcommand struct {
	// Name is the word on the command line ("status").
	Name string
	// Summary is its line in the group's help.
	Summary string
	// Run runs it with the arguments after its name.
	Run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// Group is a command made of subcommands: "relay run|status|...", "relay
// parked list|requeue|delete".
type Group struct {
	// Name is the group's command line ("relay parked"), for help and
	// errors.
	Name string
	// About describes the group in its help, above the commands.
	About string
	// Default is the subcommand run when the arguments are empty or start
	// with a flag ("relay --batch-size 10" is "relay run --batch-size 10");
	// "" means a subcommand is required.
	Default string
	// Commands in the order help lists them.
	Commands []Subcommand
}

// Run runs the subcommand args name. "help" prints the group's help (or,
// as "help <command>", the command's); a missing or unknown subcommand
// prints the help to stderr and returns an error wrapping [ErrUsage].
func (g *Group) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") && !strings.Contains(g.Name, " ") {
		fmt.Fprintf(stdout, "%s %s\n", g.Name, Version())
		return nil
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if g.Default != "" {
			return g.find(g.Default).Run(context.WithValue(ctx, asDefaultKey{}, g), args, stdout, stderr)
		}
		if len(args) > 0 && isHelp(args[0]) {
			g.PrintHelp(stdout)
			return flag.ErrHelp
		}
		g.PrintHelp(stderr)
		return fmt.Errorf("%w: %s: want %s", ErrUsage, g.Name, g.names())
	}
	if args[0] == "help" && len(args) == 1 {
		g.PrintHelp(stdout)
		return nil
	}
	if args[0] == "help" {
		// "relay help parked list" is "relay parked list --help".
		args = append(slices.Clone(args[1:]), "--help")
	}
	if sc := g.find(args[0]); sc != nil {
		return sc.Run(ctx, args[1:], stdout, stderr)
	}
	g.PrintHelp(stderr)
	return fmt.Errorf("%w: %s: unknown command %q (want %s)", ErrUsage, g.Name, args[0], g.names())
}

// asDefaultKey marks the context of a subcommand run as its group's
// default: "relay --help" rather than "relay run --help".
type asDefaultKey struct{}

// GroupOfDefault returns the group that ran the current subcommand as its
// default command ("relay --batch-size 10"), or nil when the command line
// named the subcommand ("relay run --batch-size 10"). A default command's
// help describes the whole group; a named one's only itself.
func GroupOfDefault(ctx context.Context) *Group {
	g, _ := ctx.Value(asDefaultKey{}).(*Group)
	return g
}

func (g *Group) find(name string) *Subcommand {
	for i := range g.Commands {
		if g.Commands[i].Name == name {
			return &g.Commands[i]
		}
	}
	return nil
}

// names is "a, b or c".
func (g *Group) names() string {
	names := make([]string, len(g.Commands))
	for i, sc := range g.Commands {
		names[i] = sc.Name
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Synopsis is the group's usage line without "Usage: ".
func (g *Group) Synopsis() string {
	if g.Default != "" {
		return g.Name + " [command] [flags]"
	}
	names := make([]string, len(g.Commands))
	for i, sc := range g.Commands {
		names[i] = sc.Name
	}
	return fmt.Sprintf("%s %s [flags]", g.Name, strings.Join(names, "|"))
}

// Description is the group's help without the usage line: About and the
// commands.
func (g *Group) Description() string {
	var b strings.Builder
	if about := strings.TrimSpace(g.About); about != "" {
		fmt.Fprintf(&b, "%s\n\n", about)
	}
	b.WriteString("Commands:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	for _, sc := range g.Commands {
		summary := sc.Summary
		if sc.Name == g.Default {
			summary += " (the default command)"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", sc.Name, summary)
	}
	fmt.Fprintf(tw, "  help\tprint this, or %q for a command's flags\n", g.Name+" help <command>")
	_ = tw.Flush()
	fmt.Fprintf(&b, "\nRun %q for a command's flags", g.Name+" <command> --help")
	if !strings.Contains(g.Name, " ") {
		fmt.Fprintf(&b, ", %q for the version", g.Name+" --version")
	}
	b.WriteString(".")
	return b.String()
}

// PrintHelp writes the group's help to w.
func (g *Group) PrintHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", g.Synopsis(), g.Description())
}

func isHelp(arg string) bool {
	return slices.Contains([]string{"-h", "-help", "--help", "--h"}, arg)
}
