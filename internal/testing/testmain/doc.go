// Package testmain is the TestMain of PulseBus's test binaries: run the
// tests, clean up what the binary left on shared resources (the template
// database of internal/testing/testdb, the executables of internal/testing/procharness),
// then fail a passing run whose goroutines outlived their tests (goleak).
//
//	func TestMain(m *testing.M) { testmain.Run(m, testdb.DropTemplate, procharness.RemoveBuilds) }
//
// The cleanups run whatever the result, so a failing run leaves nothing
// behind either; the leak check runs only after a passing one, where a leak
// is the news (after a failure, goroutines of aborted tests are expected).
package testmain
