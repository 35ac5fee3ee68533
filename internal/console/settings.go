package console

import (
	"errors"
	"net"
	"strconv"

	"github.com/edupulse/pulsebus/internal/cli"
)

// MinTokenLength is the shortest CONSOLE_TOKEN accepted: 16 characters of
// a random token are beyond guessing through the login form.
const MinTokenLength = 16

// Settings are the console's flags, the same in both binaries' run
// commands.
type Settings struct {
	// Addr is the console's listen address; empty turns it off.
	Addr string
	// Token is what a browser logs in with, or a script sends as a Bearer
	// token.
	Token string
	// InsecureNoAuth serves the console without a token, for local use.
	InsecureNoAuth bool
	// ReadOnly hides and refuses every action.
	ReadOnly bool
	// HidePayloads never shows event payloads and header values.
	HidePayloads bool
}

// Register defines the console flags on ss.
func (s *Settings) Register(ss *cli.Settings) {
	ss.String(&s.Addr, "console-addr", "CONSOLE_ADDR", "",
		"listen address of the operator console (e.g. 127.0.0.1:8080); empty turns it off", checkAddr)
	ss.String(&s.Token, "console-token", "CONSOLE_TOKEN", "",
		"token to log in to the console, or to send as Authorization: Bearer; required with --console-addr (set the variable, not the flag)", nil)
	ss.Secret()
	ss.Bool(&s.InsecureNoAuth, "console-insecure-no-auth", "CONSOLE_INSECURE_NO_AUTH", false,
		"serve the console without a token, to anyone who can reach --console-addr (local use only)")
	ss.Bool(&s.ReadOnly, "console-read-only", "CONSOLE_READ_ONLY", false,
		"show the console without any action (requeue, delete, replay, redrive)")
	ss.Bool(&s.HidePayloads, "console-hide-payloads", "CONSOLE_HIDE_PAYLOADS", false,
		"never show event payloads and header values in the console (personal data)")
}

func checkAddr(s string) error {
	if s == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("is not host:port (e.g. 127.0.0.1:8080)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return errors.New("has no valid port")
	}
	return nil
}

// Validate checks the settings after parsing: a console needs a token of
// at least MinTokenLength characters, or --console-insecure-no-auth, not
// both. Its errors are *cli.ConfigError (exit code 2).
func (s *Settings) Validate() error {
	if s.Addr == "" {
		return nil
	}
	switch {
	case s.Token == "" && !s.InsecureNoAuth:
		return &cli.ConfigError{Setting: "--console-token (CONSOLE_TOKEN)",
			Reason: "required with --console-addr: set CONSOLE_TOKEN to a random secret (e.g. openssl rand -hex 24), or give --console-insecure-no-auth for local use"}
	case s.Token != "" && s.InsecureNoAuth:
		return &cli.ConfigError{Setting: "--console-insecure-no-auth (CONSOLE_INSECURE_NO_AUTH)",
			Reason: "given with a console token: drop one of them"}
	case s.Token != "" && len(s.Token) < MinTokenLength:
		return &cli.ConfigError{Setting: "--console-token (CONSOLE_TOKEN)",
			Reason: "shorter than " + strconv.Itoa(MinTokenLength) + " characters: use a random secret (e.g. openssl rand -hex 24)"}
	}
	return nil
}
