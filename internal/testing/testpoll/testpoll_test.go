package testpoll_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

func TestUntil_ReturnsOnceCondHolds(t *testing.T) {
	t.Parallel()
	calls := 0
	testpoll.Until(t, 10*time.Second, time.Millisecond, "three calls", func() bool {
		calls++
		return calls == 3
	})
	require.Equal(t, 3, calls, "polled until true, then stopped")
}

// fakeT records what Until reports; FailNow ends the calling goroutine as
// testing.T's does.
type fakeT struct {
	testing.TB
	mu     sync.Mutex
	failed string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failed = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func TestUntil_FailsAfterTimeoutNamingWhat(t *testing.T) {
	t.Parallel()
	ft := &fakeT{TB: t}
	start := time.Now()
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		testpoll.Until(ft, 50*time.Millisecond, 5*time.Millisecond, "the answer", func() bool { calls++; return false })
	}()
	<-done
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "waited the whole timeout")
	require.Equal(t, "timed out after 50ms waiting for the answer", ft.failed)
	require.Greater(t, calls, 1, "polled more than once")
}
