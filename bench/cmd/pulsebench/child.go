package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Each contender runs in a child process of the benchmark binary
// (`pulsebench run-contender`), so its CPU time and peak RSS come from the
// kernel's rusage for that process alone: kfake, the producers, the latency
// consumer and the verification stay in the parent.
//
// Protocol, one JSON object or word per line:
//
//	parent -> child stdin:  the Spec; later "start"; then EOF means stop.
//	child  -> parent stdout: {"event":"ready"}, then optionally
//	                         {"event":"done",...}, and {"event":"result",...}
//	                         after it stopped.

// Spec tells a child which contender to run and against what.
type Spec struct {
	Contender  string   `json:"contender"`
	Mode       string   `json:"mode,omitempty"` // consumer: plain, tx, txbatch
	DBURL      string   `json:"db_url"`
	Brokers    []string `json:"brokers"`
	Topic      string   `json:"topic"`
	Partitions int      `json:"partitions"`
	Events     int64    `json:"events"` // events the child should expect (consumer)
	Batch      int      `json:"batch"`
	Group      string   `json:"group,omitempty"`
	// ForwarderTopic names the Watermill forwarder's SQL topic (table).
	ForwarderTopic string `json:"forwarder_topic,omitempty"`
	// PollInterval is the Watermill SQL subscriber's poll interval.
	PollInterval time.Duration `json:"poll_interval,omitempty"`
	// CPUProfile, when set, makes the child write a pprof CPU profile there.
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// childMsg is one line the child writes on stdout.
type childMsg struct {
	Event string `json:"event"`
	// Done: handled counts and timing, measured in the child.
	Handled  int64   `json:"handled,omitempty"`
	Distinct int64   `json:"distinct,omitempty"`
	FirstSec float64 `json:"first_sec,omitempty"` // first event, seconds after start
	LastSec  float64 `json:"last_sec,omitempty"`  // last event, seconds after start
	// Result: free-form statistics, and the process's peak RSS (VmHWM).
	Stats  map[string]float64 `json:"stats,omitempty"`
	MaxRSS int64              `json:"max_rss,omitempty"`
	Error  string             `json:"error,omitempty"`
}

// contenderFunc runs one contender in the child until ctx is done. It calls
// ready once set up, waits for start (a closed channel) and may call done
// when it knows it finished (consumers).
type contenderFunc func(ctx context.Context, spec Spec, ready func(), start <-chan struct{}, done func(childMsg)) (map[string]float64, error)

// contenders maps a contender name to its implementation.
var contenders = map[string]contenderFunc{}

func registerContender(name string, fn contenderFunc) { contenders[name] = fn }

func contenderNames() []string {
	var names []string
	for n := range contenders {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// runChild is the body of `pulsebench run-contender`.
func runChild() int {
	in := bufio.NewReader(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	line, err := in.ReadBytes('\n')
	if err != nil {
		fmt.Fprintf(os.Stderr, "run-contender: read spec: %v\n", err)
		return 2
	}
	var spec Spec
	if err := json.Unmarshal(line, &spec); err != nil {
		fmt.Fprintf(os.Stderr, "run-contender: decode spec: %v\n", err)
		return 2
	}
	fn, ok := contenders[spec.Contender]
	if !ok {
		fmt.Fprintf(os.Stderr, "run-contender: unknown contender %q (known: %v)\n", spec.Contender, contenderNames())
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := make(chan struct{})
	go func() {
		// "start" line, then anything up to EOF; EOF (parent closed stdin
		// or died) stops the contender.
		if l, err := in.ReadString('\n'); err == nil && l == "start\n" {
			close(start)
		}
		_, _ = io.Copy(io.Discard, in)
		cancel()
	}()
	var stopProfile func()
	if spec.CPUProfile != "" {
		if stopProfile, err = startCPUProfile(spec.CPUProfile); err != nil {
			fmt.Fprintf(os.Stderr, "run-contender: %v\n", err)
			return 2
		}
	}
	ready := func() { _ = out.Encode(childMsg{Event: "ready"}) }
	done := func(m childMsg) { m.Event = "done"; _ = out.Encode(m) }
	stats, err := fn(ctx, spec, ready, start, done)
	if stopProfile != nil {
		stopProfile()
	}
	res := childMsg{Event: "result", Stats: stats, MaxRSS: peakRSS()}
	if err != nil && !errors.Is(err, context.Canceled) {
		res.Error = err.Error()
	}
	_ = out.Encode(res)
	if res.Error != "" {
		return 1
	}
	return 0
}

// child is a running contender process, seen from the parent.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	msgs    chan childMsg
	started time.Time
	waitErr chan error
}

// childUsage is the resource use of a finished child.
type childUsage struct {
	CPU    time.Duration // user + system, from the kernel's rusage at exit
	MaxRSS int64         // bytes: the child's VmHWM, read by the child at the end
}

// peakRSS returns this process's peak resident set size (VmHWM in
// /proc/self/status) in bytes, or 0 if unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// startChild launches a contender and waits until it is ready.
func startChild(ctx context.Context, spec Spec) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(exe, "run-contender")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the parent
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start contender %s: %w", spec.Contender, err)
	}
	c := &child{cmd: cmd, stdin: stdin, msgs: make(chan childMsg, 16), waitErr: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m childMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				fmt.Fprintf(os.Stderr, "%s\n", sc.Bytes())
				continue
			}
			c.msgs <- m
		}
		close(c.msgs)
	}()
	b, _ := json.Marshal(spec)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		c.kill()
		return nil, fmt.Errorf("send spec to %s: %w", spec.Contender, err)
	}
	m, err := c.next(ctx, 60*time.Second)
	if err != nil || m.Event != "ready" {
		c.kill()
		if err == nil {
			err = fmt.Errorf("unexpected %q: %s", m.Event, m.Error)
		}
		return nil, fmt.Errorf("contender %s did not get ready: %w", spec.Contender, err)
	}
	return c, nil
}

// next returns the child's next message.
func (c *child) next(ctx context.Context, timeout time.Duration) (childMsg, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return childMsg{}, errors.New("contender exited")
		}
		return m, nil
	case <-t.C:
		return childMsg{}, fmt.Errorf("no message within %s", timeout)
	case <-ctx.Done():
		return childMsg{}, ctx.Err()
	}
}

// Start tells the child to begin and returns the moment it did.
func (c *child) Start() time.Time {
	c.started = time.Now()
	_, _ = io.WriteString(c.stdin, "start\n")
	return c.started
}

// Stop closes the child's stdin, waits for its result and exit, and returns
// its resource usage.
func (c *child) Stop() (childMsg, childUsage, error) {
	_ = c.stdin.Close()
	var res childMsg
	deadline := time.After(90 * time.Second)
loop:
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				break loop
			}
			if m.Event == "result" {
				res = m
			}
		case <-deadline:
			c.kill()
			return res, childUsage{}, errors.New("contender did not stop within 90s; killed")
		}
	}
	err := c.cmd.Wait()
	var u childUsage
	if ps := c.cmd.ProcessState; ps != nil {
		u.CPU = ps.UserTime() + ps.SystemTime()
	}
	// Not rusage's ru_maxrss: on Linux a child started with vfork (as
	// os/exec does) inherits the parent's high-water mark at exec, so it
	// would show the parent's RSS (kfake and all) whenever that is larger.
	u.MaxRSS = res.MaxRSS
	if res.Error != "" {
		return res, u, errors.New(res.Error)
	}
	if err != nil {
		return res, u, fmt.Errorf("contender exited: %w", err)
	}
	return res, u, nil
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}
