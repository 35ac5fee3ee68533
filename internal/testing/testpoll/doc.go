// Package testpoll waits in a test for a condition that another goroutine
// or process makes true, by polling it until it holds or a deadline passes.
//
// It exists instead of testify's require.Eventually because that calls the
// condition on a goroutine of its own: PulseBus's conditions query
// PostgreSQL or scrape metrics through helpers that fail the test with
// require (t.FailNow must run on the test's goroutine), and a condition
// still running when Eventually gives up would outlive the test. Until
// calls the condition on the caller's goroutine, one call at a time, and
// never after it returned.
package testpoll
