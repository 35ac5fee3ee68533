// Package console is the operator console both binaries serve on their own
// listener (--console-addr): server-rendered pages showing the relay
// leader, the outbox backlog and parked rows, handler offsets and lag, dead
// letters and where an event is, with the actions an operator takes on
// them (requeue or delete a parked row, replay a handler, delete or redrive
// a dead letter).
//
// Safety comes first: the console refuses to start without a token unless
// told it runs for local use only; a browser logs in with the token and
// gets an HttpOnly, SameSite=Strict session cookie, a script sends it as a
// Bearer token; every action is a POST carrying the session's CSRF token,
// and cross-origin POSTs are refused (Sec-Fetch-Site and Origin, see
// [net/http.CrossOriginProtection]); pages set a strict
// Content-Security-Policy and load nothing from elsewhere (every asset is
// embedded); every action is logged with what it changed. Actions work as
// plain forms without JavaScript; a small embedded script only refreshes
// the live parts of a page.
//
// All reads and actions on PostgreSQL go through [Data] (data.go); actions
// implemented elsewhere are passed in by the binaries through [Config].
package console
