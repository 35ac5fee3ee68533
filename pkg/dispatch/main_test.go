package dispatch_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	code := m.Run()
	closeBenchFixture()
	testdb.DropTemplate()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
