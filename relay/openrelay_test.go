package relay_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/relay"
)

// Neither leg is an open relay. The tenant leg has one kind of next hop, the
// configured vendors: a recipient anywhere on the Internet is handed to the
// vendor route, never looked up and delivered directly. The return leg has
// one next hop, the tenant: mail the relay did not send out is refused, and
// a real reference cannot carry mail to other recipients. Clients outside a
// listener's allow-list are refused at connect.
func TestNotAnOpenRelay(t *testing.T) {
	h := newHarness(t, nil)
	outsider := "victim@elsewhere.example"

	// Tenant leg: the recipient is the vendor's business; the message goes
	// to the vendor and nowhere else (the tenant recorder stands for any
	// other host and gets nothing).
	out := h.sendOut("ann@contoso.com", outsider)
	if d := h.vendor.Deliveries(); len(d) != 1 || strings.Join(d[0].Rcpts, ",") != outsider {
		t.Fatalf("vendor deliveries %+v", d)
	}
	if n := len(h.tenant.Deliveries()); n != 0 {
		t.Fatalf("the tenant leg delivered %d messages beside the vendor", n)
	}

	// Return leg: mail that never went out is refused for any recipient.
	spam := []byte("From: spammer@bad.example\r\nTo: " + outsider + "\r\nSubject: buy\r\nMessage-ID: <spam@bad.example>\r\n\r\nbuy now\r\n")
	for _, rcpt := range []string{outsider, "bob@contoso.com"} {
		if code, text := h.sendBack(spam, "spammer@bad.example", rcpt); code != 550 || !strings.HasPrefix(text, "5.7.1") {
			t.Errorf("unrecorded mail to %s: %d %s, want 550 5.7.1", rcpt, code, text)
		}
	}
	// A real reference, replayed to add another recipient, is refused too.
	if code, text := h.sendBack(vendorise(out, false, false), "ann@contoso.com", outsider, "another@elsewhere.example"); code != 550 ||
		!strings.Contains(text, "another@elsewhere.example was not a recipient") {
		t.Errorf("replay to a new recipient: %d %s, want 550 naming the recipient", code, text)
	}
	time.Sleep(100 * time.Millisecond) // a delivery that wrongly went ahead would have arrived by now
	if n := len(h.tenant.Deliveries()); n != 0 {
		t.Fatalf("the return leg delivered %d refused messages", n)
	}
	// The real return is delivered, to the tenant target only.
	if code, text := h.sendBack(vendorise(out, false, false), "ann@contoso.com", outsider); code != 250 {
		t.Fatalf("the genuine return: %d %s", code, text)
	}
	if d, err := h.tenant.WaitDeliveries(1, 5*time.Second); err != nil || strings.Join(d[0].Rcpts, ",") != outsider {
		t.Fatalf("tenant deliveries %+v, %v", d, err)
	}
	if n := len(h.vendor.Deliveries()); n != 1 {
		t.Errorf("the return leg sent mail to the vendor: %d deliveries there", n)
	}

	// A client outside the allow-list is refused at connect on both legs.
	closed := newHarness(t, func(c *relay.Config) {
		c.Tenant.AllowNets = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		c.Return.AllowNets = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}
	})
	for _, addr := range []string{closed.relay.TenantAddr(), closed.relay.ReturnAddr()} {
		if code, text := greeting(t, addr); code != 554 || !strings.HasPrefix(text, "5.7.1") {
			t.Errorf("%s: greeting %d %s, want 554 5.7.1", addr, code, text)
		}
	}
}
