package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	// sessionCookie names the console's session cookie.
	sessionCookie = "pulsebus_console"
	// SessionTTL is how long a login lasts.
	SessionTTL = 12 * time.Hour
	// maxSessions bounds the sessions held in memory; the oldest goes
	// first.
	maxSessions = 1000
)

// contentSecurityPolicy allows only the console's own embedded styles and
// script: no inline script or style, no frames, forms posting only here.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// session is one logged-in browser (or, without auth, one browser).
type session struct {
	id      string
	csrf    string
	expires time.Time
	// flash is a message for the next page: what the last action did.
	flash string
}

// who names the session in logs without revealing its id.
func (s *session) who() string {
	if s == nil {
		return "bearer token"
	}
	sum := sha256.Sum256([]byte(s.id))
	return "session " + hex.EncodeToString(sum[:4])
}

// sessions holds the console's sessions in memory: they end with the
// process, which logs everyone out.
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	now  func() time.Time
}

func newSessions() *sessions {
	return &sessions{byID: map[string]*session{}, now: time.Now}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// create starts a session.
func (ss *sessions) create() *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	if len(ss.byID) >= maxSessions {
		var oldest *session
		for id, s := range ss.byID {
			if now.After(s.expires) {
				delete(ss.byID, id)
			} else if oldest == nil || s.expires.Before(oldest.expires) {
				oldest = s
			}
		}
		if len(ss.byID) >= maxSessions && oldest != nil {
			delete(ss.byID, oldest.id)
		}
	}
	s := &session{id: randomToken(), csrf: randomToken(), expires: now.Add(SessionTTL)}
	ss.byID[s.id] = s
	return s
}

// get returns the live session with id, or nil.
func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[id]
	if s != nil && ss.now().After(s.expires) {
		delete(ss.byID, id)
		return nil
	}
	return s
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, id)
}

// setFlash and takeFlash pass a message to the session's next page.
func (ss *sessions) setFlash(s *session, msg string) {
	if s == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s.flash = msg
}

func (ss *sessions) takeFlash(s *session) string {
	if s == nil {
		return ""
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	msg := s.flash
	s.flash = ""
	return msg
}

// equalSecret compares a given secret with the expected one in constant
// time, lengths included (both are hashed first).
func equalSecret(given, want string) bool {
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1 && want != ""
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, sess *session) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    sess.id,
		Path:     "/",
		Expires:  sess.expires,
		HttpOnly: true,
		Secure:   r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
		SameSite: http.SameSiteStrictMode,
	})
}

// securityHeaders sets the headers every console response carries.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}
