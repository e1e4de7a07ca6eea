package relay_test

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
)

// testRouter routes by the Subject: "bypass", "refuse", "chain", "second"
// (vendor "second" only), otherwise the first vendor. With body set it
// claims to need the body and records what it read.
type testRouter struct {
	needBody bool
	mu       sync.Mutex
	bodies   []string
	sizes    []int64
}

func (tr *testRouter) Envelope(string, []string) (relay.Route, bool) {
	return relay.Route{Action: relay.ToVendors, Vendors: []string{"vendor"}}, false
}

func (tr *testRouter) NeedsBody(*headers.Header) bool { return tr.needBody }

func (tr *testRouter) Message(_ string, _ []string, size int64, h *headers.Header, body io.Reader) relay.Route {
	tr.mu.Lock()
	tr.sizes = append(tr.sizes, size)
	tr.mu.Unlock()
	if body != nil {
		b, _ := io.ReadAll(body)
		tr.mu.Lock()
		tr.bodies = append(tr.bodies, string(b))
		tr.mu.Unlock()
	}
	set, _ := headers.NewField("X-Routed", "yes")
	switch h.Get("Subject") {
	case "bypass":
		return relay.Route{Action: relay.Bypass, Matched: []string{"builtin:recall-bypass"}}
	case "refuse":
		return relay.Route{Action: relay.Refuse, Reply: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "not with that subject"}}
	case "chain":
		return relay.Route{Action: relay.ToVendors, Vendors: []string{"vendor", "second"}, SetHeaders: []headers.Field{set}}
	case "second":
		return relay.Route{Action: relay.ToVendors, Vendors: []string{"second"}, RemoveHeaders: []string{"X-Drop-Me"}}
	}
	return relay.Route{Action: relay.ToVendors, Vendors: []string{"vendor"}}
}

func routedHarness(t *testing.T, tr *testRouter) (*harness, *relaytest.Tenant) {
	second := startRecorder(t, nil)
	h := newHarness(t, func(c *relay.Config) {
		c.Vendors = append(c.Vendors, relay.NextHop{Name: "second", Address: second.Addr(), StartTLS: relay.StartTLSOff})
		c.Router = tr
		c.SpoolDir = t.TempDir()
	})
	return h, second
}

func send(t *testing.T, addr, subject string, extra string) (int, string) {
	t.Helper()
	c := dial(t, addr)
	c.cmd(250, "MAIL FROM:<ann@contoso.com>")
	c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
	c.cmd(354, "DATA")
	c.write("From: ann@contoso.com\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@contoso.com>\r\n" + extra +
		"X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n\r\nbody of " + subject + "\r\n.\r\n")
	code, text, _ := c.ReadResponse(0)
	return code, text
}

// The tenant leg routes each message once its header block is known:
// to the vendor it opened at MAIL, to another vendor (the transaction moves
// there), straight to the tenant (bypass: loop marker, no reference, origin
// headers untouched), or refuses it.
func TestRouting(t *testing.T) {
	tr := &testRouter{}
	h, second := routedHarness(t, tr)

	if code, _ := send(t, h.relay.TenantAddr(), "plain", ""); code != 250 {
		t.Fatalf("plain: %d", code)
	}
	if code, _ := send(t, h.relay.TenantAddr(), "second", "X-Drop-Me: 1\r\n"); code != 250 {
		t.Fatalf("second: %d", code)
	}
	if code, _ := send(t, h.relay.TenantAddr(), "bypass", ""); code != 250 {
		t.Fatalf("bypass: %d", code)
	}
	if code, text := send(t, h.relay.TenantAddr(), "refuse", ""); code != 550 || !strings.Contains(text, "not with that subject") {
		t.Fatalf("refuse: %d %s", code, text)
	}

	if d := h.vendor.Deliveries(); len(d) != 1 || !bytes.Contains(d[0].Data, []byte("Subject: plain")) {
		t.Errorf("first vendor got %d messages", len(d))
	}
	d := second.Deliveries()
	if len(d) != 1 || !bytes.Contains(d[0].Data, []byte("Subject: second")) {
		t.Fatalf("second vendor got %d messages", len(d))
	}
	if bytes.Contains(d[0].Data, []byte("X-Drop-Me")) || !bytes.Contains(d[0].Data, []byte("X-RecallRelay-Ref:")) {
		t.Errorf("second vendor's copy:\n%s", d[0].Data)
	}
	if strings.Join(d[0].Rcpts, ",") != "bob@fabrikam.example" || d[0].MailFrom != "ann@contoso.com" {
		t.Errorf("envelope moved badly: %s %v", d[0].MailFrom, d[0].Rcpts)
	}

	td := h.tenant.Deliveries()
	if len(td) != 1 {
		t.Fatalf("tenant got %d messages, want the bypassed one", len(td))
	}
	got := string(td[0].Data)
	for _, want := range []string{"X-RecallRelay-Processed: true\r\n", "X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n", "Subject: bypass"} {
		if !strings.Contains(got, want) {
			t.Errorf("bypassed message lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "X-RecallRelay-Ref") {
		t.Errorf("bypassed message carries a reference")
	}
	h.waitOutcome(t, func(o relay.Outcome) bool {
		return o.Result == "bypassed" && strings.Join(o.Rules, ",") == "builtin:recall-bypass"
	})
	h.waitOutcome(t, func(o relay.Outcome) bool { return o.Route == "second" })
}

// A router that reads the body gets it from a spool file, and the next hop
// still receives the body byte for byte.
func TestRoutingSpoolsBody(t *testing.T) {
	tr := &testRouter{needBody: true}
	h, _ := routedHarness(t, tr)
	if code, _ := send(t, h.relay.TenantAddr(), "plain", ""); code != 250 {
		t.Fatalf("%d", code)
	}
	if len(tr.bodies) != 1 || tr.bodies[0] != "body of plain\r\n" {
		t.Errorf("router read %q", tr.bodies)
	}
	const whole = "From: ann@contoso.com\r\nSubject: plain\r\nMessage-ID: <plain@contoso.com>\r\nX-MS-Exchange-CrossPremises-AuthAs: Internal\r\n\r\nbody of plain\r\n"
	if len(tr.sizes) != 1 || tr.sizes[0] != int64(len(whole)) {
		t.Errorf("router was told size %v, want %d", tr.sizes, len(whole))
	}
	d := h.vendor.Deliveries()
	if len(d) != 1 || !bytes.HasSuffix(d[0].Data, []byte("\r\n\r\nbody of plain\r\n")) {
		t.Fatalf("vendor got %d messages: %v", len(d), d)
	}
}

// A two-vendor chain: the first vendor's return goes to the second vendor
// with a fresh reference (hop 1); the second's return is restored and
// reinjected. Each vendor gets the message once, in order.
func TestChain(t *testing.T) {
	tr := &testRouter{}
	h, second := routedHarness(t, tr)
	if code, _ := send(t, h.relay.TenantAddr(), "chain", ""); code != 250 {
		t.Fatal("tenant leg refused")
	}
	first := h.vendor.Deliveries()
	if len(first) != 1 || !bytes.Contains(first[0].Data, []byte("X-Routed: yes\r\n")) {
		t.Fatalf("first vendor: %d messages", len(first))
	}
	// The first vendor strips X-MS-* and sends back.
	back := vendorise(first[0].Data, false, false)
	if code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
		t.Fatalf("return from first vendor: %d %s", code, text)
	}
	sd, err := second.WaitDeliveries(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.tenant.Deliveries()); n != 0 {
		t.Fatalf("restored after the first vendor already (%d)", n)
	}
	if !bytes.Contains(sd[0].Data, []byte("; h=1;")) {
		t.Fatalf("second vendor's copy lacks a hop-1 reference:\n%s", sd[0].Data)
	}
	if code, text := h.sendBack(vendorise(sd[0].Data, false, false), "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
		t.Fatalf("return from second vendor: %d %s", code, text)
	}
	td, err := h.tenant.WaitDeliveries(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(td[0].Data, []byte("X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n")) || !bytes.Contains(td[0].Data, []byte("Message-ID: <chain@contoso.com>\r\n")) {
		t.Errorf("not restored after the last vendor:\n%s", td[0].Data)
	}
	if n := len(second.Deliveries()); n != 1 {
		t.Errorf("second vendor got %d copies", n)
	}
	// Without the reference, the chain position is unknown: refused.
	again := vendorise(first[0].Data, true, false)
	if code, text := h.sendBack(again, "ann@contoso.com", "bob@fabrikam.example"); code != 550 || !strings.Contains(text, "chain of vendors") {
		t.Errorf("chained message without reference: %d %s", code, text)
	}
}

// SetRouter swaps the routing while the relay runs.
func TestSetRouter(t *testing.T) {
	h, second := routedHarness(t, &testRouter{})
	h.relay.SetRouter(&fixedRouter{relay.Route{Action: relay.ToVendors, Vendors: []string{"second"}}})
	if code, _ := send(t, h.relay.TenantAddr(), "plain", ""); code != 250 {
		t.Fatal("refused")
	}
	if len(second.Deliveries()) != 1 || len(h.vendor.Deliveries()) != 0 {
		t.Fatalf("new router not used")
	}
}

type fixedRouter struct{ r relay.Route }

func (f *fixedRouter) Envelope(string, []string) (relay.Route, bool) { return f.r, true }
func (f *fixedRouter) NeedsBody(*headers.Header) bool                { return false }
func (f *fixedRouter) Message(string, []string, int64, *headers.Header, io.Reader) relay.Route {
	return f.r
}
