package relay_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relay"
)

// countingHop is a next hop that counts its SMTP connections and the
// messages it accepted on each, and can close idle connections quickly.
type countingHop struct {
	srv *smtp.Server
	ln  net.Listener

	mu       sync.Mutex
	conns    int            // connections accepted
	closed   int            // connections ended
	messages map[string]int // by client address (ip:port): one per connection
	refuse   string         // RCPT TO refused with 550
	changed  chan struct{}
}

func startCountingHop(t *testing.T, idle time.Duration) *countingHop {
	t.Helper()
	h := &countingHop{messages: map[string]int{}, changed: make(chan struct{}, 100)}
	h.srv = smtp.NewServer(h)
	h.srv.Domain = "hop.test"
	h.srv.ReadTimeout = idle
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.ln = ln
	go h.srv.Serve(ln)
	t.Cleanup(func() { h.srv.Close() })
	return h
}

func (h *countingHop) NewSession(c *smtp.Conn) (smtp.Session, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns++
	return &countingSession{h: h, remote: c.Conn().RemoteAddr().String()}, nil
}

type countingSession struct {
	h      *countingHop
	remote string
}

func (s *countingSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *countingSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if to == s.h.refuse {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return nil
}
func (s *countingSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	s.h.mu.Lock()
	s.h.messages[s.remote]++
	s.h.mu.Unlock()
	return nil
}
func (s *countingSession) Reset() {}
func (s *countingSession) Logout() error {
	s.h.mu.Lock()
	s.h.closed++
	s.h.mu.Unlock()
	s.h.changed <- struct{}{}
	return nil
}

// counts returns the connections accepted and the messages per connection.
func (h *countingHop) counts() (conns int, perConn []int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.messages {
		perConn = append(perConn, n)
	}
	return h.conns, perConn
}

// sendOne sends one message through the tenant leg on a connection of its
// own, as smtp-source does, and expects 250.
func sendOne(t *testing.T, addr, rcpt string) {
	t.Helper()
	c := dial(t, addr)
	c.cmd(250, "MAIL FROM:<ann@contoso.com>")
	c.cmd(250, "RCPT TO:<%s>", rcpt)
	c.cmd(354, "DATA")
	c.write(original + ".\r\n")
	c.expect(250)
	c.cmd(221, "QUIT")
	c.c.Close()
}

// A connection a session used cleanly serves the next session to the same
// next hop: the hop sees one connection for messages from three client
// connections; with the pool off, three.
func TestHopPoolReuse(t *testing.T) {
	for _, tt := range []struct {
		name      string
		maxIdle   int
		wantConns int
	}{
		{"pooled", 0, 1},
		{"pool off", -1, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hop := startCountingHop(t, time.Minute)
			h := newHarness(t, func(c *relay.Config) {
				c.Vendors[0].Address = hop.ln.Addr().String()
				c.HopPool.MaxIdle = tt.maxIdle
			})
			for range 3 {
				sendOne(t, h.relay.TenantAddr(), "bob@fabrikam.example")
				waitSessionsClosed(t, h.relay)
			}
			if conns, per := hop.counts(); conns != tt.wantConns {
				t.Errorf("the next hop saw %d connections (messages per connection %v), want %d", conns, per, tt.wantConns)
			}
		})
	}
}

// A connection on which anything failed, even a plain refusal of a
// recipient, is not handed to another session.
func TestHopPoolNotAfterError(t *testing.T) {
	hop := startCountingHop(t, time.Minute)
	h := newHarness(t, func(c *relay.Config) { c.Vendors[0].Address = hop.ln.Addr().String() })
	hop.mu.Lock()
	hop.refuse = "nobody@fabrikam.example"
	hop.mu.Unlock()

	c := dial(t, h.relay.TenantAddr())
	c.cmd(250, "MAIL FROM:<ann@contoso.com>")
	c.cmd(550, "RCPT TO:<nobody@fabrikam.example>")
	c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
	c.cmd(354, "DATA")
	c.write(original + ".\r\n")
	c.expect(250)
	c.cmd(221, "QUIT")
	c.c.Close()
	waitSessionsClosed(t, h.relay)
	sendOne(t, h.relay.TenantAddr(), "bob@fabrikam.example")
	if conns, _ := hop.counts(); conns != 2 {
		t.Errorf("the next hop saw %d connections, want 2: the one with a refusal must not be reused", conns)
	}
}

// A pooled connection the next hop has closed meanwhile (its idle timeout)
// is noticed and replaced: the client never hears of it.
func TestHopPoolDeadConnection(t *testing.T) {
	// Long enough that the first message is never cut on a loaded machine
	// (go-smtp's read timeout also bounds the commands and data of the
	// transaction), short enough to wait for.
	hop := startCountingHop(t, 2*time.Second)
	h := newHarness(t, func(c *relay.Config) { c.Vendors[0].Address = hop.ln.Addr().String() })
	sendOne(t, h.relay.TenantAddr(), "bob@fabrikam.example")
	// The hop closes the idle pooled connection (421 idle timeout).
	select {
	case <-hop.changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the next hop did not close its idle connection")
	}
	sendOne(t, h.relay.TenantAddr(), "carol@fabrikam.example")
	if conns, per := hop.counts(); conns != 2 || len(per) != 2 {
		t.Errorf("the next hop saw %d connections (messages per connection %v), want 2 with one message each", conns, per)
	}
}

// waitSessionsClosed waits until the relay has ended every session: a
// session hands its next-hop connection to the pool before it ends.
func waitSessionsClosed(t *testing.T, r *relay.Relay) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		n := r.Sessions()
		if n["tenant"]+n["return"] == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions still open: %v", n)
		}
	}
}
