package main_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

// peakRSS returns the peak resident set size of process pid (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// TestRelayBinary_LargeRowsDrainUnderTheComposeMemoryLimit: 300 rows of
// 880 KB (about 260 MB, under the 900 KiB payload limit) drain through the
// relay binary run as in docker-compose.yml (GOMEMLIMIT=48MiB, default
// flags), and its peak RSS stays under the compose memory limit of
// 128 MiB. The relay bounds each claim by bytes (--max-batch-bytes), the
// claim-ahead included; bounded by rows alone, it claimed all 300 rows at
// once and peaked above 280 MB. (No cgroup: this machine's are read-only,
// so the test reads the peak RSS, VmHWM, from /proc.)
func TestRelayBinary_LargeRowsDrainUnderTheComposeMemoryLimit(t *testing.T) {
	t.Parallel()
	const (
		rows       = 300
		payload    = 880_000
		composeMax = 128 << 20
	)
	b := setup(t, "large", 4)
	ctx := context.Background()
	for range rows / 10 {
		_, err := b.db.Pool.Exec(ctx, `
			SELECT pulsebus.publish('large', 'k' || g, 'test.large', jsonb_build_object('data', repeat('x', $1)))
			  FROM generate_series(1, 10) AS g`, payload-12)
		require.NoError(t, err)
	}
	// As docker-compose.yml runs it: default flags, GOMEMLIMIT=48MiB.
	addr := procharness.FreeAddr(t)
	r := procharness.Start(t, procharness.Build(t, "github.com/edupulse/pulsebus/cmd/relay"), procharness.Options{
		Args: []string{"run", "--database-url", b.db.URL, "--kafka-brokers", strings.Join(b.kc.Addrs, ","),
			"--metrics-addr", addr, "--log-format", "json"},
		Env:      []string{"GOMEMLIMIT=48MiB"},
		HTTPAddr: addr, Name: "relay-memory",
	})
	require.NoError(t, r.WaitHealthy(20*time.Second))
	start := time.Now()
	testpoll.Until(t, 120*time.Second, 50*time.Millisecond, "large rows drained",
		func() bool { return outboxRows(t, b) == 0 })
	elapsed := time.Since(start)
	peak := peakRSS(t, r.PID())
	require.NoError(t, r.Signal(syscall.SIGTERM))
	code, err := r.Wait(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, 0, code)

	require.EqualValues(t, rows, b.kc.RecordCount("large"), "every row on Kafka once")
	require.Zero(t, parkedRows(t, b), "nothing parked")
	t.Logf("%d rows of %d bytes drained in %s; relay peak RSS %.1f MiB (compose limit %d MiB)",
		rows, payload, elapsed.Round(time.Millisecond), float64(peak)/(1<<20), composeMax>>20)
	require.Less(t, peak, int64(composeMax), "peak RSS under the compose memory limit")
}
