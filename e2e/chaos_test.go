package e2e

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// chaosConfig configures a chaosProxy.
type chaosConfig struct {
	// Name identifies the proxy in logs and summaries.
	Name string
	// Target is the host:port every accepted connection is forwarded to.
	Target string
	// ResetFraction is the share of connections, from 0 to 1, that the
	// proxy resets after a random number of bytes.
	ResetFraction float64
	// MaxUpBytes and MaxDownBytes bound where a reset happens: after a
	// number of bytes drawn uniformly from [1, Max] flowing client→target
	// (up) or target→client (down); each doomed connection picks one
	// direction at random. A connection that carries fewer bytes than drawn
	// is not reset.
	MaxUpBytes, MaxDownBytes int
	// Seed seeds the proxy's random choices.
	Seed uint64
}

// chaosProxy is a TCP proxy on 127.0.0.1 that forwards bytes both ways and
// resets a fraction of the connections part-way, as a flaky network or a
// crashing middlebox would: the client and the target both see a TCP RST
// (SO_LINGER 0, then close) at an arbitrary point of the SMTP dialogue,
// including inside DATA and between the final dot and its reply.
//
// It is written here, over net and io, because no library does this: Shopify's
// toxiproxy closes a connection with a FIN after a fixed byte count
// (limit_data) or resets it after a fixed time (reset_peer), not with a RST
// at a random byte of each connection, and it is a server with its own API.
type chaosProxy struct {
	cfg chaosConfig
	ln  net.Listener

	mu     sync.Mutex
	rng    *rand.Rand
	open   map[*chaosConn]struct{}
	closed bool

	conns  atomic.Int64 // connections accepted
	resets atomic.Int64 // connections reset on purpose
	wg     sync.WaitGroup
}

// startChaosProxy starts a proxy on a free loopback port; it is closed when
// the test ends.
func startChaosProxy(t *testing.T, cfg chaosConfig) *chaosProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("chaos proxy %s: %v", cfg.Name, err)
	}
	p := &chaosProxy{
		cfg:  cfg,
		ln:   ln,
		rng:  rand.New(rand.NewPCG(cfg.Seed, 0xC4A05)),
		open: make(map[*chaosConn]struct{}),
	}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's listening address.
func (p *chaosProxy) Addr() string { return p.ln.Addr().String() }

// Connections returns how many connections the proxy accepted.
func (p *chaosProxy) Connections() int64 { return p.conns.Load() }

// Resets returns how many connections the proxy reset on purpose.
func (p *chaosProxy) Resets() int64 { return p.resets.Load() }

// Close stops accepting, closes every open connection and waits for the
// proxy's goroutines. It is idempotent.
func (p *chaosProxy) Close() {
	p.mu.Lock()
	p.closed = true
	open := make([]*chaosConn, 0, len(p.open))
	for c := range p.open {
		open = append(open, c)
	}
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range open {
		c.closeBoth()
	}
	p.wg.Wait()
}

func (p *chaosProxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.conns.Add(1)
		p.wg.Add(1)
		go p.handle(client)
	}
}

// chaosConn is one proxied connection.
type chaosConn struct {
	p              *chaosProxy
	client, target *net.TCPConn

	// budget is how many more bytes may flow in the doomed direction
	// before the reset; dir is that direction (0 none, 1 up, 2 down).
	mu     sync.Mutex
	dir    int
	budget int
	reset  bool
}

func (p *chaosProxy) handle(client net.Conn) {
	defer p.wg.Done()
	target, err := net.DialTimeout("tcp", p.cfg.Target, 2*time.Second)
	if err != nil {
		// The target is down (a relay being restarted): the client sees
		// the connection reset, as it would at a load balancer.
		abort(client)
		return
	}
	c := &chaosConn{p: p, client: client.(*net.TCPConn), target: target.(*net.TCPConn)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.closeBoth()
		return
	}
	p.open[c] = struct{}{}
	if p.rng.Float64() < p.cfg.ResetFraction {
		var dirs []int // directions that may be reset
		if p.cfg.MaxUpBytes > 0 {
			dirs = append(dirs, 1)
		}
		if p.cfg.MaxDownBytes > 0 {
			dirs = append(dirs, 2)
		}
		if len(dirs) > 0 {
			c.dir = dirs[p.rng.IntN(len(dirs))]
			limit := p.cfg.MaxUpBytes
			if c.dir == 2 {
				limit = p.cfg.MaxDownBytes
			}
			c.budget = 1 + p.rng.IntN(limit)
		}
	}
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pipe(c.target, c.client, 1) }()
	go func() { defer wg.Done(); c.pipe(c.client, c.target, 2) }()
	wg.Wait()
	c.closeBoth()
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
}

// pipe copies src to dst (direction dir) until EOF or an error, resetting
// both connections when the doomed direction's budget is used up. On EOF it
// half-closes dst, so that SMTP's QUIT/221/close sequence passes through.
func (c *chaosConn) pipe(dst, src *net.TCPConn, dir int) {
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk, cut := c.take(dir, buf[:n])
			if _, werr := dst.Write(chunk); werr != nil {
				c.closeBoth()
				return
			}
			if cut {
				c.resetBoth()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			_ = dst.CloseWrite()
			return
		}
		if err != nil {
			c.closeBoth()
			return
		}
	}
}

// take returns the part of b that may still be forwarded in direction dir,
// and whether the connection must be reset after it.
func (c *chaosConn) take(dir int, b []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != dir {
		return b, false
	}
	if len(b) < c.budget {
		c.budget -= len(b)
		return b, false
	}
	b = b[:c.budget-1] // the byte that exhausts the budget is never delivered
	c.dir, c.budget = 0, 0
	return b, true
}

// resetBoth aborts both sides with a TCP RST and counts the reset once.
func (c *chaosConn) resetBoth() {
	c.mu.Lock()
	first := !c.reset
	c.reset = true
	c.mu.Unlock()
	if first {
		c.p.resets.Add(1)
	}
	abort(c.client)
	abort(c.target)
}

func (c *chaosConn) closeBoth() {
	c.client.Close()
	c.target.Close()
}

// abort closes conn with a TCP RST instead of an orderly FIN.
func abort(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}

// The proxy forwards both directions byte for byte when it resets nothing,
// and resets every connection part-way when told to, without delivering
// the byte that exhausted the budget.
func TestChaosProxy(t *testing.T) {
	t.Parallel()
	const size = 64 << 10
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	tests := []struct {
		name      string
		fraction  float64
		up, down  int
		wantReset bool
	}{
		{"passthrough", 0, 1 << 20, 1 << 20, false},
		{"reset upstream", 1, 1000, 0, true},
		{"reset downstream", 1, 0, 1000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// An echo server: what goes up comes back down.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						_, _ = io.Copy(c, c)
					}()
				}
			}()
			p := startChaosProxy(t, chaosConfig{Name: tt.name, Target: ln.Addr().String(),
				ResetFraction: tt.fraction, MaxUpBytes: tt.up, MaxDownBytes: tt.down, Seed: 1})

			for range 5 {
				c, err := net.Dial("tcp", p.Addr())
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				go func() {
					_, _ = c.Write(payload)
					_ = c.(*net.TCPConn).CloseWrite()
				}()
				got, err := io.ReadAll(c)
				c.Close()
				if tt.wantReset {
					if err == nil || len(got) >= 1000 {
						t.Fatalf("read %d bytes, err %v: want a reset before byte 1000", len(got), err)
					}
					if !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("err %v: want ECONNRESET", err)
					}
					continue
				}
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("echo through the proxy: %d of %d bytes, err %v", len(got), size, err)
				}
			}
			if got, want := p.Resets(), map[bool]int64{false: 0, true: 5}[tt.wantReset]; got != want {
				t.Errorf("Resets() = %d, want %d", got, want)
			}
			if got := p.Connections(); got != 5 {
				t.Errorf("Connections() = %d, want 5", got)
			}
		})
	}
}
