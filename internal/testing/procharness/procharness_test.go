package procharness_test

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
)

func TestMain(m *testing.M) { testmain.Run(m, procharness.RemoveBuilds) }

func start(t *testing.T, env ...string) *procharness.Process {
	t.Helper()
	bin := procharness.Build(t, "./testdata/fakeserver")
	addr := procharness.FreeAddr(t)
	p := procharness.Start(t, bin, procharness.Options{
		Args: []string{"one", "two"}, Env: append(env, "ADDR="+addr), HTTPAddr: addr,
	})
	require.NoError(t, p.WaitHealthy(10*time.Second))
	return p
}

func TestProcess_SIGTERMExitCodeOutputAndMetrics(t *testing.T) {
	t.Parallel()
	p := start(t, "EXIT_CODE=3")
	m, err := p.Metrics()
	require.NoError(t, err)
	require.Equal(t, 7.0, m.Value("fake_total"))
	require.Equal(t, 4.0, m.Value("fake_total", "topic", "b"))
	require.Equal(t, 1.0, m.Value("fake_up"))
	require.Equal(t, 0.0, m.Value("absent_metric"))

	require.NoError(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 3, code)
	require.Equal(t, "args: [one two]\n", p.Stdout())
	require.Contains(t, p.Stderr(), "starting")
	require.Error(t, p.Signal(syscall.SIGTERM), "signal after exit")
}

func TestProcess_KillAndWaitTimeout(t *testing.T) {
	t.Parallel()
	p := start(t, "IGNORE_TERM=1")
	require.NoError(t, p.Signal(syscall.SIGTERM))
	_, err := p.Wait(300 * time.Millisecond)
	require.Error(t, err, "still running: it ignores SIGTERM")
	require.NoError(t, p.Kill())
	code, err := p.Wait(time.Second)
	require.NoError(t, err)
	require.Equal(t, -1, code, "ended by a signal")
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed")
	}
}

func TestProcess_WaitHealthyFailsFastWhenTheProcessExits(t *testing.T) {
	t.Parallel()
	bin := procharness.Build(t, "./testdata/fakeserver")
	p := procharness.Start(t, bin, procharness.Options{Env: []string{"ADDR=bad address"}, HTTPAddr: procharness.FreeAddr(t)})
	start := time.Now()
	err := p.WaitHealthy(30 * time.Second)
	require.ErrorContains(t, err, "exited")
	require.Less(t, time.Since(start), 10*time.Second)
	code, err := p.Wait(time.Second)
	require.NoError(t, err)
	require.Equal(t, 9, code)
}

func TestBuild_OncePerPackage(t *testing.T) {
	t.Parallel()
	a := procharness.Build(t, "./testdata/fakeserver")
	b := procharness.Build(t, "./testdata/fakeserver")
	require.Equal(t, a, b)
	_, err := os.Stat(a)
	require.NoError(t, err)
}
