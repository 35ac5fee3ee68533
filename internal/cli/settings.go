package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edupulse/pulsebus/internal/redact"
)

// Settings defines a command's flags, each with an optional environment
// variable as its fallback, on a flag.FlagSet.
//
// Parsing the flag set only records what the command line said. [Settings.Resolve]
// then gives every setting its value: from the flag when it was given, else
// from the environment variable when it is set and not empty, else the
// default; and checks it. Consequences:
//   - a bad value fails with a *ConfigError naming the flag and the variable
//     ("--batch-size (RELAY_BATCH_SIZE)") and saying which of them the value
//     came from;
//   - a bad environment value does not matter when the flag overrides it;
//   - help ([Settings.PrintUsage]) shows the defaults and never an
//     environment value, so a secret in the environment (DATABASE_URL,
//     KAFKA_SASL_PASSWORD) cannot leak through --help.
//
// Define the settings, parse the flag set (or use [Command], which does
// both), then call Resolve once.
type Settings struct {
	fs   *flag.FlagSet
	list []*setting
}

// setting is one flag with an environment fallback. It implements
// flag.Value; Set only records the command line's value.
type setting struct {
	name, env, def, usage, meta string
	shownDef                    string // the default as help shows it, if not def
	isBool, repeat, secret      bool
	raw                         []string // from the command line
	from                        string   // after Resolve: "--name", the variable, or "" (the default)
	splitEnv                    func(string) []string
	apply                       func([]string) error // parses and stores; the error is the reason
}

func (s *setting) String() string   { return strings.Join(s.raw, ",") }
func (s *setting) IsBoolFlag() bool { return s.isBool }
func (s *setting) Set(v string) error {
	if s.repeat {
		s.raw = append(s.raw, v)
	} else {
		s.raw = []string{v}
	}
	return nil
}

// label names the setting in errors: "--batch-size (RELAY_BATCH_SIZE)".
func (s *setting) label() string {
	if s.env == "" {
		return "--" + s.name
	}
	return fmt.Sprintf("--%s (%s)", s.name, s.env)
}

// NewSettings returns Settings defining their flags on fs.
func NewSettings(fs *flag.FlagSet) *Settings { return &Settings{fs: fs} }

func (ss *Settings) add(s *setting) {
	ss.list = append(ss.list, s)
	ss.fs.Var(s, s.name, s.usage)
}

func (ss *Settings) last() *setting { return ss.list[len(ss.list)-1] }

func (ss *Settings) lookup(name string) *setting {
	for _, s := range ss.list {
		if s.name == name {
			return s
		}
	}
	return nil
}

// ShowDefault sets how help shows the default of the setting defined last,
// when the default value itself would not explain it (e.g. "0, meaning
// min(10s, lease-ttl/2)").
func (ss *Settings) ShowDefault(def string) { ss.last().shownDef = def }

// Secret marks the setting defined last as secret: errors never quote its
// value (help never shows environment values anyway), and
// [Settings.Warnings] warns when the command line carried it.
func (ss *Settings) Secret() { ss.last().secret = true }

// Warnings says, after Resolve, what in the settings is unsafe without being
// wrong: a secret given as a flag, which every user of the machine can read
// in the process list (ps, /proc/PID/cmdline), where its environment
// variable would not be. A connection URL counts as secret only when it
// holds a password. Commands log each warning once they have a logger.
func (ss *Settings) Warnings() []string {
	var warnings []string
	for _, s := range ss.list {
		if !s.secret || s.from != "--"+s.name || !holdsSecret(s.raw) {
			continue
		}
		w := fmt.Sprintf("--%s was given on the command line, where other users of this machine can read it in the process list", s.name)
		if s.env != "" {
			w += "; set " + s.env + " instead"
		}
		warnings = append(warnings, w)
	}
	return warnings
}

// holdsSecret reports whether a secret setting's values hold one: a
// password in a connection URL or DSN, or any value that is not one.
func holdsSecret(vals []string) bool {
	for _, v := range vals {
		looksLikeURL := strings.Contains(v, "://") || strings.Contains(v, "=")
		if v != "" && (!looksLikeURL || redact.DSN(v) != v) {
			return true
		}
	}
	return false
}

// One defines a setting of any type: apply parses a value (trimmed of
// spaces) and stores it, returning why it is bad otherwise. def is the
// default as a string, passed through apply too; meta names the value's
// kind in help ("string", "host:port").
func (ss *Settings) One(name, env, def, meta, usage string, apply func(string) error) {
	ss.add(&setting{name: name, env: env, def: def, usage: usage, meta: meta, apply: func(v []string) error {
		return apply(strings.TrimSpace(v[0]))
	}})
}

// String defines a string setting; check, if not nil, returns why a value
// is bad.
func (ss *Settings) String(p *string, name, env, def, usage string, check func(string) error) {
	ss.One(name, env, def, "string", usage, func(v string) error {
		if check != nil {
			if err := check(v); err != nil {
				return err
			}
		}
		*p = v
		return nil
	})
}

// Enum defines a setting that is one of allowed, compared case-blind and
// stored in lower case.
func (ss *Settings) Enum(p *string, name, env, def string, allowed []string, usage string) {
	ss.One(name, env, def, strings.Join(allowed, "|"), usage, func(v string) error {
		l := strings.ToLower(v)
		if !slices.Contains(allowed, l) {
			return fmt.Errorf("is not one of %s", strings.Join(allowed, ", "))
		}
		*p = l
		return nil
	})
}

// Int defines a whole-number setting from lo to hi.
func (ss *Settings) Int(p *int, name, env string, def, lo, hi int, usage string) {
	ss.One(name, env, strconv.Itoa(def), "int", usage, func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("is not a whole number")
		}
		if n < lo || n > hi {
			return fmt.Errorf("is out of range: want %d to %d", lo, hi)
		}
		*p = n
		return nil
	})
}

// Duration defines a setting in Go's duration syntax ("500ms", "2s",
// "1m30s") from lo to hi.
func (ss *Settings) Duration(p *time.Duration, name, env string, def, lo, hi time.Duration, usage string) {
	ss.One(name, env, def.String(), "duration", usage, func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("is not a duration like 500ms, 2s or 1m")
		}
		if d < lo || d > hi {
			return fmt.Errorf("is out of range: want %s to %s", lo, hi)
		}
		*p = d
		return nil
	})
}

// Bool defines a boolean setting; the bare flag means true, and the flag
// and the variable accept what strconv.ParseBool does (1, t, true, 0, f,
// false, ...).
func (ss *Settings) Bool(p *bool, name, env string, def bool, usage string) {
	ss.One(name, env, strconv.FormatBool(def), "", usage, func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("is not true or false")
		}
		*p = b
		return nil
	})
	ss.last().isBool = true
}

// List defines a repeatable flag collecting its values in order. When the
// flag is not given, splitEnv splits the environment variable into the
// values; the list is empty when neither is set. The values are stored as
// given: parse them after Resolve, naming [Settings.From] in errors.
func (ss *Settings) List(p *[]string, name, env, usage string, splitEnv func(string) []string) {
	ss.add(&setting{name: name, env: env, usage: usage, meta: "value", repeat: true, splitEnv: splitEnv,
		apply: func(v []string) error {
			*p = v
			return nil
		}})
}

// SplitList splits a comma-separated value ("a, b,,c") into its items,
// trimmed, dropping blanks: the form of every list setting given as one
// string (--topics, --brokers, an environment variable).
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Resolve stores every setting's value: from its flag, else its
// environment variable when set and not empty, else its default. The first
// bad one is returned as a *ConfigError.
func (ss *Settings) Resolve() error {
	for _, s := range ss.list {
		vals, from := []string{s.def}, ""
		if s.repeat {
			vals = nil
		}
		if len(s.raw) > 0 {
			vals, from = s.raw, "--"+s.name
		} else if e, ok := os.LookupEnv(s.env); ok && s.env != "" && e != "" {
			vals, from = []string{e}, s.env
			if s.repeat {
				vals = s.splitEnv(e)
			}
		}
		s.from = from
		if err := s.apply(vals); err != nil {
			return &ConfigError{Setting: s.label(), Reason: s.reason(vals, from, err)}
		}
	}
	return nil
}

// reason says why value(s) vals from from are bad, quoting a value unless
// the setting is secret.
func (s *setting) reason(vals []string, from string, err error) string {
	quoted := "the value"
	if !s.secret && len(vals) == 1 {
		quoted = strconv.Quote(vals[0])
	}
	if from == "" {
		return fmt.Sprintf("%s %v", quoted, err)
	}
	return fmt.Sprintf("%s (from %s) %v", quoted, from, err)
}

// From says where setting name's value came from after Resolve: "--name"
// for the command line, the environment variable's name, or "" for the
// default.
func (ss *Settings) From(name string) string {
	if s := ss.lookup(name); s != nil {
		return s.from
	}
	return ""
}

// Label names setting name as errors do: its flag and its environment
// variable, "--batch-size (RELAY_BATCH_SIZE)".
func (ss *Settings) Label(name string) string {
	if s := ss.lookup(name); s != nil {
		return s.label()
	}
	return "--" + name
}

// Invalid returns a *ConfigError naming setting name by its [Settings.Label],
// for checks made after Resolve (a value that conflicts with another).
func (ss *Settings) Invalid(name, reason string) *ConfigError {
	return &ConfigError{Setting: ss.Label(name), Reason: reason}
}

// PrintUsage writes the flags: the settings in the order they were
// defined, each with its environment variable and default, then any other
// flag of the flag set. It never shows an environment value.
//
//	--batch-size int  (env RELAY_BATCH_SIZE, default 1000)
//	    most rows claimed, produced and deleted per transaction
func (ss *Settings) PrintUsage(w io.Writer) {
	seen := map[string]bool{}
	for _, s := range ss.list {
		seen[s.name] = true
		head := "  --" + s.name
		if s.meta != "" {
			head += " " + s.meta
		}
		var notes []string
		if s.repeat {
			notes = append(notes, "repeatable")
		}
		if s.env != "" {
			notes = append(notes, "env "+s.env)
		}
		if s.shownDef != "" {
			notes = append(notes, "default "+s.shownDef)
		} else if s.def != "" {
			notes = append(notes, "default "+s.def)
		}
		if len(notes) > 0 {
			head += "  (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", head, s.usage)
	}
	ss.fs.VisitAll(func(f *flag.Flag) {
		if seen[f.Name] {
			return
		}
		head := "  --" + f.Name
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
			head += " string"
		}
		fmt.Fprintf(w, "%s\n      %s\n", head, f.Usage)
	})
}
