package relaycmd

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edupulse/pulsebus/internal/cli"
)

// settings defines flags whose defaults come from environment variables.
// Values are only stored while parsing; resolve then reads each setting
// from its flag, else its environment variable, else its default, and
// reports a bad value with both names (*cli.ConfigError), whichever of the
// two it came from.
type settings struct {
	fs   *flag.FlagSet
	list []*setting
}

// setting is one flag with an environment fallback. It implements
// flag.Value.
type setting struct {
	name, env, def, usage, meta string
	shownDef                    string // the default as help shows it, if not def
	isBool                      bool
	raw                         string
	fromFlag                    bool
	apply                       func(string) error // parses and stores; the error is the reason
}

func (s *setting) String() string   { return s.raw }
func (s *setting) IsBoolFlag() bool { return s.isBool }
func (s *setting) Set(v string) error {
	s.raw, s.fromFlag = v, true
	return nil
}

// label names the setting in errors: "--batch-size (RELAY_BATCH_SIZE)".
func (s *setting) label() string {
	if s.env == "" {
		return "--" + s.name
	}
	return fmt.Sprintf("--%s (%s)", s.name, s.env)
}

// showDefault sets how help shows the default of the last setting added.
func (ss *settings) showDefault(def string) { ss.list[len(ss.list)-1].shownDef = def }

func newSettings(fs *flag.FlagSet) *settings { return &settings{fs: fs} }

func (ss *settings) add(s *setting) {
	ss.list = append(ss.list, s)
	ss.fs.Var(s, s.name, s.usage)
}

// given reports whether the flag name was on the command line.
func (ss *settings) given(name string) bool {
	for _, s := range ss.list {
		if s.name == name {
			return s.fromFlag
		}
	}
	return false
}

// resolve stores every setting's value; the first bad one is returned.
func (ss *settings) resolve() error {
	for _, s := range ss.list {
		v, from := s.def, ""
		if s.fromFlag {
			v, from = s.raw, "--"+s.name
		} else if e, ok := os.LookupEnv(s.env); ok && s.env != "" && e != "" {
			v, from = e, s.env
		}
		if err := s.apply(strings.TrimSpace(v)); err != nil {
			reason := fmt.Sprintf("%q %v", v, err)
			if from != "" {
				reason = fmt.Sprintf("%q (from %s) %v", v, from, err)
			}
			return &cli.ConfigError{Setting: s.label(), Reason: reason}
		}
	}
	return nil
}

func (ss *settings) String(p *string, name, env, def, usage string, check func(string) error) {
	ss.add(&setting{name: name, env: env, def: def, usage: usage, meta: "string", apply: func(v string) error {
		if check != nil {
			if err := check(v); err != nil {
				return err
			}
		}
		*p = v
		return nil
	}})
}

func (ss *settings) Enum(p *string, name, env, def string, allowed []string, usage string) {
	ss.add(&setting{name: name, env: env, def: def, usage: usage, meta: strings.Join(allowed, "|"), apply: func(v string) error {
		l := strings.ToLower(v)
		if !slices.Contains(allowed, l) {
			return fmt.Errorf("is not one of %s", strings.Join(allowed, ", "))
		}
		*p = l
		return nil
	}})
}

func (ss *settings) Int(p *int, name, env string, def, lo, hi int, usage string) {
	ss.add(&setting{name: name, env: env, def: strconv.Itoa(def), usage: usage, meta: "int", apply: func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("is not a whole number")
		}
		if n < lo || n > hi {
			return fmt.Errorf("is out of range: want %d to %d", lo, hi)
		}
		*p = n
		return nil
	}})
}

// Duration accepts Go durations ("500ms", "2s", "1m30s") from lo to hi.
func (ss *settings) Duration(p *time.Duration, name, env string, def, lo, hi time.Duration, usage string) {
	ss.add(&setting{name: name, env: env, def: def.String(), usage: usage, meta: "duration", apply: func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("is not a duration like 500ms, 2s or 1m")
		}
		if d < lo || d > hi {
			return fmt.Errorf("is out of range: want %s to %s", lo, hi)
		}
		*p = d
		return nil
	}})
}

func (ss *settings) Bool(p *bool, name, env string, def bool, usage string) {
	ss.add(&setting{name: name, env: env, def: strconv.FormatBool(def), usage: usage, isBool: true, apply: func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("is not true or false")
		}
		*p = b
		return nil
	}})
}

// printUsage writes the flags of fs: the settings first, in the order they
// were added, with their environment variable and default, then any other
// flag of fs (the Kafka flags, whose usage names their variables).
func (ss *settings) printUsage(w io.Writer) {
	seen := map[string]bool{}
	for _, s := range ss.list {
		seen[s.name] = true
		head := "  --" + s.name
		if !s.isBool {
			head += " " + s.meta
		}
		var env []string
		if s.env != "" {
			env = append(env, "env "+s.env)
		}
		if s.shownDef != "" {
			env = append(env, "default "+s.shownDef)
		} else if s.def != "" {
			env = append(env, "default "+s.def)
		}
		if len(env) > 0 {
			head += "  (" + strings.Join(env, ", ") + ")"
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
