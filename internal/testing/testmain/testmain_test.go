package testmain

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

type fakeM struct {
	code  int
	trace *[]string
}

func (m fakeM) Run() int {
	*m.trace = append(*m.trace, "tests")
	return m.code
}

// Not parallel: TestRun_FindsARealLeak looks at every goroutine.
func TestRun(t *testing.T) {
	leak := errors.New("found unexpected goroutines: [Goroutine 7 in state select]")
	cases := []struct {
		name      string
		code      int
		leak      error
		want      int
		wantTrace []string
		wantErr   string
	}{
		{"pass", 0, nil, 0, []string{"tests", "drop", "remove", "find"}, ""},
		{"pass with a leak", 0, leak, 1, []string{"tests", "drop", "remove", "find"}, "goleak: found unexpected goroutines: [Goroutine 7 in state select]\n"},
		{"fail: cleanups run, no leak check", 1, leak, 1, []string{"tests", "drop", "remove"}, ""},
		{"other exit code kept", 2, nil, 2, []string{"tests", "drop", "remove"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var trace []string
			var stderr bytes.Buffer
			find := func(...goleak.Option) error {
				trace = append(trace, "find")
				return tc.leak
			}
			got := run(fakeM{code: tc.code, trace: &trace}, find, &stderr,
				func() { trace = append(trace, "drop") },
				func() { trace = append(trace, "remove") })
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.wantTrace, trace)
			require.Equal(t, tc.wantErr, stderr.String())
		})
	}
}

// The real thing: goleak sees a goroutine that outlives its test.
func TestRun_FindsARealLeak(t *testing.T) {
	stop := make(chan struct{})
	started := make(chan struct{})
	go func() {
		close(started)
		<-stop
	}()
	<-started
	var stderr bytes.Buffer
	var trace []string
	require.Equal(t, 1, run(fakeM{trace: &trace}, goleak.Find, &stderr))
	require.Contains(t, stderr.String(), "goleak: found unexpected goroutines")
	close(stop)
	require.Equal(t, 0, run(fakeM{trace: &trace}, goleak.Find, &stderr), "gone once it ends")
}

func TestMain(m *testing.M) { Run(m) }
