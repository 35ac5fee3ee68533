package console_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/console"
	"github.com/edupulse/pulsebus/internal/relaycmd"
	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
	"github.com/edupulse/pulsebus/pkg/dispatch/dispatchprom"
)

func TestMain(m *testing.M) { testmain.Run(m, testdb.DropTemplate, procharness.RemoveBuilds) }

const testToken = "test-token-0123456789abcdef"

// consoleUnderTest is a console on a test database, served over HTTP.
type consoleUnderTest struct {
	t   *testing.T
	db  *testdb.DB
	srv *httptest.Server
	log *bytes.Buffer
}

func newConsole(t *testing.T, mutate func(*console.Config)) *consoleUnderTest {
	t.Helper()
	db := testdb.New(t)
	logs := &bytes.Buffer{}
	cfg := console.Config{
		Settings: console.Settings{Addr: "127.0.0.1:0", Token: testToken},
		Binary:   "relay",
		Data:     console.NewData(db.Pool),
		Parked:   relaycmd.ConsoleParked(db.Pool),
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := console.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &consoleUnderTest{t: t, db: db, srv: srv, log: logs}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so tests see them.
func (c *consoleUnderTest) browser() *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(c.t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// loggedIn returns a browser logged in with the token.
func (c *consoleUnderTest) loggedIn() *http.Client {
	b := c.browser()
	resp, err := b.PostForm(c.srv.URL+"/login", url.Values{"token": {testToken}})
	require.NoError(c.t, err)
	resp.Body.Close()
	require.Equal(c.t, http.StatusSeeOther, resp.StatusCode)
	return b
}

func (c *consoleUnderTest) get(b *http.Client, path string) (int, string) {
	c.t.Helper()
	resp, err := b.Get(c.srv.URL + path)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return resp.StatusCode, string(body)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf reads the CSRF token from a page's forms.
func (c *consoleUnderTest) csrf(b *http.Client, path string) string {
	c.t.Helper()
	_, body := c.get(b, path)
	m := csrfField.FindStringSubmatch(body)
	require.NotNil(c.t, m, "no CSRF field on %s:\n%s", path, body)
	return m[1]
}

// post posts form to path with extra headers and returns the status.
func (c *consoleUnderTest) post(b *http.Client, path string, form url.Values, headers ...string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (c *consoleUnderTest) exec(sql string, args ...any) {
	c.t.Helper()
	_, err := c.db.Pool.Exec(context.Background(), sql, args...)
	require.NoError(c.t, err)
}

func (c *consoleUnderTest) count(table string) int {
	c.t.Helper()
	var n int
	require.NoError(c.t, c.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n))
	return n
}

// addDeadLetter inserts a dead letter and returns its id.
func (c *consoleUnderTest) addDeadLetter(handler, eventType, payload, headers string) int64 {
	c.t.Helper()
	var id int64
	require.NoError(c.t, c.db.Pool.QueryRow(context.Background(), `
		INSERT INTO pulsebus.dead_letters (group_id, handler, topic, partition, kafka_offset, event_type, message_key,
			message_headers, message_value, error, attempts, first_failed_at, last_failed_at)
		VALUES ('svc', $1, 'edupulse.events', 0, (SELECT count(*) FROM pulsebus.dead_letters), $2, 'k1', $4::jsonb, $3,
			'webhook answered 500', 3, now(), now())
		RETURNING id`, handler, eventType, []byte(payload), headers).Scan(&id))
	return id
}

// addParked inserts a parked row with id and returns it.
func (c *consoleUnderTest) addParked(id int64, topic, payload string) {
	c.t.Helper()
	c.exec(`INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type,
		meta, payload, created_at, attempts, error)
		VALUES ($1, gen_random_uuid(), $2, 'k', 'lesson.published', 'test', '', now(), 'application/json', '{}', $3, now(), 1,
		'MESSAGE_TOO_LARGE: the broker refused it')`, id, topic, []byte(payload))
}

func TestSettings_Validate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		s    console.Settings
		want string // "" for valid
	}{
		{"off", console.Settings{}, ""},
		{"token", console.Settings{Addr: ":8080", Token: testToken}, ""},
		{"no auth", console.Settings{Addr: ":8080", InsecureNoAuth: true}, ""},
		{"no token", console.Settings{Addr: ":8080"}, "--console-token (CONSOLE_TOKEN): required with --console-addr"},
		{"short token", console.Settings{Addr: ":8080", Token: "short"}, "shorter than 16 characters"},
		{"both", console.Settings{Addr: ":8080", Token: testToken, InsecureNoAuth: true}, "drop one of them"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			var ce *cli.ConfigError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, 2, cli.ExitCode(err))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestAuth_LoginBearerAndCookie(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)

	anon := c.browser()
	resp, err := anon.Get(c.srv.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "a browser without a session is sent to the login form")
	require.Equal(t, "/login", resp.Header.Get("Location"))
	status, _ := c.post(anon, "/dead-letters/1/delete", url.Values{})
	require.Equal(t, http.StatusUnauthorized, status)

	status, body := c.post(anon, "/login", url.Values{"token": {testToken + "x"}})
	require.Equal(t, http.StatusUnauthorized, status)
	require.Contains(t, body, "Wrong token")
	require.Contains(t, c.log.String(), "login with a wrong token")

	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer " + testToken, http.StatusOK},
		{"bearer " + testToken, http.StatusOK},
		{"Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"Basic " + testToken, http.StatusSeeOther},
	} {
		req, _ := http.NewRequest(http.MethodGet, c.srv.URL+"/", nil)
		req.Header.Set("Authorization", tc.header)
		resp, err := anon.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, tc.want, resp.StatusCode, tc.header)
	}

	resp, err = anon.PostForm(c.srv.URL+"/login", url.Values{"token": {testToken}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	cookies := resp.Cookies()
	require.Len(t, cookies, 1)
	require.True(t, cookies[0].HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, cookies[0].SameSite)
	require.False(t, cookies[0].Secure, "Secure only over TLS: a browser drops a Secure cookie over plain HTTP")
	status, body = c.get(anon, "/")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "Relay leader")

	// Log out ends the session.
	status, _ = c.post(anon, "/logout", url.Values{"csrf": {c.csrf(anon, "/")}})
	require.Equal(t, http.StatusSeeOther, status)
	resp, err = anon.Get(c.srv.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

func TestAuth_SecureCookieOverTLS(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	s, err := console.New(console.Config{Settings: console.Settings{Addr: ":0", Token: testToken}, Data: console.NewData(db.Pool)})
	require.NoError(t, err)
	srv := httptest.NewTLSServer(s)
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.PostForm(srv.URL+"/login", url.Values{"token": {testToken}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Len(t, resp.Cookies(), 1)
	require.True(t, resp.Cookies()[0].Secure)
}

// Behind a TLS-terminating proxy the cookie is Secure too.
func TestAuth_SecureCookieBehindATLSProxy(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	req, _ := http.NewRequest(http.MethodPost, c.srv.URL+"/login", strings.NewReader(url.Values{"token": {testToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := c.browser().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Len(t, resp.Cookies(), 1)
	require.True(t, resp.Cookies()[0].Secure)
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	for _, path := range []string{"/login", "/static/console.css", "/"} {
		resp, err := c.browser().Get(c.srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		require.Contains(t, csp, "default-src 'self'", path)
		require.Contains(t, csp, "script-src 'self';", path)
		require.NotContains(t, csp, "unsafe-inline", path)
		require.Contains(t, csp, "frame-ancestors 'none'", path)
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
	}
	// The pages load nothing from elsewhere and run no inline script.
	_, body := c.get(c.loggedIn(), "/")
	require.NotRegexp(t, `(src|href)="(https?:)?//`, body)
	require.NotRegexp(t, `<script>|<script [^>]*>[^<]`, body)
	require.NotContains(t, body, " style=")
}

// An action needs the session's CSRF token.
func TestActions_RequireCSRFToken(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	id := c.addDeadLetter("mailer", "lesson.published", `{"n":1}`, `[]`)
	b := c.loggedIn()
	path := "/dead-letters/" + itoa(id) + "/delete"

	status, _ := c.post(b, path, url.Values{})
	require.Equal(t, http.StatusForbidden, status, "no CSRF token")
	status, _ = c.post(b, path, url.Values{"csrf": {strings.Repeat("0", 64)}})
	require.Equal(t, http.StatusForbidden, status, "wrong CSRF token")
	require.Equal(t, 1, c.count("pulsebus.dead_letters"))

	// Another session's token does not do either.
	other := c.csrf(c.loggedIn(), "/dead-letters/"+itoa(id))
	status, _ = c.post(b, path, url.Values{"csrf": {other}})
	require.Equal(t, http.StatusForbidden, status, "another session's CSRF token")

	status, _ = c.post(b, path, url.Values{"csrf": {c.csrf(b, "/dead-letters/"+itoa(id))}})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, 0, c.count("pulsebus.dead_letters"))
	require.Regexp(t, `level=INFO msg="console: deleted a dead letter" id=`+itoa(id)+` group=svc handler=mailer`, c.log.String())
	_, body := c.get(b, "/dead-letters")
	require.Contains(t, body, "Deleted dead letter "+itoa(id))
}

// A cross-origin POST is refused even with a valid session and CSRF token.
func TestActions_CrossOriginRefused(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	id := c.addDeadLetter("mailer", "lesson.published", `{"n":1}`, `[]`)
	b := c.loggedIn()
	path := "/dead-letters/" + itoa(id) + "/delete"
	form := url.Values{"csrf": {c.csrf(b, "/dead-letters/"+itoa(id))}}

	status, _ := c.post(b, path, form, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, status)
	status, _ = c.post(b, path, form, "Origin", "https://evil.example")
	require.Equal(t, http.StatusForbidden, status)
	status, _ = c.post(b, "/login", url.Values{"token": {testToken}}, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, status, "login from another site")
	require.Equal(t, 1, c.count("pulsebus.dead_letters"))
	require.Contains(t, c.log.String(), "cross-origin request refused")

	status, _ = c.post(b, path, form, "Sec-Fetch-Site", "same-origin", "Origin", c.srv.URL)
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, 0, c.count("pulsebus.dead_letters"))
}

// A script acts with the Bearer token alone: it carries no ambient
// credential a forged request could use.
func TestActions_BearerNeedsNoCSRFToken(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	c.addParked(7, "edupulse.events", `{"big":true}`)
	status, body := c.post(http.DefaultClient, "/outbox/parked/7/requeue", url.Values{}, "Authorization", "Bearer "+testToken)
	require.Equal(t, http.StatusOK, status, body)
	require.Contains(t, body, "Requeued parked row 7 as outbox row")
	require.Equal(t, 0, c.count("pulsebus.outbox_parked"))
	require.Equal(t, 1, c.count("pulsebus.outbox"))
	require.Regexp(t, `msg="console: requeued a parked row into the outbox" parked_id=7 outbox_id=\d+ who="bearer token"`, c.log.String())
}

func TestParked_RequeueAndDeleteFromTheDetailPage(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	c.addParked(7, "edupulse.events", `{"lesson":"l-1"}`)
	c.addParked(8, "edupulse.events", `{"lesson":"l-2"}`)
	b := c.loggedIn()

	_, body := c.get(b, "/outbox")
	require.Contains(t, body, "MESSAGE_TOO_LARGE: the broker refused it")
	require.Contains(t, body, `href="/outbox/parked/7"`)
	_, body = c.get(b, "/outbox/parked/7")
	require.Contains(t, body, "&#34;lesson&#34;: &#34;l-1&#34;", "the JSON payload, pretty-printed")
	require.Contains(t, body, `action="/outbox/parked/7/requeue"`)

	status, _ := c.post(b, "/outbox/parked/7/requeue", url.Values{"csrf": {c.csrf(b, "/outbox/parked/7")}})
	require.Equal(t, http.StatusSeeOther, status)
	status, _ = c.post(b, "/outbox/parked/8/delete", url.Values{"csrf": {c.csrf(b, "/outbox/parked/8")}})
	require.Equal(t, http.StatusSeeOther, status)
	require.Equal(t, 0, c.count("pulsebus.outbox_parked"))
	require.Equal(t, 1, c.count("pulsebus.outbox"))
	require.Contains(t, c.log.String(), `msg="console: deleted a parked row" parked_id=8`)

	status, body = c.post(b, "/outbox/parked/8/delete", url.Values{"csrf": {c.csrf(b, "/outbox")}})
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, body, "no parked row with id 8")
	status, _ = c.get(b, "/outbox/parked/8/delete")
	require.Equal(t, http.StatusMethodNotAllowed, status, "actions are POSTs only")
	status, body = c.get(b, "/outbox/parked/x")
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, "&#34;x&#34; is not a row id")
}

func TestReadOnly_OffersAndAcceptsNoAction(t *testing.T) {
	t.Parallel()
	c := newConsole(t, func(cfg *console.Config) { cfg.ReadOnly = true })
	c.addParked(7, "edupulse.events", `{}`)
	id := c.addDeadLetter("mailer", "lesson.published", `{}`, `[]`)
	b := c.loggedIn()
	for _, page := range []string{"/outbox/parked/7", "/dead-letters/" + itoa(id)} {
		_, body := c.get(b, page)
		require.Contains(t, body, "Read-only console")
		require.NotContains(t, body, "/requeue", page)
		require.NotContains(t, body, "/delete", page)
	}
	csrf := c.csrf(b, "/") // the logout form
	for _, path := range []string{"/outbox/parked/7/requeue", "/outbox/parked/7/delete", "/dead-letters/" + itoa(id) + "/delete"} {
		status, body := c.post(b, path, url.Values{"csrf": {csrf}})
		require.Equal(t, http.StatusForbidden, status, path)
		require.Contains(t, body, "read-only")
	}
	status, _ := c.post(http.DefaultClient, "/outbox/parked/7/delete", url.Values{}, "Authorization", "Bearer "+testToken)
	require.Equal(t, http.StatusForbidden, status)
	require.Equal(t, 1, c.count("pulsebus.outbox_parked"))
	require.Equal(t, 1, c.count("pulsebus.dead_letters"))
}

func TestHidePayloads(t *testing.T) {
	t.Parallel()
	c := newConsole(t, func(cfg *console.Config) { cfg.HidePayloads = true })
	id := c.addDeadLetter("mailer", "user.registered", `{"email":"ada@example.com"}`,
		`[{"key":"x-user","value":"YWRhQGV4YW1wbGUuY29t"}]`) // "ada@example.com"
	c.addParked(7, "edupulse.events", `{"email":"ada@example.com"}`)
	b := c.loggedIn()
	for _, page := range []string{"/dead-letters/" + itoa(id), "/outbox/parked/7"} {
		status, body := c.get(b, page)
		require.Equal(t, http.StatusOK, status)
		require.NotContains(t, body, "ada@example.com", page)
		require.Contains(t, body, "Hidden (--console-hide-payloads)", page)
	}
	_, body := c.get(b, "/dead-letters/"+itoa(id))
	require.Contains(t, body, "x-user", "header names stay")
}

// Hostile text in a payload, an event type, an error or a header is shown
// as text, never as markup.
func TestEscaping_HostileContent(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	const hostile = `</pre><script>alert(1)</script><img src=x onerror=alert(2)>`
	id := c.addDeadLetter("mailer", hostile, `{"name":"`+strings.ReplaceAll(hostile, `"`, `\"`)+`"}`,
		`[{"key":"<b>h</b>","value":"PHNjcmlwdD5hbGVydCgzKTwvc2NyaXB0Pg=="}]`) // <script>alert(3)</script>
	c.exec(`UPDATE pulsebus.dead_letters SET error = $1`, hostile)
	b := c.loggedIn()
	for _, page := range []string{"/dead-letters/" + itoa(id), "/dead-letters?q=" + url.QueryEscape("<script>"), "/"} {
		status, body := c.get(b, page)
		require.Equal(t, http.StatusOK, status, page)
		require.NotContains(t, body, "<script>alert", page)
		require.NotContains(t, body, "<img src=x", page)
		require.NotContains(t, body, "<b>h</b>", page)
	}
	_, body := c.get(b, "/dead-letters/"+itoa(id))
	require.Contains(t, body, "&lt;script&gt;alert(1)&lt;/script&gt;")
	require.Contains(t, body, "&lt;script&gt;alert(3)&lt;/script&gt;")
	_, body = c.get(b, "/dead-letters?q="+url.QueryEscape("<script>"))
	require.Contains(t, body, `/dead-letters/`+itoa(id), "the filter on error text finds it")
}

func TestInsecureNoAuth_StillNeedsCSRFAndSameOrigin(t *testing.T) {
	t.Parallel()
	c := newConsole(t, func(cfg *console.Config) { cfg.Token, cfg.InsecureNoAuth = "", true })
	id := c.addDeadLetter("mailer", "lesson.published", `{}`, `[]`)
	b := c.browser()
	status, _ := c.get(b, "/")
	require.Equal(t, http.StatusOK, status, "no login")
	status, _ = c.post(c.browser(), "/dead-letters/"+itoa(id)+"/delete", url.Values{})
	require.Equal(t, http.StatusForbidden, status, "a POST without a session's CSRF token (a forged form) is refused")
	form := url.Values{"csrf": {c.csrf(b, "/dead-letters/"+itoa(id))}}
	status, _ = c.post(b, "/dead-letters/"+itoa(id)+"/delete", form, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, status)
	status, _ = c.post(b, "/dead-letters/"+itoa(id)+"/delete", form)
	require.Equal(t, http.StatusSeeOther, status)
}

func TestLookup_SaysWhereAnEventIs(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	c.addParked(7, "edupulse.events", `{}`)
	var parkedID string
	require.NoError(t, c.db.Pool.QueryRow(context.Background(), `SELECT event_id::text FROM pulsebus.outbox_parked`).Scan(&parkedID))
	var waitingID string
	require.NoError(t, c.db.Pool.QueryRow(context.Background(),
		`SELECT pulsebus.publish('edupulse.events', 'k', 'lesson.published', '{}')::text`).Scan(&waitingID))
	b := c.loggedIn()
	_, body := c.get(b, "/events?id="+parkedID)
	require.Contains(t, body, `Parked as row <a href="/outbox/parked/7">7</a>`)
	_, body = c.get(b, "/events?id="+waitingID)
	require.Contains(t, body, "Waiting in the outbox as row")
	_, body = c.get(b, "/events?id=0190f3c2-0000-7000-8000-000000000000")
	require.Contains(t, body, "Not in the outbox, not parked and not dead-lettered")
	_, body = c.get(b, "/events?id=nope")
	require.Contains(t, body, "&#34;nope&#34; is not an event id (a UUID)")
}

func TestNew_RequiresData(t *testing.T) {
	t.Parallel()
	_, err := console.New(console.Config{Settings: console.Settings{Addr: ":0", InsecureNoAuth: true}})
	require.ErrorContains(t, err, "Config.Data is required")
	_, err = console.New(console.Config{Settings: console.Settings{Addr: ":0"}})
	var ce *cli.ConfigError
	require.True(t, errors.As(err, &ce))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Bulk delete by filter shows the count first and deletes only what was
// counted: dead letters arriving after the count stay.
func TestDeadLetters_BulkDeleteByFilter(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	for range 3 {
		c.addDeadLetter("mailer", "lesson.published", `{}`, `[]`)
	}
	timeout := c.addDeadLetter("mailer", "lesson.published", `{}`, `[]`)
	c.exec(`UPDATE pulsebus.dead_letters SET error = 'context deadline exceeded' WHERE id = $1`, timeout)
	other := c.addDeadLetter("crm", "lesson.published", `{}`, `[]`)
	b := c.loggedIn()

	_, body := c.get(b, "/dead-letters?group=svc&handler=mailer&q=ANSWERED+500")
	require.Contains(t, body, "<strong>3</strong> dead letter(s) match this filter")
	maxID := regexp.MustCompile(`name="max_id" value="(\d+)"`).FindStringSubmatch(body)
	require.NotNil(t, maxID, body)
	later := c.addDeadLetter("mailer", "lesson.published", `{}`, `[]`)

	form := url.Values{"csrf": {c.csrf(b, "/")}, "group": {"svc"}, "handler": {"mailer"}, "q": {"ANSWERED 500"}, "max_id": {maxID[1]}}
	status, _ := c.post(b, "/dead-letters/delete-matching", form)
	require.Equal(t, http.StatusSeeOther, status)
	var left []int64
	rows, err := c.db.Pool.Query(context.Background(), `SELECT id FROM pulsebus.dead_letters ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		left = append(left, id)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int64{timeout, other, later}, left)
	require.Contains(t, c.log.String(), `msg="console: deleted dead letters by filter" deleted=3 group=svc handler=mailer error_contains="ANSWERED 500"`)
	_, body = c.get(b, "/dead-letters?group=svc&handler=mailer")
	require.Contains(t, body, "Deleted 3 dead letter(s) of group svc.")

	form.Del("group")
	status, body = c.post(b, "/dead-letters/delete-matching", form)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, "a bulk action needs a group")
	// The relay cannot redrive: no redrive form, and the action is refused.
	_, body = c.get(b, "/dead-letters?group=svc&handler=mailer")
	require.NotContains(t, body, "redrive-matching")
	status, _ = c.post(b, "/dead-letters/redrive-matching", url.Values{"csrf": {c.csrf(b, "/")}, "group": {"svc"}, "handler": {"mailer"}, "max_id": {"99"}})
	require.Equal(t, http.StatusBadRequest, status)
}

// The consumer's console shows its handlers' commit-to-handle p99 from the
// process's histogram: the upper bound of the bucket holding it.
func TestOverview_ShowsTheConsumersP99(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: dispatchprom.NameCommitToHandle,
		Buckets: dispatchprom.DefaultLatencyBuckets}, []string{"handler"})
	reg.MustRegister(hist)
	for i := range 100 {
		hist.WithLabelValues("mailer").Observe(0.003) // 5 ms bucket
		if i == 0 {
			hist.WithLabelValues("mailer").Observe(0.2) // one slow: above p99 of 101
		}
		hist.WithLabelValues("slow").Observe(1000)
	}
	c := newConsole(t, func(cfg *console.Config) { cfg.Metrics, cfg.RedriveGroup = reg, "svc" })
	c.exec(`INSERT INTO pulsebus.handler_offsets (group_id, handler, topic, partition, next_offset)
		VALUES ('svc', 'mailer', 't', 0, 1), ('svc', 'slow', 't', 0, 1), ('svc', 'quiet', 't', 0, 1), ('other', 'mailer', 't', 0, 1)`)
	_, body := c.get(c.loggedIn(), "/")
	names := regexp.MustCompile(`<td>(\w+)</td><td>(\w+)</td>`)
	latency := regexp.MustCompile(`<td class="num">([^<]*)</td><td>[^<]* ago</td>`)
	got := map[string]string{}
	for _, tr := range strings.Split(body, "<tr")[1:] {
		n, l := names.FindStringSubmatch(tr), latency.FindStringSubmatch(tr)
		if n != nil && l != nil {
			got[n[1]+"/"+n[2]] = l[1]
		}
	}
	require.Equal(t, map[string]string{"other/mailer": "–", "svc/mailer": "≤ 5ms", "svc/quiet": "–", "svc/slow": "&gt; largest bucket"}, got, body)
}

// Counts on the overview stop at console.CountCap: beyond it the page shows
// the planner's estimate, and the backlog per topic covers the oldest rows.
func TestOverview_CountsAreBounded(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	c.exec(`INSERT INTO pulsebus.outbox (event_id, topic, type, source, event_time, payload)
		SELECT gen_random_uuid(), CASE WHEN i <= $1 THEN 'old' ELSE 'new' END, 't', 's', now(), '\x7b7d'
		  FROM generate_series(1, $1 + 2000) i`, console.CountCap)
	c.exec(`ANALYZE pulsebus.outbox`)
	_, body := c.get(c.loggedIn(), "/")
	require.Regexp(t, `Waiting rows</h2><p class="big">10000&#43; \(about 1[12]\d{3}\)</p>`, body)
	require.Contains(t, body, "<td>old</td><td class=\"num\">10000</td>")
	require.NotContains(t, body, "<td>new</td>", "a topic whose rows all wait behind the oldest 10000 is not counted")
	require.Contains(t, body, "Counted among the 10000 oldest rows")

	c.exec(`DELETE FROM pulsebus.outbox WHERE id > $1`, console.CountCap)
	_, body = c.get(c.loggedIn(), "/")
	require.Contains(t, body, `Waiting rows</h2><p class="big">10000</p>`, "exactly the cap is exact")
}

// The overview lists the keys held behind a parked row (relay
// --on-refused hold-key) with how many rows wait, and nothing when no row
// is held.
func TestOverview_ShowsHeldKeys(t *testing.T) {
	t.Parallel()
	c := newConsole(t, nil)
	_, body := c.get(c.loggedIn(), "/")
	require.NotContains(t, body, "Held keys")

	c.exec(`INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, created_at, attempts, error)
		VALUES (0, gen_random_uuid(), 'lessons', 'course-7', 'x.y', 's', '', now(), '', '{}', '', now(), 1, 'too big')`)
	c.exec(`INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, event_time, payload)
		SELECT gen_random_uuid(), 'lessons', k, 't', 's', now(), '\x7b7d' FROM unnest(ARRAY['course-7', 'course-7', 'other']) k`)
	_, body = c.get(c.loggedIn(), "/")
	require.Contains(t, body, "Held keys")
	require.Regexp(t, `<td>lessons</td><td>course-7</td><td class="num warn">2</td><td><a href="/outbox#parked">0</a></td>`, body)
	require.NotContains(t, body, "<td>other</td>")
}
