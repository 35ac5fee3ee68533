package testpoll

import (
	"testing"
	"time"
)

// Until calls cond, then again every tick, until it returns true. If it
// has not returned true when timeout has passed since the first call, Until
// fails the test with "timed out after <timeout> waiting for <what>", so
// what should say what the test waits for ("outbox drained").
func Until(t testing.TB, timeout, tick time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(tick)
	}
}
