package relay_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relay"
)

// RSET in the middle of a BDAT transfer abandons the message: nothing of it
// reaches the next hop on either leg, and on the return leg the delivery
// claim is not released as if the tenant had refused it, so the same
// reference cannot be delivered again and again.
func TestRSETDuringBDAT(t *testing.T) {
	t.Run("tenant leg", func(t *testing.T) {
		h := newHarness(t, nil)
		// A chunk this large is only acknowledged once the relay has read
		// the header block and is streaming the body to the vendor.
		big := strings.Replace(original, "The figures.", filler+"The figures.", 1)
		c := dial(t, h.relay.TenantAddr())
		for i := 0; i < 3; i++ {
			c.abandonBDAT(big[:len(big)-8])
		}
		c.cmd(250, "MAIL FROM:<ann@contoso.com>")
		c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
		c.cmd(354, "DATA")
		c.write(original + ".\r\n")
		c.expect(250)
		_, err := h.vendor.WaitDeliveries(1, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		d := h.vendor.Deliveries()
		if len(d) != 1 {
			t.Fatalf("vendor received %d messages, want only the finished one", len(d))
		}
		if !strings.HasSuffix(string(d[0].Data), "The figures.\r\n") {
			t.Fatalf("vendor received a cut-short message:\n%s", d[0].Data)
		}
	})

	t.Run("return leg", func(t *testing.T) {
		h := newHarness(t, nil)
		out := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
		back := append(vendorise(out, false, false), filler...)
		c := dial(t, h.relay.ReturnAddr())
		for i := 0; i < 12; i++ {
			c.abandonBDAT(string(back[:len(back)-10]))
		}
		time.Sleep(200 * time.Millisecond)
		if n := len(h.tenant.Deliveries()); n != 0 {
			t.Fatalf("tenant received %d cut-short messages", n)
		}
		for i := 0; i < 2; i++ {
			if code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
				t.Fatalf("return %d: %d %s", i, code, text)
			}
		}
		d := h.tenant.Deliveries()
		if len(d) != 1 {
			t.Fatalf("tenant received %d copies, want 1", len(d))
		}
		if !strings.HasSuffix(string(d[0].Data), filler) {
			t.Fatalf("tenant received a cut-short message:\n%s", d[0].Data)
		}
	})
}

// abandonBDAT starts a transaction from ann to bob, sends part as a BDAT
// chunk without LAST, then RSET.
func (r *rawClient) abandonBDAT(part string) {
	r.t.Helper()
	r.cmd(250, "MAIL FROM:<ann@contoso.com>")
	r.cmd(250, "RCPT TO:<bob@fabrikam.example>")
	r.write(fmt.Sprintf("BDAT %d\r\n%s", len(part), part))
	r.expect(250)
	r.cmd(250, "RSET")
}

// filler is 100 KB of body lines.
var filler = strings.Repeat("filler line of a long message body\r\n", 2800)

// A client that trickles message data, never idle for DataTimeout, is
// stopped by the minimum data rate: 421 4.4.2, the connection closes,
// nothing reaches the next hop, and the limit is logged. For BDAT the
// relay answers itself (go-smtp would answer the failed chunk read with
// 554 5.0.0, which makes the sender bounce the message).
func TestSlowData(t *testing.T) {
	mod := func(c *relay.Config) {
		c.Tenant.DataTimeout = time.Second // never reached: a byte comes every 50 ms
		c.Tenant.MinDataRate = 1000
	}
	for _, bdat := range []bool{false, true} {
		t.Run(map[bool]string{false: "DATA", true: "BDAT"}[bdat], func(t *testing.T) {
			h := newHarness(t, mod)
			c := dial(t, h.relay.TenantAddr())
			c.cmd(250, "MAIL FROM:<ann@contoso.com>")
			c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
			body := "Subject: trickle\r\n\r\n" + strings.Repeat("x", 200) + "\r\n"
			if bdat {
				c.write(fmt.Sprintf("BDAT %d LAST\r\n", len(body)))
			} else {
				c.cmd(354, "DATA")
			}
			start := time.Now()
			for i := 0; i < len(body) && time.Since(start) < 10*time.Second; i++ {
				if _, err := c.c.Write([]byte{body[i]}); err != nil {
					break // the relay closed the connection
				}
				time.Sleep(50 * time.Millisecond) // 20 bytes/s, never idle
			}
			code, msg, _ := c.ReadResponse(0)
			if code != 421 || !strings.Contains(msg, "4.4.2") || !strings.Contains(msg, "slower than 1000 bytes per second") {
				t.Fatalf("reply %d %s, want 421 4.4.2 too slow", code, msg)
			}
			if n := len(h.vendor.Deliveries()); n != 0 {
				t.Fatalf("vendor got %d messages", n)
			}
			h.wantLimit(t, "message data too slow")
		})
	}
}

// Fallback matching (by Message-ID or fingerprint, when the vendor dropped
// the reference) lets whoever knows a recorded message's Message-ID and
// sender restore its organization headers onto other content, so by
// default only a client that authenticated or that allow_nets admitted
// gets it.
func TestFallbackMatchingPolicy(t *testing.T) {
	tests := []struct {
		name      string
		policy    relay.FallbackMatching
		allowNets bool
		want      int
	}{
		{"trusted, open listener", relay.FallbackTrusted, false, 550},
		{"trusted, allow-listed", relay.FallbackTrusted, true, 250},
		{"off, allow-listed", relay.FallbackOff, true, 550},
		{"any, open listener", relay.FallbackAny, false, 250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *relay.Config) {
				c.FallbackMatching = tt.policy
				if !tt.allowNets {
					// Reachable from every address, as a listener on
					// a public interface is (dialled here on loopback).
					c.Return.AllowNets = nil
					c.Return.Listen = ":0"
				}
			})
			out := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
			back := vendorise(out, true, false) // reference dropped
			code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example")
			if code != tt.want {
				t.Fatalf("return: %d %s, want %d", code, text, tt.want)
			}
			if n := len(h.tenant.Deliveries()); (n == 1) != (tt.want == 250) {
				t.Fatalf("tenant got %d messages", n)
			}
			// With the reference, every policy matches.
			if code, text := h.sendBack(vendorise(out, false, false), "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
				t.Fatalf("return with reference: %d %s", code, text)
			}
		})
	}
}

// A header block is bounded in fields as well as in bytes: a block of many
// tiny fields is refused with 552 5.3.4 as soon as the count is exceeded,
// and nothing reaches the next hop.
func TestTooManyHeaderFields(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.Tenant.MaxHeaderFields = 200 })
	c := dial(t, h.relay.TenantAddr())
	c.cmd(250, "MAIL FROM:<ann@contoso.com>")
	c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
	c.cmd(354, "DATA")
	c.write(strings.Repeat("a:\r\n", 201) + "\r\nbody\r\n.\r\n")
	msg := c.expect(552)
	if !strings.Contains(msg, "5.3.4") || !strings.Contains(msg, "more than 200 fields") {
		t.Errorf("reply %q", msg)
	}
	// Exactly at the limit is fine.
	c.cmd(250, "MAIL FROM:<ann@contoso.com>")
	c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
	c.cmd(354, "DATA")
	c.write(strings.Repeat("a:\r\n", 199) + "Subject: at the limit\r\n\r\nbody\r\n.\r\n")
	c.expect(250)
	if d := h.vendor.Deliveries(); len(d) != 1 || !strings.Contains(string(d[0].Data), "at the limit") {
		t.Fatalf("vendor got %d messages", len(d))
	}
	h.waitOutcome(t, func(o relay.Outcome) bool { return o.Code == 552 && o.Result == "rejected" })
}

// A Router's header actions never touch a protected field, even when the
// router hands over patterns or protected names (the rules package refuses
// them when it compiles; the relay checks again).
func TestHeaderActionsSkipProtected(t *testing.T) {
	set := func(name string) headers.Field { return headers.Field{Name: name, Raw: []byte(name + ": forged\r\n")} }
	h, _ := routedHarness(t, &testRouter{})
	h.relay.SetRouter(&fixedRouter{relay.Route{Action: relay.ToVendors, Vendors: []string{"vendor"},
		RemoveHeaders: []string{"Message-ID", "X-MS-Exchange-*", "message-*", "*", "X-Drop"},
		SetHeaders:    []headers.Field{set("X-OrganizationHeadersPreserved"), set("X-RecallRelay-Processed"), set("X-Policy")},
	}})
	if code, text := send(t, h.relay.TenantAddr(), "protected", "X-Drop: yes\r\n"); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	got := string(h.vendor.Deliveries()[0].Data)
	for _, want := range []string{"Message-ID: <protected@contoso.com>\r\n", "X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n", "X-Policy: forged\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("vendor's copy lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"X-Drop", "X-OrganizationHeadersPreserved", "X-RecallRelay-Processed"} {
		if strings.Contains(got, bad) {
			t.Errorf("vendor's copy has %s:\n%s", bad, got)
		}
	}
	wantLog(t, h, `"field":"X-MS-Exchange-*","message":"header action on a protected field skipped"`)
}
