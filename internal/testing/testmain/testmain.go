package testmain

import (
	"fmt"
	"io"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Run runs m's tests, then each cleanup in order, then, if the tests
// passed, checks that no goroutine outlived them; it exits the process with
// status 0 only if the tests passed and nothing leaked. Call it as the
// whole body of TestMain.
func Run(m *testing.M, cleanups ...func()) {
	os.Exit(run(m, goleak.Find, os.Stderr, cleanups...))
}

// run is Run without the exit, for tests: find reports leaked goroutines,
// stderr gets the report.
func run(m interface{ Run() int }, find func(...goleak.Option) error, stderr io.Writer, cleanups ...func()) int {
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	if code == 0 {
		if err := find(); err != nil {
			fmt.Fprintf(stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	return code
}
