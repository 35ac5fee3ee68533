package cli_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
)

// example are the settings of a made-up command, one of each kind.
type example struct {
	url     string
	size    int
	wait    time.Duration
	format  string
	on      bool
	specs   []string
	name    string
	brokers []string
}

const (
	envURL   = "PULSEBUS_CLI_TEST_URL"
	envSize  = "PULSEBUS_CLI_TEST_SIZE"
	envWait  = "PULSEBUS_CLI_TEST_WAIT"
	envFmt   = "PULSEBUS_CLI_TEST_FORMAT"
	envOn    = "PULSEBUS_CLI_TEST_ON"
	envSpecs = "PULSEBUS_CLI_TEST_SPECS"
	envBrk   = "PULSEBUS_CLI_TEST_BROKERS"
)

func exampleCommand(e *example) *cli.Command {
	c := cli.NewCommand("tool run", "tool run [flags]", "Runs the tool.")
	c.String(&e.url, "url", envURL, "postgres://localhost/db", "where to connect", cli.NonEmpty)
	c.Secret()
	c.Int(&e.size, "size", envSize, 10, 1, 100, "how many")
	c.Duration(&e.wait, "wait", envWait, time.Second, time.Millisecond, time.Minute, "how long")
	c.ShowDefault("1s, one second")
	c.Enum(&e.format, "format", envFmt, "auto", []string{"auto", "json"}, "output format")
	c.Bool(&e.on, "on", envOn, false, "switch it on")
	c.List(&e.specs, "spec", envSpecs, "a spec", func(s string) []string { return strings.Split(s, ";") })
	c.String(&e.name, "name", "", "", "a name without a variable", nil)
	c.One("brokers", envBrk, "a:1", "host:port,...", "brokers", func(s string) error {
		e.brokers = strings.Split(s, ",")
		return nil
	})
	return c
}

func parseExample(t *testing.T, args ...string) (example, *cli.Command, error) {
	t.Helper()
	var e example
	c := exampleCommand(&e)
	err := c.Parse(args, io.Discard, io.Discard)
	return e, c, err
}

func clearExampleEnv(t *testing.T) {
	for _, env := range []string{envURL, envSize, envWait, envFmt, envOn, envSpecs, envBrk} {
		t.Setenv(env, "")
	}
}

// The flag wins over the variable, the variable over the default; an empty
// variable counts as unset. (t.Setenv rules out t.Parallel.)
func TestSettings_FlagThenEnvironmentThenDefault(t *testing.T) {
	clearExampleEnv(t)
	e, c, err := parseExample(t)
	require.NoError(t, err)
	require.Equal(t, example{url: "postgres://localhost/db", size: 10, wait: time.Second, format: "auto", brokers: []string{"a:1"}}, e)
	for _, name := range []string{"url", "size", "spec", "name"} {
		require.Empty(t, c.From(name), name)
	}

	t.Setenv(envURL, "postgres://env/db")
	t.Setenv(envSize, " 20 ")
	t.Setenv(envWait, "250ms")
	t.Setenv(envFmt, "JSON")
	t.Setenv(envOn, "true")
	t.Setenv(envSpecs, "a;b")
	t.Setenv(envBrk, "x:1,y:2")
	e, c, err = parseExample(t)
	require.NoError(t, err)
	require.Equal(t, example{url: "postgres://env/db", size: 20, wait: 250 * time.Millisecond, format: "json", on: true,
		specs: []string{"a", "b"}, brokers: []string{"x:1", "y:2"}}, e)
	require.Equal(t, envSize, c.From("size"))
	require.Equal(t, envSpecs, c.From("spec"))

	e, c, err = parseExample(t, "--url", "postgres://flag/db", "--size=30", "--wait", "2s", "--format", "auto",
		"--on=false", "--spec", "c;d", "--spec", "e", "--name", "n", "--brokers", "z:3")
	require.NoError(t, err)
	require.Equal(t, example{url: "postgres://flag/db", size: 30, wait: 2 * time.Second, format: "auto",
		specs: []string{"c;d", "e"}, name: "n", brokers: []string{"z:3"}}, e, "a repeated list flag collects its values as given")
	require.Equal(t, "--size", c.From("size"))
	require.Equal(t, "--spec", c.From("spec"))
	require.Equal(t, "--name", c.From("name"))

	// A bare boolean flag is true; the last of a repeated flag wins.
	e, _, err = parseExample(t, "--on", "--size", "1", "--size", "2")
	require.NoError(t, err)
	require.True(t, e.on)
	require.Equal(t, 2, e.size)
}

// A bad value names the flag and the variable, says which of them it came
// from, and does not matter when the flag overrides the variable.
func TestSettings_BadValues(t *testing.T) {
	clearExampleEnv(t)
	cases := []struct {
		args    []string
		env     map[string]string
		setting string
		reason  string
	}{
		{[]string{"--size", "many"}, nil, "--size (PULSEBUS_CLI_TEST_SIZE)", `"many" (from --size) is not a whole number`},
		{nil, map[string]string{envSize: "0"}, "--size (PULSEBUS_CLI_TEST_SIZE)", `"0" (from PULSEBUS_CLI_TEST_SIZE) is out of range: want 1 to 100`},
		{[]string{"--wait", "5"}, nil, "--wait (PULSEBUS_CLI_TEST_WAIT)", `"5" (from --wait) is not a duration like 500ms, 2s or 1m`},
		{nil, map[string]string{envWait: "2m"}, "--wait (PULSEBUS_CLI_TEST_WAIT)", `"2m" (from PULSEBUS_CLI_TEST_WAIT) is out of range: want 1ms to 1m0s`},
		{[]string{"--format", "xml"}, nil, "--format (PULSEBUS_CLI_TEST_FORMAT)", `"xml" (from --format) is not one of auto, json`},
		{nil, map[string]string{envOn: "yes please"}, "--on (PULSEBUS_CLI_TEST_ON)", `"yes please" (from PULSEBUS_CLI_TEST_ON) is not true or false`},
		// A secret's value is never quoted.
		{[]string{"--url", ""}, nil, "--url (PULSEBUS_CLI_TEST_URL)", `the value (from --url) must not be empty`},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " ")+fmt.Sprint(tc.env), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, _, err := parseExample(t, tc.args...)
			var ce *cli.ConfigError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tc.setting, ce.Setting)
			require.Equal(t, tc.reason, ce.Reason)
			require.Equal(t, 2, cli.ExitCode(err))
		})
	}

	t.Run("flag overrides a bad variable", func(t *testing.T) {
		t.Setenv(envSize, "many")
		t.Setenv(envOn, "maybe")
		e, _, err := parseExample(t, "--size", "5", "--on")
		require.NoError(t, err)
		require.Equal(t, 5, e.size)
		require.True(t, e.on)
	})

	t.Run("a bad default says so without a source", func(t *testing.T) {
		var n int
		ss := cli.NewSettings(flag.NewFlagSet("x", flag.ContinueOnError))
		ss.Int(&n, "n", "", 0, 1, 2, "n")
		var ce *cli.ConfigError
		require.ErrorAs(t, ss.Resolve(), &ce)
		require.Equal(t, "--n", ce.Setting)
		require.Equal(t, `"0" is out of range: want 1 to 2`, ce.Reason)
	})
}

func TestSettings_LabelAndInvalid(t *testing.T) {
	t.Parallel()
	var e example
	c := exampleCommand(&e)
	require.Equal(t, "--size (PULSEBUS_CLI_TEST_SIZE)", c.Label("size"))
	require.Equal(t, "--name", c.Label("name"))
	require.Equal(t, "--unknown", c.Label("unknown"))
	err := c.Invalid("wait", "must be below --size")
	require.Equal(t, "config: --wait (PULSEBUS_CLI_TEST_WAIT): must be below --size", err.Error())
}

// Help shows each flag with its kind, variable and default, never a value
// from the environment.
func TestSettings_PrintUsage(t *testing.T) {
	t.Setenv(envURL, "postgres://app:hunter2@db.internal/app")
	t.Setenv(envSize, "77")
	t.Setenv(envSpecs, "secret-spec")
	var e example
	c := exampleCommand(&e)
	c.FlagSet().Bool("plain", false, "a flag defined without Settings")
	var out bytes.Buffer
	c.PrintUsage(&out)
	require.Equal(t, `  --url string  (env PULSEBUS_CLI_TEST_URL, default postgres://localhost/db)
      where to connect
  --size int  (env PULSEBUS_CLI_TEST_SIZE, default 10)
      how many
  --wait duration  (env PULSEBUS_CLI_TEST_WAIT, default 1s, one second)
      how long
  --format auto|json  (env PULSEBUS_CLI_TEST_FORMAT, default auto)
      output format
  --on  (env PULSEBUS_CLI_TEST_ON, default false)
      switch it on
  --spec value  (repeatable, env PULSEBUS_CLI_TEST_SPECS)
      a spec
  --name string
      a name without a variable
  --brokers host:port,...  (env PULSEBUS_CLI_TEST_BROKERS, default a:1)
      brokers
  --plain
      a flag defined without Settings
`, out.String())
	for _, leak := range []string{"hunter2", "db.internal", "77", "secret-spec"} {
		require.NotContains(t, out.String(), leak)
	}
}

func TestCommand_Parse(t *testing.T) {
	clearExampleEnv(t)
	run := func(args ...string) (stdout, stderr string, err error) {
		var e example
		var out, errOut bytes.Buffer
		err = exampleCommand(&e).Parse(args, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	for _, h := range []string{"-h", "--help", "-help"} {
		out, stderr, err := run("--size", "3", h)
		require.ErrorIs(t, err, flag.ErrHelp, h)
		require.Equal(t, 0, cli.ExitCode(err))
		require.Empty(t, stderr)
		require.True(t, strings.HasPrefix(out, "Usage: tool run [flags]\n\nRuns the tool.\n\nFlags (a flag wins over its environment variable):\n  --url string"), out)
	}

	out, stderr, err := run("--sise", "3")
	require.ErrorIs(t, err, cli.ErrUsage)
	require.Equal(t, 2, cli.ExitCode(err))
	require.Equal(t, "usage: tool run: flag provided but not defined: -sise", err.Error())
	require.Empty(t, out)
	require.Equal(t, "tool run: flag provided but not defined: -sise\ndid you mean --size?\nRun 'tool run --help' for the flags.\n", stderr)

	// No guess when nothing is close.
	_, stderr, _ = run("--frobnicate")
	require.Equal(t, "tool run: flag provided but not defined: -frobnicate\nRun 'tool run --help' for the flags.\n", stderr)
	_, stderr, _ = run("--form", "json")
	require.Contains(t, stderr, "did you mean --format?", "a prefix counts")

	_, _, err = run("--size")
	require.ErrorIs(t, err, cli.ErrUsage)
	require.ErrorContains(t, err, "flag needs an argument: -size")

	_, stderr, err = run("--size", "3", "extra", "--on")
	var ce *cli.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "arguments", ce.Setting)
	require.Equal(t, `unexpected ["extra" "--on"]; flags only`, ce.Reason)
	require.Empty(t, stderr)

	_, _, err = run("--size", "300")
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "--size (PULSEBUS_CLI_TEST_SIZE)", ce.Setting)
}

// group is a made-up command with subcommands that record their calls.
func group(calls *[]string, def string) *cli.Group {
	sub := func(name string) cli.Subcommand {
		return cli.Subcommand{Name: name, Summary: "the " + name + " command", Run: func(_ context.Context, args []string, stdout, _ io.Writer) error {
			*calls = append(*calls, name+" "+strings.Join(args, " "))
			if len(args) > 0 && args[len(args)-1] == "--help" {
				fmt.Fprintf(stdout, "help of %s\n", name)
				return flag.ErrHelp
			}
			return nil
		}}
	}
	return &cli.Group{Name: "tool", About: "Does things.", Default: def, Commands: []cli.Subcommand{sub("run"), sub("status"), sub("parked")}}
}

func TestGroup_Run(t *testing.T) {
	t.Parallel()
	run := func(g *cli.Group, args ...string) (stdout, stderr string, err error) {
		var out, errOut bytes.Buffer
		err = g.Run(context.Background(), args, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	var calls []string
	g := group(&calls, "run")
	for _, args := range [][]string{nil, {"--size", "3"}, {"run", "--size", "3"}, {"status", "--json"}, {"parked", "list", "--all"}} {
		_, _, err := run(g, args...)
		require.NoError(t, err, "%v", args)
	}
	require.Equal(t, []string{"run ", "run --size 3", "run --size 3", "status --json", "parked list --all"}, calls)

	const help = `Usage: tool [command] [flags]

Does things.

Commands:
  run      the run command (the default command)
  status   the status command
  parked   the parked command
  help     print this, or "tool help <command>" for a command's flags

Run "tool <command> --help" for a command's flags, "tool --version" for the version.
`
	out, _, err := run(g, "help")
	require.NoError(t, err)
	require.Equal(t, help, out)

	calls = nil
	out, _, err = run(g, "help", "parked", "list")
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Equal(t, "help of parked\n", out)
	require.Equal(t, []string{"parked list --help"}, calls, `"help parked list" is "parked list --help"`)

	_, _, err = run(g, "help", "frobnicate")
	require.ErrorIs(t, err, cli.ErrUsage)

	_, stderr, err := run(g, "frobnicate")
	require.ErrorIs(t, err, cli.ErrUsage)
	require.Equal(t, `usage: tool: unknown command "frobnicate" (want run, status or parked)`, err.Error())
	require.Equal(t, help, stderr)

	// Without a default command, one is required; --help is the group's.
	calls = nil
	g = group(&calls, "")
	_, stderr, err = run(g)
	require.ErrorIs(t, err, cli.ErrUsage)
	require.Equal(t, "usage: tool: want run, status or parked", err.Error())
	require.True(t, strings.HasPrefix(stderr, "Usage: tool run|status|parked [flags]\n\nDoes things.\n\nCommands:\n  run      the run command\n"), stderr)
	out, _, err = run(g, "--help")
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Equal(t, 0, cli.ExitCode(err))
	require.True(t, strings.HasPrefix(out, "Usage: tool run|status|parked [flags]"))
	_, _, err = run(g, "--json")
	require.ErrorIs(t, err, cli.ErrUsage)
	require.Empty(t, calls)
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, cli.ExitCode(nil))
	require.Equal(t, 0, cli.ExitCode(fmt.Errorf("wrapped: %w", flag.ErrHelp)))
	require.Equal(t, 2, cli.ExitCode(fmt.Errorf("%w: bad flag", cli.ErrUsage)))
	require.Equal(t, 2, cli.ExitCode(fmt.Errorf("start: %w", &cli.ConfigError{Setting: "--x", Reason: "bad"})))
	require.Equal(t, 1, cli.ExitCode(errors.New("connect: refused")))
}

// A secret on the command line is visible to every user of the machine
// (ps); the same secret in the environment is not. A connection URL is a
// secret only when it holds a password.
func TestSettings_WarningsForSecretsOnTheCommandLine(t *testing.T) {
	clearExampleEnv(t)
	cases := []struct {
		name string
		args []string
		env  string
		want []string
	}{
		{"URL with a password as a flag", []string{"--url", "postgres://u:s3cret@db/x"}, "",
			[]string{"--url was given on the command line, where other users of this machine can read it in the process list; set " + envURL + " instead"}},
		{"DSN with a password as a flag", []string{"--url", "host=db password=s3cret"}, "",
			[]string{"--url was given on the command line, where other users of this machine can read it in the process list; set " + envURL + " instead"}},
		{"URL without a password as a flag", []string{"--url", "postgres://u@db/x"}, "", nil},
		{"URL with a password in the environment", nil, "postgres://u:s3cret@db/x", nil},
		{"default", nil, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envURL, tc.env)
			_, c, err := parseExample(t, tc.args...)
			require.NoError(t, err)
			require.Equal(t, tc.want, c.Warnings())
			for _, w := range c.Warnings() {
				require.NotContains(t, w, "s3cret")
			}
		})
	}
}

func TestSplitList(t *testing.T) {
	t.Parallel()
	for in, want := range map[string][]string{
		"":                  nil,
		" , ,":              nil,
		"a":                 {"a"},
		"a,b":               {"a", "b"},
		" a , b ,, c ":      {"a", "b", "c"},
		"host:9092,h2:9093": {"host:9092", "h2:9093"},
	} {
		require.Equal(t, want, cli.SplitList(in), "SplitList(%q)", in)
	}
}
