// Package redact is the one rule for showing a URL in logs and errors
// without its secrets. There are two kinds of URL and two rules:
//
//   - An endpoint URL (a webhook) shows only scheme://host/...: services
//     such as Slack put the token in the path, so nothing after the host is
//     safe to show. See [URL].
//   - A PostgreSQL connection string loses its passwords and keeps the
//     rest (user, host, database, options), which is what an operator needs
//     to tell which database a process used. See [DSN].
//
// It is pure: no I/O, no dependencies beyond the standard library.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Unparseable replaces input neither rule can parse, rather than showing
// the input.
const Unparseable = "<unparseable URL>"

// mask replaces a password in a connection string.
const mask = "xxxxx"

// URL returns an endpoint URL as logs and errors may show it: its scheme
// and host (with the port) only, and "/..." for whatever followed (user
// info, path, query, fragment), since any of them may be a secret:
// https://hooks.slack.com/services/T.../B.../secret becomes
// https://hooks.slack.com/.... A URL with nothing after its host, or only
// "/", is returned without user info and fragment; "" stays "".
// Unparseable input gives [Unparseable].
func URL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Unparseable
	}
	if u.Opaque != "" { // mailto:someone@example.com
		return u.Scheme + ":..."
	}
	safe := &url.URL{Scheme: u.Scheme, Host: u.Host}
	if (u.Path == "" || u.Path == "/") && u.RawQuery == "" && !u.ForceQuery {
		safe.Path = u.Path
		return safe.String()
	}
	return safe.String() + "/..."
}

// DSN returns a PostgreSQL connection string with every password replaced
// by "xxxxx". It handles the forms connection strings take: a URL with a
// password in the user info or in a password or sslpassword query
// parameter, and a keyword/value string ("host=db password=secret").
// An unparseable URL gives [Unparseable].
func DSN(raw string) string {
	if !strings.Contains(raw, "://") {
		return dsnPassword.ReplaceAllString(raw, "${1}"+mask)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Unparseable
	}
	q := u.Query()
	redacted := false
	for _, name := range []string{"password", "sslpassword"} {
		if q.Has(name) {
			q.Set(name, mask)
			redacted = true
		}
	}
	if redacted {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// dsnPassword matches the value of password or sslpassword in a
// keyword/value connection string: a single-quoted value with backslash
// escapes, or a bare word.
var dsnPassword = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)`)
