package consumercmd

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/redact"
	"github.com/edupulse/pulsebus/internal/typepattern"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/dispatch/webhook"
)

// HandlerSpec is one built-in handler as configured by a --handler flag or
// an entry of CONSUMER_HANDLERS:
//
//	name=NAME,types=T1|T2,webhook=URL[,timeout=D][,header=Name:Value]...[,max-attempts=N][,max-elapsed=D][,retry-for=D][,on-failure=hold-key|dead-letter]
//	name=NAME,types=T1|T2,log=LEVEL[,max-attempts=N][,max-elapsed=D][,retry-for=D][,on-failure=hold-key|dead-letter]
type HandlerSpec struct {
	// Name is the handler's name, its identity in the offsets and dead
	// letters.
	Name string
	// Types are the event types it wants: exact names, prefix.* or *.
	Types []string
	// Webhook is the endpoint of a webhook handler; empty for a log handler.
	Webhook string
	// Timeout bounds one webhook attempt; 0 means webhook.DefaultTimeout.
	Timeout time.Duration
	// Headers are extra webhook request headers.
	Headers http.Header
	// Log is set for a log handler: the level its lines are written at.
	Log *slog.Level
	// Retry overrides the consumer-wide retry policy; zero fields keep it.
	Retry dispatch.RetryPolicy
	// HoldKey is on-failure=hold-key: once an event with a key is
	// dead-lettered, the handler holds that key's later events behind it
	// (dispatch.WithKeyOrder). False is on-failure=dead-letter, the
	// default: the handler goes on with the key's later events.
	HoldKey bool
}

// Kind is "webhook" or "log".
func (s HandlerSpec) Kind() string {
	if s.Log != nil {
		return "log"
	}
	return "webhook"
}

// specKeys are the keys a handler spec accepts, in the order help shows.
var specKeys = []string{"name", "types", "webhook", "log", "timeout", "header", "max-attempts", "max-elapsed", "retry-for", "on-failure"}

// On-failure modes of a handler spec.
const (
	onFailureDeadLetter = "dead-letter"
	onFailureHoldKey    = "hold-key"
)

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ParseHandlerSpec parses one spec. setting names where it came from (e.g.
// "--handler #2") for the error, a *cli.ConfigError naming the bad part.
func ParseHandlerSpec(setting, spec string) (HandlerSpec, error) {
	var s HandlerSpec
	if err := s.parse(spec); err != nil {
		return s, &cli.ConfigError{Setting: setting, Reason: err.Error()}
	}
	return s, nil
}

// parse fills s from spec's fields and checks the result.
func (s *HandlerSpec) parse(spec string) error {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return errors.New("empty handler spec")
	}
	seen := map[string]bool{}
	prevKey := ""
	for _, field := range strings.Split(spec, ",") {
		key, value, err := splitSpecField(field, prevKey)
		if err != nil {
			return err
		}
		prevKey = key
		if seen[key] && key != "header" {
			return fmt.Errorf("%s= given twice", key)
		}
		seen[key] = true
		if err := s.set(key, value); err != nil {
			return err
		}
	}
	return s.check()
}

// splitSpecField splits one key=value field of a spec; prevKey is the key
// of the field before it.
func splitSpecField(field, prevKey string) (key, value string, err error) {
	field = strings.TrimSpace(field)
	key, value, ok := strings.Cut(field, "=")
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	if (!ok || key == "") && prevKey == "header" {
		// Most likely the rest of a header value that held a comma: a
		// secret (a token), so it is not quoted.
		return "", "", fmt.Errorf("a field after header= is not key=value; a header value cannot contain a comma (keys: %s)", strings.Join(specKeys, ", "))
	}
	if !ok || key == "" {
		return "", "", fmt.Errorf("%q is not key=value (keys: %s; a comma in a URL must be written %%2C)", field, strings.Join(specKeys, ", "))
	}
	if !slices.Contains(specKeys, key) {
		return "", "", fmt.Errorf("unknown key %q (keys: %s)", key, strings.Join(specKeys, ", "))
	}
	if value == "" {
		return "", "", fmt.Errorf("%s= has an empty value", key)
	}
	return key, value, nil
}

// set applies one field: key, one of specKeys, with a non-empty value.
func (s *HandlerSpec) set(key, value string) error {
	switch key {
	case "name":
		if strings.ContainsAny(value, " \t|") {
			return fmt.Errorf("name=%q: no spaces or '|'", value)
		}
		s.Name = value
	case "types":
		return s.setTypes(value)
	case "webhook":
		s.Webhook = value
	case "log":
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(value)); err != nil {
			return fmt.Errorf("log=%s: not debug, info, warn or error", value)
		}
		s.Log = &lvl
	case "timeout", "max-elapsed", "retry-for":
		return s.setDuration(key, value)
	case "on-failure":
		return s.setOnFailure(value)
	case "max-attempts":
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 {
			return fmt.Errorf("max-attempts=%s: not a whole number >= 1", value)
		}
		s.Retry.MaxAttempts = n
	case "header":
		return s.addHeader(value)
	}
	return nil
}

func (s *HandlerSpec) setTypes(value string) error {
	for _, t := range strings.Split(value, "|") {
		t = strings.TrimSpace(t)
		if _, err := typepattern.Parse(t); err != nil {
			return fmt.Errorf("types=%s: %v", value, err)
		}
		s.Types = append(s.Types, t)
	}
	return nil
}

// setDuration sets timeout=, max-elapsed= or retry-for=.
func (s *HandlerSpec) setDuration(key, value string) error {
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 {
		return fmt.Errorf("%s=%s: not a positive duration such as 5s or 1m30s", key, value)
	}
	switch key {
	case "timeout":
		s.Timeout = d
	case "max-elapsed":
		s.Retry.MaxElapsed = d
	default:
		s.Retry.RetryFor = d
	}
	return nil
}

func (s *HandlerSpec) setOnFailure(value string) error {
	switch value {
	case onFailureHoldKey:
		s.HoldKey = true
	case onFailureDeadLetter:
	default:
		return fmt.Errorf("on-failure=%s: want %s (a dead-lettered event holds its key's later events) or %s (the default: they go on)",
			value, onFailureHoldKey, onFailureDeadLetter)
	}
	return nil
}

// addHeader adds header=Name:Value, with ${VAR} in the value replaced by
// the environment variable VAR, which must be set.
func (s *HandlerSpec) addHeader(value string) error {
	name, v, ok := strings.Cut(value, ":")
	name, v = strings.TrimSpace(name), strings.TrimSpace(v)
	if !ok || name == "" {
		return fmt.Errorf("header=%s: want header=Name:Value", name)
	}
	var missing []string
	v = envRef.ReplaceAllStringFunc(v, func(ref string) string {
		env := envRef.FindStringSubmatch(ref)[1]
		val, ok := os.LookupEnv(env)
		if !ok {
			missing = append(missing, env)
		}
		return val
	})
	if len(missing) > 0 {
		return fmt.Errorf("header=%s: environment variable %s is not set", name, strings.Join(missing, ", "))
	}
	if s.Headers == nil {
		s.Headers = http.Header{}
	}
	s.Headers.Add(name, v)
	return nil
}

// check rejects a spec missing what its kind needs, or mixing kinds.
func (s *HandlerSpec) check() error {
	switch {
	case s.Name == "":
		return errors.New("name= is required")
	case len(s.Types) == 0:
		return fmt.Errorf("handler %s: types= is required (use types=* for every event)", s.Name)
	case s.Webhook == "" && s.Log == nil:
		return fmt.Errorf("handler %s: give webhook=URL or log=LEVEL", s.Name)
	case s.Webhook != "" && s.Log != nil:
		return fmt.Errorf("handler %s: give webhook=URL or log=LEVEL, not both", s.Name)
	case s.Log != nil && (s.Timeout != 0 || s.Headers != nil):
		return fmt.Errorf("handler %s: timeout= and header= apply to webhook handlers only", s.Name)
	}
	if s.Webhook != "" {
		// Check the URL and headers now, so a bad one fails at start.
		if _, err := s.newWebhook(); err != nil {
			return fmt.Errorf("handler %s: %v", s.Name, err)
		}
	}
	return nil
}

func (s HandlerSpec) newWebhook() (*webhook.Handler, error) {
	return webhook.New(webhook.Config{URL: s.Webhook, Timeout: s.Timeout, Headers: s.Headers})
}

// Describe renders the spec for logs: no header values, and the webhook
// URL as scheme://host/... (redact.URL).
func (s HandlerSpec) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "name=%s,types=%s", s.Name, strings.Join(s.Types, "|"))
	if s.Log != nil {
		fmt.Fprintf(&b, ",log=%s", strings.ToLower(s.Log.String()))
	} else {
		fmt.Fprintf(&b, ",webhook=%s", redact.URL(s.Webhook))
		if s.Timeout > 0 {
			fmt.Fprintf(&b, ",timeout=%s", s.Timeout)
		}
		names := make([]string, 0, len(s.Headers))
		for k := range s.Headers {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			fmt.Fprintf(&b, ",header=%s:<redacted>", k)
		}
	}
	if s.Retry.MaxAttempts > 0 {
		fmt.Fprintf(&b, ",max-attempts=%d", s.Retry.MaxAttempts)
	}
	if s.Retry.MaxElapsed > 0 {
		fmt.Fprintf(&b, ",max-elapsed=%s", s.Retry.MaxElapsed)
	}
	if s.Retry.RetryFor > 0 {
		fmt.Fprintf(&b, ",retry-for=%s", s.Retry.RetryFor)
	}
	if s.HoldKey {
		fmt.Fprintf(&b, ",on-failure=%s", onFailureHoldKey)
	}
	return b.String()
}

// splitEnvSpecs splits CONSUMER_HANDLERS into specs: separated by ';' or
// newlines, blank entries ignored.
func splitEnvSpecs(v string) []string {
	var out []string
	for _, line := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == '\n' || r == '\r' }) {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// parseHandlerSpecs parses the specs of the list setting name (a
// repeatable flag whose environment fallback holds specs separated by ';'
// or newlines). Errors name the flag or the variable the specs came from
// and the entry's position; duplicate names are an error.
func parseHandlerSpecs(ss *cli.Settings, name, env string, raw []string) ([]HandlerSpec, error) {
	where := "--" + name + " (or env " + env + ")"
	if ss.From(name) == env {
		where = env + " (or --" + name + ")"
	}
	var out []HandlerSpec
	names := map[string]bool{}
	for i, r := range raw {
		entry := fmt.Sprintf("%s entry %d", where, i+1)
		s, err := ParseHandlerSpec(entry, r)
		if err != nil {
			return nil, err
		}
		if names[s.Name] {
			return nil, &cli.ConfigError{Setting: entry, Reason: fmt.Sprintf("handler name %s used twice", s.Name)}
		}
		names[s.Name] = true
		out = append(out, s)
	}
	return out, nil
}
