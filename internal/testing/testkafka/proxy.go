package testkafka

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Proxy is a TCP proxy in front of a kfake broker, which advertises the
// proxy's address, so every client, those the broker's metadata sends
// elsewhere included, goes through it. A test can blackhole it — a network
// that silently drops every packet: connections still open, nothing
// arrives, nothing is answered — and restore it, and it counts the
// connections it accepted and the Kafka requests it forwarded, by API key.
type Proxy struct {
	ln       net.Listener // the address clients connect to
	upstream string       // the broker's own listener

	mu       sync.Mutex
	open     chan struct{} // closed while traffic flows; replaced by Blackhole
	conns    map[net.Conn]bool
	closed   bool
	accepted atomic.Int64
	requests [128]atomic.Int64 // by API key
}

// NewBehindProxy starts a one-broker cluster whose only advertised address
// is a [Proxy]'s, and closes both in t.Cleanup. The Cluster's Addrs are the
// proxy's.
func NewBehindProxy(t testing.TB, opts ...kfake.Opt) (*Cluster, *Proxy) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testkafka: proxy listener: %v", err)
	}
	p := &Proxy{ln: ln, open: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(p.open)
	listen := func(network, address string) (net.Listener, error) {
		real, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		p.upstream = real.Addr().String()
		return advertised{Listener: real, addr: ln.Addr()}, nil
	}
	c := New(t, append([]kfake.Opt{kfake.ListenFn(listen)}, opts...)...)
	go p.serve()
	t.Cleanup(p.close)
	return c, p
}

// advertised is a listener reporting another address, the one kfake puts in
// its metadata.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (a advertised) Addr() net.Addr { return a.addr }

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops forwarding in both directions, on open and new
// connections alike, until Restore.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default:
	}
}

// Restore forwards traffic again, what waited during the blackhole first,
// as a network that heals before TCP gives up.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// Accepted returns how many client connections the proxy accepted.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Requests returns how many Kafka requests with API key key (kmsg.Key)
// the proxy forwarded to the broker.
func (p *Proxy) Requests(key int16) int64 {
	if key < 0 || int(key) >= len(p.requests) {
		return 0
	}
	return p.requests[key].Load()
}

// gate blocks while the proxy is blackholed; false when it closed.
func (p *Proxy) gate() bool {
	p.mu.Lock()
	open, closed := p.open, p.closed
	p.mu.Unlock()
	if closed {
		return false
	}
	<-open
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			return
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go p.requestsTo(up, c)
		go p.responsesTo(c, up)
	}
}

// requestsTo forwards the client's requests, frame by frame, counting them.
func (p *Proxy) requestsTo(up, client net.Conn) {
	defer p.drop(up, client)
	var size [4]byte
	for {
		if _, err := io.ReadFull(client, size[:]); err != nil {
			return
		}
		frame := make([]byte, 4+binary.BigEndian.Uint32(size[:]))
		copy(frame, size[:])
		if _, err := io.ReadFull(client, frame[4:]); err != nil {
			return
		}
		if !p.gate() {
			return
		}
		if len(frame) >= 6 {
			if key := int16(binary.BigEndian.Uint16(frame[4:6])); key >= 0 && int(key) < len(p.requests) {
				p.requests[key].Add(1)
			}
		}
		if _, err := up.Write(frame); err != nil {
			return
		}
	}
}

// responsesTo forwards the broker's answers.
func (p *Proxy) responsesTo(client, up net.Conn) {
	defer p.drop(up, client)
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) drop(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// close stops the proxy: the listener, every connection, and any pump
// waiting at the gate.
func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	_ = p.ln.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
	select {
	case <-p.open:
	default:
		close(p.open)
	}
	p.mu.Unlock()
}
