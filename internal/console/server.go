package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/dispatch"
)

//go:embed templates/*.html static/*
var assets embed.FS

// ParkedActions puts a parked outbox row back into the outbox or drops it
// (the relay's parked commands implement them).
type ParkedActions interface {
	// RequeueParked moves parked row id back into the outbox and wakes the
	// relay; found is false when there is no such row.
	RequeueParked(ctx context.Context, id int64) (newID int64, found bool, err error)
	// DeleteParked drops parked row id; found is false when there is no
	// such row.
	DeleteParked(ctx context.Context, id int64) (found bool, err error)
}

// Replayer previews and runs a handler replay ([dispatch.Admin]).
type Replayer interface {
	PreviewReplay(ctx context.Context, p dispatch.ReplayParams) ([]dispatch.ReplayChange, error)
	Replay(ctx context.Context, p dispatch.ReplayParams) ([]dispatch.HandlerOffset, error)
}

// Redriver runs this process's handlers once more on dead letters of its
// group ([dispatch.Admin.Redrive]).
type Redriver interface {
	Redrive(ctx context.Context, f dispatch.DeadLetterFilter) (dispatch.RedriveResult, error)
}

// Config is what a console serves.
type Config struct {
	Settings
	// Binary names the serving program ("relay" or "consumer") in the
	// page header.
	Binary string
	// Data reads and changes the pulsebus schema (see [NewData]).
	Data Data
	// Kafka reads high watermarks for lag; nil shows offsets without lag.
	Kafka *kafka.Client
	// Parked, Replay and Redrive are the actions this binary can take;
	// a nil one is not offered.
	Parked ParkedActions
	Replay Replayer
	// Redrive runs the handlers RedriveHandlers names, of consumer group
	// RedriveGroup.
	Redrive         Redriver
	RedriveGroup    string
	RedriveHandlers []string
	// Metrics, when set, is the consumer's registry: the overview shows
	// the commit-to-handle p99 of RedriveGroup's handlers from it.
	Metrics prometheus.Gatherer
	// Logger logs every action at info. Defaults to slog.Default().
	Logger *slog.Logger
}

// Server serves the console. Create it with [New].
type Server struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	origin   *http.CrossOriginProtection
	pages    map[string]*template.Template
	static   http.Handler
	mux      *http.ServeMux
	marks    *watermarks
}

// New checks cfg and returns its console.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Data == nil {
		return nil, errors.New("console: Config.Data is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		sessions: newSessions(),
		origin:   http.NewCrossOriginProtection(),
		pages:    map[string]*template.Template{},
		marks:    &watermarks{client: cfg.Kafka},
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	s.static = http.StripPrefix("/static/", http.FileServerFS(static))
	pages, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(templateFuncs).ParseFS(assets, "templates/layout.html", p)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	s.routes()
	return s, nil
}

// Start listens on the configured address and serves the console until ctx
// is done, then shuts it down. It returns the bound address and a channel
// that receives the server's final error (nil after a clean shutdown).
func (s *Server) Start(ctx context.Context) (string, <-chan error, error) {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen on --console-addr (CONSOLE_ADDR) %s: %w", s.cfg.Addr, err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			done <- err
			return
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-errc; err == nil && !errors.Is(serr, http.ErrServerClosed) {
			err = serr
		}
		done <- err
	}()
	auth := "token"
	if s.cfg.InsecureNoAuth {
		auth = "none (--console-insecure-no-auth)"
	}
	s.log.Info("serving the operator console", "url", "http://"+ln.Addr().String()+"/", "auth", auth,
		"read_only", s.cfg.ReadOnly, "hide_payloads", s.cfg.HidePayloads)
	return ln.Addr().String(), done, nil
}

// request is an authenticated request: sess is nil for a Bearer token.
type request struct {
	*http.Request
	sess *session
}

type handlerFunc func(w http.ResponseWriter, r request)

// routes registers the pages (GET) and actions (POST).
func (s *Server) routes() {
	s.mux = http.NewServeMux()
	page := func(pattern string, h handlerFunc) { s.mux.HandleFunc("GET "+pattern, s.authed(h)) }
	action := func(pattern string, h handlerFunc) { s.mux.HandleFunc("POST "+pattern, s.authed(s.checkAction(h))) }
	s.mux.Handle("GET /static/", s.static)
	s.mux.HandleFunc("GET /login", s.loginForm)
	s.mux.HandleFunc("POST /login", s.login)
	action("/logout", s.logout)
	page("/{$}", s.overview)
	page("/outbox", s.outbox)
	page("/outbox/parked/{id}", s.parkedDetail)
	action("/outbox/parked/{id}/requeue", s.requeueParked)
	action("/outbox/parked/{id}/delete", s.deleteParked)
	page("/consumers", s.consumers)
	page("/consumers/replay", s.replayForm)
	action("/consumers/replay", s.replay)
	page("/dead-letters", s.deadLetters)
	action("/dead-letters/delete-matching", s.deleteDeadLetters)
	action("/dead-letters/redrive-matching", s.redriveDeadLetters)
	page("/dead-letters/{id}", s.deadLetterDetail)
	action("/dead-letters/{id}/delete", s.deleteDeadLetter)
	action("/dead-letters/{id}/redrive", s.redriveDeadLetter)
	page("/events", s.lookup)
}

// ServeHTTP sets the security headers and serves the console.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	s.mux.ServeHTTP(w, r)
}

// authed lets through requests with the token (Bearer) or a session,
// creating one when the console runs without auth; it sends browsers
// without one to the login form.
func (s *Server) authed(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := bearer(r); ok {
			if s.cfg.InsecureNoAuth || equalSecret(tok, s.cfg.Token) {
				h(w, request{Request: r})
				return
			}
			s.log.Warn("console: request with a wrong bearer token refused", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="pulsebus console"`)
			http.Error(w, "wrong token", http.StatusUnauthorized)
			return
		}
		var sess *session
		if c, err := r.Cookie(sessionCookie); err == nil {
			sess = s.sessions.get(c.Value)
		}
		if sess == nil && s.cfg.InsecureNoAuth {
			sess = s.sessions.create()
			s.setSessionCookie(w, r, sess)
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "log in first: no console session", http.StatusUnauthorized)
			return
		}
		h(w, request{Request: r, sess: sess})
	}
}

// checkAction refuses an action in read-only mode, from another origin, or
// without the session's CSRF token (a Bearer request carries no ambient
// credential and needs none).
func (s *Server) checkAction(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r request) {
		if err := s.origin.Check(r.Request); err != nil {
			s.log.Warn("console: cross-origin request refused", "remote", r.RemoteAddr, "path", r.URL.Path,
				"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		if r.sess != nil && !equalSecret(r.PostFormValue("csrf"), r.sess.csrf) {
			s.log.Warn("console: request without a valid CSRF token refused", "remote", r.RemoteAddr, "path", r.URL.Path)
			http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		if s.cfg.ReadOnly && r.URL.Path != "/logout" {
			http.Error(w, "the console is read-only (--console-read-only)", http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	if s.cfg.InsecureNoAuth {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, request{Request: r}, http.StatusOK, "login", "Log in", loginData{})
}

type loginData struct{ Failed bool }

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := s.origin.Check(r); err != nil {
		s.log.Warn("console: cross-origin login refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	if s.cfg.InsecureNoAuth {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !equalSecret(r.PostFormValue("token"), s.cfg.Token) {
		s.log.Warn("console: login with a wrong token", "remote", r.RemoteAddr)
		s.render(w, request{Request: r}, http.StatusUnauthorized, "login", "Log in", loginData{Failed: true})
		return
	}
	sess := s.sessions.create()
	s.setSessionCookie(w, r, sess)
	s.log.Info("console: logged in", "who", sess.who(), "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r request) {
	if r.sess != nil {
		s.sessions.remove(r.sess.id)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https", SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r.Request, "/login", http.StatusSeeOther)
}

// view is what every page template gets.
type view struct {
	Title        string
	Binary       string
	Path         string
	CSRF         string
	Flash        string
	ReadOnly     bool
	HidePayloads bool
	LoggedIn     bool
	Data         any
}

// render writes page name with data.
func (s *Server) render(w http.ResponseWriter, r request, status int, name, title string, data any) {
	v := view{Title: title, Binary: s.cfg.Binary, Path: r.URL.Path, ReadOnly: s.cfg.ReadOnly,
		HidePayloads: s.cfg.HidePayloads, Data: data}
	if r.sess != nil {
		v.CSRF = r.sess.csrf
		v.Flash = s.sessions.takeFlash(r.sess)
		v.LoggedIn = !s.cfg.InsecureNoAuth
	}
	var b strings.Builder
	if err := s.pages[name].ExecuteTemplate(&b, "layout", v); err != nil {
		s.log.Error("console: render page", "page", name, "err", err)
		http.Error(w, "console: could not render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail shows an error page for err, logged at warn: bad input (4xx) names
// what is wrong; a database or Kafka error is shown as it is.
func (s *Server) fail(w http.ResponseWriter, r request, status int, err error) {
	if status >= 500 {
		s.log.Warn("console: page failed", "path", r.URL.Path, "err", err)
	}
	s.render(w, r, status, "error", "Error", err.Error())
}

// done records what an action did for the next page and redirects there.
func (s *Server) done(w http.ResponseWriter, r request, to, msg string) {
	if r.sess == nil { // a script: the message is the answer
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, msg)
		return
	}
	s.sessions.setFlash(r.sess, msg)
	http.Redirect(w, r.Request, to, http.StatusSeeOther)
}
