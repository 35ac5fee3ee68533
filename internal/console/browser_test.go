package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

// chromiumPath finds the headless browser, skipping the test without one
// unless PULSEBUS_REQUIRE_BROWSER is set (CI installs it: .ci/run).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PULSEBUS_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH (apt-get install -y chromium chromium-driver)")
	}
	t.Skip("no chromium on PATH; install the Debian package chromium to run the browser tests")
	return ""
}

// newBrowser starts headless Chromium with a fresh profile and returns a
// tab's context.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	return tab
}

// screenshots is where the browser tests write their screenshots:
// $PULSEBUS_SCREENSHOTS, or a temporary directory.
func screenshots(t *testing.T) string {
	if d := os.Getenv("PULSEBUS_SCREENSHOTS"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o755))
		return d
	}
	return t.TempDir()
}

func shoot(t *testing.T, tab context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// sinks is the webhook server of the consumer's handlers: "search" answers
// 200 until blocked, then holds every request until released; "crm"
// answers 500 until it recovers.
type sinks struct {
	mu        sync.Mutex
	blocked   chan struct{} // nil: search answers at once
	recovered bool
	srv       *httptest.Server
}

func newSinks(t *testing.T) *sinks {
	s := &sinks{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		blocked, recovered := s.blocked, s.recovered
		s.mu.Unlock()
		switch r.URL.Path {
		case "/search":
			if blocked != nil {
				select {
				case <-blocked:
				case <-r.Context().Done():
					return
				}
			}
			w.WriteHeader(http.StatusOK)
		case "/crm":
			if !recovered {
				http.Error(w, "crm is down", http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(s.srv.Close)
	t.Cleanup(s.release)
	return s
}

func (s *sinks) block() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocked = make(chan struct{})
}

func (s *sinks) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blocked != nil {
		close(s.blocked)
		s.blocked = nil
	}
}

func (s *sinks) recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recovered = true
}

// TestBrowser_Console drives the console of the real relay and consumer
// binaries (PostgreSQL, kfake) in headless Chromium.
func TestBrowser_Console(t *testing.T) {
	tab := newBrowser(t)
	shots := screenshots(t)
	db := testdb.New(t)
	kc := testkafka.New(t)
	const topic = "edupulse.events"
	kc.CreateTopic(t, topic, 1)
	hooks := newSinks(t)
	ctx := context.Background()
	sql := func(q string, args ...any) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, q, args...)
		require.NoError(t, err)
	}
	scalar := func(q string, args ...any) int64 {
		t.Helper()
		var n int64
		require.NoError(t, db.Pool.QueryRow(ctx, q, args...).Scan(&n))
		return n
	}
	publish := func(topic string, n int) {
		t.Helper()
		for i := range n {
			sql(`SELECT pulsebus.publish($1, $2, 'lesson.published', jsonb_build_object('lesson', $2::text, 'title', 'Fractions'))`,
				topic, fmt.Sprintf("l-%d", i))
		}
	}

	env := []string{"CONSOLE_TOKEN=" + testToken, "DATABASE_URL=" + db.URL, "KAFKA_BROKERS=" + strings.Join(kc.Addrs, ","), "LOG_FORMAT=json"}
	relayConsole := procharness.FreeAddr(t)
	relay := procharness.Start(t, procharness.Build(t, "github.com/edupulse/pulsebus/cmd/relay"), procharness.Options{
		Name: "relay", HTTPAddr: relayConsole, Env: env,
		Args: []string{"run", "--metrics-addr", procharness.FreeAddr(t), "--console-addr", relayConsole, "--poll-interval", "200ms"},
	})
	consumerConsole := procharness.FreeAddr(t)
	consumer := procharness.Start(t, procharness.Build(t, "github.com/edupulse/pulsebus/cmd/consumer"), procharness.Options{
		Name: "consumer", HTTPAddr: consumerConsole, Env: env,
		Args: []string{"run", "--metrics-addr", procharness.FreeAddr(t), "--console-addr", consumerConsole,
			"--group", "svc", "--topics", topic, "--flush-interval", "100ms",
			"--handler", "name=search,types=*,webhook=" + hooks.srv.URL + "/search,timeout=2m",
			// 503 is transient: retried for retry-for, then dead-lettered.
			"--handler", "name=crm,types=*,webhook=" + hooks.srv.URL + "/crm,max-attempts=1,retry-for=1s"},
	})
	require.NoError(t, relay.WaitHTTP("/login", time.Minute))
	require.NoError(t, consumer.WaitHTTP("/login", time.Minute))
	base := "http://" + relayConsole

	// Three events are handled by search (and dead-lettered by crm); then
	// search hangs, and four more make it lag.
	publish(topic, 3)
	testpoll.Until(t, time.Minute, 50*time.Millisecond, "search to save offset 3", func() bool {
		return scalar(`SELECT coalesce(max(next_offset), 0) FROM pulsebus.handler_offsets WHERE handler = 'search'`) == 3
	})
	hooks.block()
	publish(topic, 4)
	testpoll.Until(t, time.Minute, 50*time.Millisecond, "7 events in Kafka", func() bool { return kc.RecordCount(topic) == 7 })
	// A row the broker refused earlier, parked.
	sql(`INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type,
		meta, payload, created_at, attempts, error)
		VALUES (900, pulsebus.uuid_v7(), $1, 'l-9', 'lesson.published', 'lessons', '', now(), 'application/json', '{}',
		'{"lesson":"l-9"}', now(), 1, 'kafka: MESSAGE_TOO_LARGE (10): the request included a message larger than the max message size the server will accept')`,
		topic)

	t.Run("rejected without the token", func(t *testing.T) {
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(base+"/consumers")))
		loc, err := chromedp.Run(tab, chromedp.Location())
		require.NoError(t, err)
		require.Equal(t, base+"/login", loc, "the console sends a browser without a session to the login form")
		require.NoError(t, chromedp.Do(tab,
			chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token-at-all"),
			chromedp.Submit(chromedp.CSS("#token")),
			chromedp.WaitVisible(chromedp.CSS(".error")),
		))
		text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(".error")))
		require.NoError(t, err)
		require.Equal(t, "Wrong token.", text)
		resp, err := http.Post(base+"/outbox/parked/900/delete", "application/x-www-form-urlencoded", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	})

	t.Run("log in; the overview shows the backlog and a lagging handler", func(t *testing.T) {
		// Two rows wait for a topic that does not exist (the relay does not
		// create topics): the backlog, with the head row's error.
		publish("grades.missing", 2)
		testpoll.Until(t, time.Minute, 50*time.Millisecond, "the relay to record the missing topic's error", func() bool {
			return scalar(`SELECT count(*) FROM pulsebus.outbox WHERE last_error IS NOT NULL`) > 0
		})
		require.NoError(t, chromedp.Do(tab,
			chromedp.Navigate(base+"/login"),
			chromedp.SendKeys(chromedp.CSS("#token"), testToken),
			chromedp.Submit(chromedp.CSS("#token")),
			chromedp.WaitVisible(chromedp.CSS("#live")),
		))
		loc, err := chromedp.Run(tab, chromedp.Location())
		require.NoError(t, err)
		require.Equal(t, base+"/", loc)
		testpoll.Until(t, time.Minute, 200*time.Millisecond, "the overview to show search lagging by 4", func() bool {
			lag, err := chromedp.Run(tab, chromedp.Evaluate[string](
				`[...document.querySelectorAll("tr.lagging")].map(r => r.cells[1].textContent + "=" + r.cells[3].textContent).join(",")`))
			return err == nil && strings.Contains(lag, "search=4")
		})
		text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("#live")))
		require.NoError(t, err)
		require.Contains(t, text, "grades.missing")
		require.Regexp(t, `grades\.missing\s+2\s`, text)
		require.Contains(t, text, "held", "the relay's lease")
		shoot(t, tab, shots, "overview")

		// The page refreshes its live part in place: two more waiting rows
		// show up without a reload (the marker set in this page survives).
		_, err = chromedp.Run(tab, chromedp.Evaluate[bool](`window.notReloaded = true`))
		require.NoError(t, err)
		publish("grades.missing", 2)
		testpoll.Until(t, time.Minute, 200*time.Millisecond, "the overview to refresh itself to 4 waiting rows", func() bool {
			text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("#live")))
			return err == nil && regexp.MustCompile(`grades\.missing\s+4\s`).MatchString(text)
		})
		kept, err := chromedp.Run(tab, chromedp.Evaluate[bool](`window.notReloaded === true`))
		require.NoError(t, err)
		require.True(t, kept, "the page was reloaded instead of refreshed in place")
		// Readable on a phone: the tables scroll sideways inside the page.
		require.NoError(t, chromedp.Do(tab, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Reload(),
			chromedp.WaitVisible(chromedp.CSS("#live"))))
		overflow, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
		require.NoError(t, err)
		require.False(t, overflow, "the page is wider than a phone's screen")
		shoot(t, tab, shots, "overview-phone")
		require.NoError(t, chromedp.Do(tab, chromedp.EmulateViewport(1280, 900)))
	})

	t.Run("requeue a parked row and see it published", func(t *testing.T) {
		require.NoError(t, chromedp.Do(tab,
			chromedp.Navigate(base+"/outbox"),
			chromedp.WaitVisible(chromedp.CSS(`a[href="/outbox/parked/900"]`)),
		))
		text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("#live")))
		require.NoError(t, err)
		require.Contains(t, text, "MESSAGE_TOO_LARGE", "the full error")
		shoot(t, tab, shots, "outbox")
		require.NoError(t, chromedp.Do(tab,
			chromedp.Click(chromedp.CSS(`a[href="/outbox/parked/900"]`)),
			chromedp.WaitVisible(chromedp.CSS(`form[action="/outbox/parked/900/requeue"] button`)),
			chromedp.Click(chromedp.CSS(`form[action="/outbox/parked/900/requeue"] button`)),
			chromedp.WaitVisible(chromedp.CSS(".flash")),
		))
		flash, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(".flash")))
		require.NoError(t, err)
		require.Contains(t, flash, "Requeued parked row 900 as outbox row")
		testpoll.Until(t, time.Minute, 50*time.Millisecond, "the requeued row in Kafka", func() bool {
			for _, r := range kc.ReadAll(t, topic) {
				if string(r.Key) == "l-9" {
					return true
				}
			}
			return false
		})
		require.Contains(t, relay.Stderr(), `"msg":"console: requeued a parked row into the outbox","parked_id":900`)
	})

	t.Run("replay a handler with the preview", func(t *testing.T) {
		require.NoError(t, chromedp.Do(tab,
			chromedp.Navigate(base+"/consumers"),
			chromedp.WaitVisible(chromedp.CSS(`a[href="/consumers/replay?group=svc&handler=search"]`)),
			chromedp.Click(chromedp.CSS(`a[href="/consumers/replay?group=svc&handler=search"]`)),
			chromedp.WaitVisible(chromedp.CSS("#kind")),
			chromedp.SetValue(chromedp.CSS("#kind"), "offset"),
			chromedp.SendKeys(chromedp.CSS("#value"), "1"),
			// An absolute offset names its partition (it is checked
			// against that partition's watermarks).
			chromedp.SendKeys(chromedp.CSS("#topic"), topic),
			chromedp.SendKeys(chromedp.CSS("#partition"), "0"),
			chromedp.Submit(chromedp.CSS("#value")),
			chromedp.WaitVisible(chromedp.CSS("#preview")),
		))
		preview, err := chromedp.Run(tab, chromedp.Evaluate[string](
			`[...document.querySelectorAll("#preview tbody tr")].map(r => [...r.cells].map(c => c.textContent).join(" ")).join("\n")`))
		require.NoError(t, err)
		require.Equal(t, topic+" 0 3 1", preview, "topic, partition, offset now, offset after")
		require.Equal(t, int64(3), scalar(`SELECT next_offset FROM pulsebus.handler_offsets WHERE handler = 'search'`), "a preview writes nothing")
		shoot(t, tab, shots, "replay-preview")
		require.NoError(t, chromedp.Do(tab,
			chromedp.Click(chromedp.CSS(`#apply button`)),
			chromedp.WaitVisible(chromedp.CSS(".flash")),
		))
		flash, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(".flash")))
		require.NoError(t, err)
		require.Equal(t, "Replayed handler search of group svc: "+topic+"/0 3→1.", flash)
	})

	t.Run("redrive a dead letter after the sink recovers", func(t *testing.T) {
		cbase := "http://" + consumerConsole
		var id int64
		testpoll.Until(t, time.Minute, 50*time.Millisecond, "crm's dead letters", func() bool {
			return db.Pool.QueryRow(ctx, `SELECT min(id) FROM pulsebus.dead_letters WHERE handler = 'crm'`).Scan(&id) == nil && id > 0
		})
		hooks.recover()
		detail := fmt.Sprintf("%s/dead-letters/%d", cbase, id)
		redrive := fmt.Sprintf(`form[action="/dead-letters/%d/redrive"] button`, id)
		require.NoError(t, chromedp.Do(tab,
			chromedp.Navigate(cbase+"/login"),
			chromedp.SendKeys(chromedp.CSS("#token"), testToken),
			chromedp.Submit(chromedp.CSS("#token")),
			chromedp.WaitVisible(chromedp.CSS("#live")),
		))
		// The consumer's overview adds its handlers' commit-to-handle p99.
		text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("#live")))
		require.NoError(t, err)
		require.Regexp(t, `search\s+1\s+\d+\s+0\s+≤ \d+(\.\d+)?m?s`, text)
		shoot(t, tab, shots, "overview-consumer")
		require.NoError(t, chromedp.Do(tab,
			chromedp.Navigate(detail),
			chromedp.WaitVisible(chromedp.CSS(redrive)),
		))
		text, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS("main")))
		require.NoError(t, err)
		require.Contains(t, text, "503 Service Unavailable")
		require.Contains(t, text, `"title": "Fractions"`, "the JSON payload, pretty-printed")
		shoot(t, tab, shots, "dead-letter")
		require.NoError(t, chromedp.Do(tab, chromedp.Click(chromedp.CSS(redrive)), chromedp.WaitVisible(chromedp.CSS(".flash"))))
		flash, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(".flash")))
		require.NoError(t, err)
		require.Contains(t, flash, fmt.Sprintf("Redrove dead letter %d: handler crm handled it", id))
		require.Zero(t, scalar(`SELECT count(*) FROM pulsebus.dead_letters WHERE id = $1`, id))
	})

	t.Run("a cross-origin POST is refused", func(t *testing.T) {
		// A page on another origin (another port of the same host: same
		// site, so the SameSite cookie goes along) posts a form to the
		// console, even with the right CSRF token.
		csrf, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector('input[name="csrf"]').value`))
		require.NoError(t, err)
		sql(`INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type,
			meta, payload, created_at, attempts, error)
			VALUES (901, pulsebus.uuid_v7(), $1, 'l-10', 'lesson.published', 'lessons', '', now(), 'application/json', '{}',
			'{}', now(), 1, 'refused')`, topic)
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/outbox/parked/901/delete">
				<input type="hidden" name="csrf" value="%s"><button id="go">win a prize</button></form>`, "http://"+consumerConsole, csrf)
		}))
		defer evil.Close()
		require.NoError(t, chromedp.Do(tab,
			chromedp.Navigate(evil.URL),
			chromedp.Click(chromedp.CSS("#go")),
			chromedp.WaitVisible(chromedp.CSS("body")),
		))
		testpoll.Until(t, 30*time.Second, 50*time.Millisecond, "the console's answer", func() bool {
			body, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
			return err == nil && strings.Contains(body, "cross-origin request refused")
		})
		require.Equal(t, int64(1), scalar(`SELECT count(*) FROM pulsebus.outbox_parked WHERE id = 901`))
		require.Contains(t, consumer.Stderr(), "console: cross-origin request refused")
	})
}

// Both binaries refuse to serve a console without a token: exit 2, the
// error naming CONSOLE_TOKEN.
func TestBinaries_RefuseConsoleWithoutToken(t *testing.T) {
	for _, bin := range []string{"relay", "consumer"} {
		t.Run(bin, func(t *testing.T) {
			args := []string{"run", "--console-addr", "127.0.0.1:0"}
			if bin == "consumer" {
				args = append(args, "--group", "g", "--topics", "t", "--handler", "name=a,types=*,log=info")
			}
			p := procharness.Start(t, procharness.Build(t, "github.com/edupulse/pulsebus/cmd/"+bin), procharness.Options{
				Args: args, Env: []string{"CONSOLE_TOKEN=", "DATABASE_URL=postgres://nobody@127.0.0.1:1/x"},
			})
			code, err := p.Wait(time.Minute)
			require.NoError(t, err)
			require.Equal(t, 2, code, p.Stderr())
			require.Contains(t, p.Stderr(), "--console-token (CONSOLE_TOKEN): required with --console-addr")
		})
	}
}
