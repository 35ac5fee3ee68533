package procharness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var (
	buildMu  sync.Mutex
	buildDir string
	builds   = map[string]*build{}
)

type build struct {
	once sync.Once
	path string
	err  error
}

// Build compiles the main package pkg (an import path, or a path relative
// to the test's working directory) once per test binary, however many
// tests ask for it, and returns the executable's path. It fails t if the
// build fails.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	b, ok := builds[pkg]
	if !ok {
		b = &build{}
		builds[pkg] = b
	}
	buildMu.Unlock()
	b.once.Do(func() { b.path, b.err = compile(pkg) })
	if b.err != nil {
		t.Fatalf("procharness: %v", b.err)
	}
	return b.path
}

func compile(pkg string) (string, error) {
	buildMu.Lock()
	if buildDir == "" {
		d, err := os.MkdirTemp("", "procharness-")
		if err != nil {
			buildMu.Unlock()
			return "", err
		}
		buildDir = d
	}
	dir := buildDir
	buildMu.Unlock()
	out, err := os.MkdirTemp(dir, "bin-")
	if err != nil {
		return "", err
	}
	exe := filepath.Join(out, filepath.Base(pkg))
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build %s: the go command is not on PATH: %w", pkg, err)
	}
	cmd := exec.Command(goBin, "build", "-o", exe, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return exe, nil
}

// RemoveBuilds deletes the binaries [Build] made. Call it from TestMain
// after m.Run.
func RemoveBuilds() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
		buildDir = ""
		builds = map[string]*build{}
	}
}

// FreeAddr returns "127.0.0.1:port" with a TCP port that was free when it
// was called, for a process's listen address. (A process told to listen on
// port 0 could not tell the test which port it got.)
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("procharness: free port: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// Options describe a process to start.
type Options struct {
	// Args are the command-line arguments, without the program name.
	Args []string
	// Env entries ("KEY=value") are added to the test process's
	// environment; they win over variables of the same name.
	Env []string
	// HTTPAddr is the host:port where the process serves /healthz and
	// /metrics, for [Process.WaitHealthy], [Process.Get] and
	// [Process.Metrics]. Optional.
	HTTPAddr string
	// Name labels the process in the test log. Defaults to the
	// executable's name.
	Name string
}

// Process is a started binary.
type Process struct {
	opts   Options
	cmd    *exec.Cmd
	stdout *SyncBuffer
	stderr *SyncBuffer
	exited chan struct{}
	state  *os.ProcessState
	client *http.Client
}

// Start starts bin with opts. The process is killed, if still running, when
// t ends; if t failed, its output is written to the test log.
func Start(t testing.TB, bin string, opts Options) *Process {
	t.Helper()
	if opts.Name == "" {
		opts.Name = filepath.Base(bin)
	}
	p := &Process{
		opts:   opts,
		cmd:    exec.Command(bin, opts.Args...),
		stdout: &SyncBuffer{},
		stderr: &SyncBuffer{},
		exited: make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second},
	}
	p.cmd.Env = append(os.Environ(), opts.Env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("procharness: start %s: %v", opts.Name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		p.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("procharness: %s (pid %d, %s) stdout:\n%s\n--- stderr:\n%s", opts.Name, p.PID(), p.state, tail(p.stdout.String()), tail(p.stderr.String()))
		}
	})
	return p
}

// tail keeps the end of long output.
func tail(s string) string {
	const limit = 64 << 10
	if len(s) <= limit {
		return s
	}
	return fmt.Sprintf("[... %d bytes cut ...]\n%s", len(s)-limit, s[len(s)-limit:])
}

// PID returns the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Stdout returns what the process wrote to stdout so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr returns what the process wrote to stderr so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error {
	select {
	case <-p.exited:
		return fmt.Errorf("procharness: %s already exited (%s)", p.opts.Name, p.state)
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.exited
	return nil
}

// Wait waits up to timeout for the process to exit and returns its exit
// code, -1 if a signal ended it. It returns an error if it did not exit in
// time; the process is then left running.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return p.state.ExitCode(), nil
	case <-t.C:
		return 0, fmt.Errorf("procharness: %s (pid %d) still running after %s", p.opts.Name, p.PID(), timeout)
	}
}

// Get fetches path ("/readyz") from the process's HTTPAddr and returns the
// status code and body.
func (p *Process) Get(path string) (int, string, error) {
	if p.opts.HTTPAddr == "" {
		return 0, "", errors.New("procharness: Options.HTTPAddr not set")
	}
	resp, err := p.client.Get("http://" + p.opts.HTTPAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// WaitHealthy polls /healthz until it answers 200, the process exits, or
// timeout passes.
func (p *Process) WaitHealthy(timeout time.Duration) error {
	return p.WaitHTTP("/healthz", timeout)
}

// WaitHTTP polls path until it answers 200, the process exits, or timeout
// passes.
func (p *Process) WaitHTTP(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		code, body, err := p.Get(path)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
		}
		select {
		case <-p.exited:
			return fmt.Errorf("procharness: %s exited (%s) before %s answered 200; stderr:\n%s", p.opts.Name, p.state, path, tail(p.Stderr()))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("procharness: %s: %s not 200 within %s; last: %s", p.opts.Name, path, timeout, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Metrics scrapes /metrics and parses the Prometheus text format.
func (p *Process) Metrics() (Metrics, error) {
	code, body, err := p.Get("/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("procharness: %s /metrics: status %d", p.opts.Name, code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("procharness: %s /metrics: %w", p.opts.Name, err)
	}
	return Metrics(mfs), nil
}

// Metrics are scraped metric families by name.
type Metrics map[string]*dto.MetricFamily

// Value returns the sum of the counter, gauge or untyped values of the
// series of metric name whose labels include labelPairs (name, value, name,
// value, ...), and for a histogram the sum of their sample counts. A metric
// with no matching series is 0.
func (m Metrics) Value(name string, labelPairs ...string) float64 {
	mf, ok := m[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, mt := range mf.GetMetric() {
		if !hasLabels(mt, labelPairs) {
			continue
		}
		switch {
		case mt.Counter != nil:
			sum += mt.GetCounter().GetValue()
		case mt.Gauge != nil:
			sum += mt.GetGauge().GetValue()
		case mt.Untyped != nil:
			sum += mt.GetUntyped().GetValue()
		case mt.Histogram != nil:
			sum += float64(mt.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func hasLabels(mt *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, lp := range mt.GetLabel() {
			if lp.GetName() == pairs[i] && lp.GetValue() == pairs[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: the
// output of a process or of an in-process command, written by its
// goroutines while the test reads it. The zero value is empty and ready.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
