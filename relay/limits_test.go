package relay_test

import (
	"context"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relay"
)

// wantLog waits briefly for a relay log line containing want: for what
// only the log says (diagnostics); events are asserted on h.obs.
func wantLog(t *testing.T, h *harness, want string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !strings.Contains(h.logs.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no log line with %s:\n%s", want, h.logs)
			return
		}
	}
}

// wantLimit waits briefly for the observers to hear of limit, and returns
// the event.
func (h *harness) wantLimit(t *testing.T, limit string) relay.LimitHit {
	t.Helper()
	var got relay.LimitHit
	err := h.obs.Wait(2*time.Second, func(m *relay.MemoryObserver) bool {
		for _, l := range m.Limits() {
			if l.Limit == limit {
				got = l
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Errorf("no limit %q among %+v", limit, h.obs.Limits())
	}
	return got
}

// waitOutcome waits briefly for a message outcome that match accepts.
func (h *harness) waitOutcome(t *testing.T, match func(relay.Outcome) bool) relay.Outcome {
	t.Helper()
	var got relay.Outcome
	err := h.obs.Wait(2*time.Second, func(m *relay.MemoryObserver) bool {
		for _, o := range m.Outcomes() {
			if match(o) {
				got = o
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("no such outcome among %+v", h.obs.Outcomes())
	}
	return got
}

// greeting connects and returns the first reply.
func greeting(t *testing.T, addr string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	code, text, _ := textproto.NewConn(c).ReadResponse(0)
	return code, text
}

// Who may connect: per-listener networks (IPv4 and IPv6), and connection
// counts per client and in total. Refusals come at connect with a precise
// reply and a log line.
func TestAdmission(t *testing.T) {
	t.Run("allow-list refuses others", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) {
			c.Tenant.AllowNets = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
		})
		if code, text := greeting(t, h.relay.TenantAddr()); code != 554 || !strings.Contains(text, "5.7.1 127.0.0.1 is not allowed") {
			t.Errorf("greeting %d %s", code, text)
		}
		if err := h.obs.Wait(2*time.Second, func(m *relay.MemoryObserver) bool { return len(m.Refused()) == 1 }); err != nil ||
			h.obs.Refused()[0] != (relay.ConnectionRefused{Leg: "tenant", Client: "127.0.0.1", Reply: "554 5.7.1 127.0.0.1 is not allowed to use this listener"}) {
			t.Errorf("refusal not observed: %+v", h.obs.Refused())
		}
		// The return leg has its own list (empty: everyone).
		if code, _ := greeting(t, h.relay.ReturnAddr()); code != 220 {
			t.Errorf("return leg greeting %d", code)
		}
	})
	t.Run("allow-list admits listed", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.AllowNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
		if code, _ := greeting(t, h.relay.TenantAddr()); code != 220 {
			t.Errorf("greeting %d", code)
		}
	})
	t.Run("IPv6", func(t *testing.T) {
		if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
			t.Skip("no IPv6 loopback")
		} else {
			ln.Close()
		}
		h := newHarness(t, func(c *relay.Config) {
			c.Tenant.Listen = "[::1]:0"
			c.Tenant.AllowNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			c.Return.Listen = "[::1]:0"
			c.Return.AllowNets = []netip.Prefix{netip.MustParsePrefix("::1/128")}
		})
		if code, text := greeting(t, h.relay.TenantAddr()); code != 554 || !strings.Contains(text, "::1 is not allowed") {
			t.Errorf("tenant leg over IPv6: %d %s", code, text)
		}
		if code, _ := greeting(t, h.relay.ReturnAddr()); code != 220 {
			t.Errorf("return leg over IPv6: %d", code)
		}
	})
	t.Run("connections per client", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.MaxConnectionsPerClient = 2 })
		for i := 0; i < 2; i++ {
			if code, _ := greeting(t, h.relay.TenantAddr()); code != 220 {
				t.Fatalf("connection %d: %d", i+1, code)
			}
		}
		if code, text := greeting(t, h.relay.TenantAddr()); code != 421 || !strings.Contains(text, "4.7.0 Too many connections from 127.0.0.1") {
			t.Errorf("third connection: %d %s", code, text)
		}
	})
	t.Run("slots are given back", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.MaxConnections = 1 })
		c := dial(t, h.relay.TenantAddr())
		c.cmd(221, "QUIT")
		c.Close()
		deadline := time.Now().Add(2 * time.Second)
		for {
			code, _ := greeting(t, h.relay.TenantAddr())
			if code == 220 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("slot not released: %d", code)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// Commands before MAIL, errors per connection, TLS before MAIL: each limit
// answers precisely and closes where it says so.
func TestSessionLimits(t *testing.T) {
	t.Run("commands before MAIL", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.MaxCommandsBeforeMail = 5 })
		c := dial(t, h.relay.TenantAddr()) // EHLO is command 1
		for i := 0; i < 4; i++ {
			c.cmd(250, "NOOP")
		}
		c.PrintfLine("NOOP")
		c.expect(250) // the sixth line is read, then the limit bites
		code, text := c.try("NOOP")
		if code != 421 || !strings.Contains(text, "More than 5 commands before MAIL") {
			t.Errorf("reply %d %s", code, text)
		}
		h.wantLimit(t, "too many commands before MAIL")
		if _, _, err := c.ReadResponse(0); err == nil {
			t.Error("connection still open")
		}
	})
	t.Run("commands after MAIL are not limited", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.MaxCommandsBeforeMail = 5 })
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<a@contoso.com>")
		for i := 0; i < 20; i++ {
			c.cmd(250, "NOOP")
		}
	})
	t.Run("errors", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.MaxErrors = 3 })
		h.vendor.RejectRcpt("x@fabrikam.example", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown"})
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<a@contoso.com>")
		c.cmd(550, "RCPT TO:<x@fabrikam.example>")
		c.cmd(550, "RCPT TO:<x@fabrikam.example>")
		code, text := c.try("RCPT TO:<x@fabrikam.example>")
		if code != 421 || !strings.Contains(text, "Too many errors on this connection (3)") {
			t.Errorf("third error: %d %s", code, text)
		}
		if _, _, err := c.ReadResponse(0); err == nil {
			t.Error("connection still open")
		}
		h.wantLimit(t, "too many errors")
	})
	t.Run("recipients per message", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.MaxRecipients = 2 })
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<a@contoso.com>")
		c.cmd(250, "RCPT TO:<b@fabrikam.example>")
		c.cmd(250, "RCPT TO:<c@fabrikam.example>")
		if text := c.cmd(452, "RCPT TO:<d@fabrikam.example>"); !strings.Contains(text, "4.5.3 Too many recipients: at most 2 per message") {
			t.Errorf("reply %q", text)
		}
		if l := h.wantLimit(t, "too many recipients"); l.Reply != "452 4.5.3 Too many recipients: at most 2 per message" {
			t.Errorf("limit %+v", l)
		}
		// The message still goes to the two accepted recipients.
		c.cmd(354, "DATA")
		c.write("Subject: two of three\r\n\r\nbody\r\n.\r\n")
		c.expect(250)
		if d, err := h.vendor.WaitDeliveries(1, time.Second); err != nil || strings.Join(d[0].Rcpts, ",") != "b@fabrikam.example,c@fabrikam.example" {
			t.Errorf("vendor deliveries %+v, %v", d, err)
		}
	})
	t.Run("idle waiting for a command", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.CommandTimeout = 200 * time.Millisecond })
		c := dial(t, h.relay.TenantAddr())
		if code, text, _ := c.ReadResponse(0); code != 421 || !strings.Contains(text, "4.4.2") {
			t.Errorf("after idling: %d %s, want 421 4.4.2", code, text)
		}
		h.wantLimit(t, "idle timeout waiting for a command")
	})
	t.Run("command line too long", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.MaxLineLength = 100 })
		c := dial(t, h.relay.TenantAddr())
		if code, text := c.try("NOOP %s", strings.Repeat("x", 200)); code != 500 || !strings.Contains(text, "5.4.0") {
			t.Errorf("long command: %d %s, want 500 5.4.0", code, text)
		}
		h.wantLimit(t, "command line too long")
	})
	t.Run("TLS required before MAIL", func(t *testing.T) {
		ca := newCA(t)
		h := newHarness(t, func(c *relay.Config) { c.Return.TLS = ca.serverTLS(t, "relay.test"); c.Return.RequireTLS = true })
		c := dial(t, h.relay.ReturnAddr())
		if text := c.cmd(530, "MAIL FROM:<a@contoso.com>"); !strings.Contains(text, "5.7.0 Must issue a STARTTLS command first") {
			t.Errorf("reply %q", text)
		}
	})
}

// SIGTERM semantics: idle sessions get 421 at once, a transaction in
// progress finishes and gets its 250 (then 421), and no new connection is
// accepted. Run under load (go test -count=300 with another package
// running), it once caught a 354 reply racing with the shutdown flag.
func TestShutdown(t *testing.T) {
	h := newHarness(t, nil)
	idle := dial(t, h.relay.TenantAddr())
	busy := dial(t, h.relay.TenantAddr())
	busy.cmd(250, "MAIL FROM:<a@contoso.com>")
	busy.cmd(250, "RCPT TO:<b@fabrikam.example>")
	busy.cmd(354, "DATA")
	busy.write("Subject: in flight\r\n\r\nfirst half\r\n")

	done := make(chan error, 1) // buffered: the goroutine never blocks if the test stops early
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- h.relay.Shutdown(ctx)
	}()
	if code, text, _ := idle.ReadResponse(0); code != 421 || !strings.Contains(text, "4.3.2") {
		t.Errorf("idle session: %d %s", code, text)
	}
	busy.write("second half\r\n.\r\n")
	busy.expect(250)
	// Once its transaction is answered, the busy session is idle too.
	if code, text, _ := busy.ReadResponse(0); code != 421 || !strings.Contains(text, "4.3.2") {
		t.Errorf("busy session after its transaction: %d %s, want 421 4.3.2", code, text)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last transaction")
	}
	if d, _ := h.vendor.WaitDeliveries(1, time.Second); len(d) != 1 {
		t.Errorf("in-flight message delivered %d times", len(d))
	}
	if _, err := net.DialTimeout("tcp", h.relay.TenantAddr(), time.Second); err == nil {
		t.Error("still accepting connections")
	}
}

// At the shutdown deadline, a transaction still open is cut off without a
// 250 and is not committed at the next hop.
func TestShutdownDeadline(t *testing.T) {
	h := newHarness(t, nil)
	busy := dial(t, h.relay.TenantAddr())
	busy.cmd(250, "MAIL FROM:<a@contoso.com>")
	busy.cmd(250, "RCPT TO:<b@fabrikam.example>")
	busy.cmd(354, "DATA")
	busy.write("Subject: too slow\r\n\r\nstill typing\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	h.relay.Shutdown(ctx)
	code, _, _ := busy.ReadResponse(0)
	if code == 250 {
		t.Fatal("cut-off transaction got 250")
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(h.vendor.Deliveries()); n != 0 {
		t.Fatalf("vendor committed %d cut-off messages", n)
	}
}
