package redact_test

import (
	"testing"

	"github.com/edupulse/pulsebus/internal/redact"
)

// URL keeps the scheme and the host (with its port): enough to tell
// endpoints apart in logs and dead letters, nothing that may be a secret.
func TestURL(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"": "",
		"https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX": "https://hooks.slack.com/...",
		"https://user:pw@search.internal:8443/events?key=abc#frag":              "https://search.internal:8443/...",
		"https://search.internal":                         "https://search.internal",
		"https://search.internal/":                        "https://search.internal/",
		"https://search.internal?key=abc":                 "https://search.internal/...",
		"https://search.internal/#frag":                   "https://search.internal/",
		"http://[::1]:8080/hook/s3cr3t":                   "http://[::1]:8080/...",
		"/relative/s3cr3t":                                "/...",
		"mailto:someone@example.com":                      "mailto:...",
		"postgres://u:secret@db:5432/app?password=secret": "postgres://db:5432/...",
		"http://h:pw@[::1":                                redact.Unparseable,
		"https://example.com/%zz":                         redact.Unparseable,
	} {
		if got := redact.URL(raw); got != want {
			t.Errorf("URL(%q) = %q, want %q", raw, got, want)
		}
	}
}

// DSN masks every password a PostgreSQL connection string can hold and
// keeps the rest, which says which database a process used.
func TestDSN(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@db:5432/app?sslmode=disable":     "postgres://u:xxxxx@db:5432/app?sslmode=disable",
		"postgres://u@db/app":                                 "postgres://u@db/app",
		"postgres://u@db/app?password=secret":                 "postgres://u@db/app?password=xxxxx",
		"postgres://u@db/app?sslpassword=secret&sslmode=full": "postgres://u@db/app?sslmode=full&sslpassword=xxxxx",
		"host=db user=u password=secret dbname=app":           "host=db user=u password=xxxxx dbname=app",
		"host=db password = 'se cr\\'et' dbname=app":          "host=db password = xxxxx dbname=app",
		"host=db PASSWORD=secret":                             "host=db PASSWORD=xxxxx",
		"host=db sslpassword=secret":                          "host=db sslpassword=xxxxx",
		"host=db user=u":                                      "host=db user=u",
		"":                                                    "",
		"postgres://u:secret@db:port/app":                     redact.Unparseable,
	} {
		if got := redact.DSN(in); got != want {
			t.Errorf("DSN(%q) = %q, want %q", in, got, want)
		}
	}
}
