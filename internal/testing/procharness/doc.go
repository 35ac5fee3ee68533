// Package procharness runs this module's binaries as real processes in
// tests: build a main package once per test binary, start it with
// arguments and environment, wait until its /healthz answers, read its
// /metrics, stop it with SIGTERM or SIGKILL and wait for its exit status.
// Its output is kept and written to the test log when the test fails.
//
//	bin := procharness.Build(t, "github.com/edupulse/pulsebus/cmd/relay")
//	addr := procharness.FreeAddr(t)
//	p := procharness.Start(t, bin, procharness.Options{
//		Args: []string{"run", "--metrics-addr", addr}, HTTPAddr: addr})
//	require.NoError(t, p.WaitHealthy(10*time.Second))
//	require.NoError(t, p.Signal(syscall.SIGTERM))
//	code, err := p.Wait(10 * time.Second)
//
// Binaries are built without -race (fast to build and to run) into a
// temporary directory; call [RemoveBuilds] from TestMain after m.Run to
// delete it. A process still running when its test ends is killed.
package procharness
