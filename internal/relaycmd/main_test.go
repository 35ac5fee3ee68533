package relaycmd_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/relaycmd"
	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
)

func TestMain(m *testing.M) { testmain.Run(m, testdb.DropTemplate) }

// run runs the command line to completion and returns its output.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = relaycmd.Run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// background is "relay run" running in-process until stop.
type background struct {
	t      *testing.T
	addr   string
	cancel context.CancelFunc
	done   chan error
	stderr *procharness.SyncBuffer
}

func startBackground(t *testing.T, args ...string) *background {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{t: t, addr: addr, cancel: cancel, done: make(chan error, 1), stderr: &procharness.SyncBuffer{}}
	go func() {
		b.done <- relaycmd.Run(ctx, append([]string{"run", "--metrics-addr", addr, "--log-format", "text"}, args...), io.Discard, b.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-b.done:
		case <-time.After(20 * time.Second):
			t.Errorf("relay did not stop")
		}
		if t.Failed() {
			t.Logf("relay stderr:\n%s", b.stderr.String())
		}
	})
	return b
}

// stop cancels the relay's context and returns how long Run took to return,
// and its error.
func (b *background) stop() (time.Duration, error) {
	b.t.Helper()
	start := time.Now()
	b.cancel()
	select {
	case err := <-b.done:
		b.done <- err // for the cleanup
		return time.Since(start), err
	case <-time.After(20 * time.Second):
		b.t.Fatalf("relay did not stop within 20s")
		return 0, nil
	}
}

func (b *background) get(path string) (int, string) {
	b.t.Helper()
	resp, err := http.Get("http://" + b.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitGet polls path until cond holds on its answer.
func (b *background) waitGet(path string, timeout time.Duration, cond func(code int, body string) bool) (int, string) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := b.get(path)
		if cond(code, body) {
			return code, body
		}
		select {
		case err := <-b.done:
			b.done <- err
			b.t.Fatalf("relay exited (%v) while waiting for %s; last answer %d %s", err, path, code, body)
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s; last answer %d %s", path, code, strings.TrimSpace(body))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// silentListener accepts connections and never answers: a database or
// broker that hangs.
func silentListener(t *testing.T) string {
	addr, _ := silentListenerAccepting(t)
	return addr
}

// silentListenerAccepting is silentListener, and a channel closed when it
// accepts its first connection.
func silentListenerAccepting(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan struct{})
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if conns == nil {
				close(accepted)
			}
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), accepted
}

// proxy forwards TCP connections to target until cut, so a test can take a
// dependency away from the relay without touching the shared server.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(p.Cut)
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// Cut closes the listener and every forwarded connection.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
