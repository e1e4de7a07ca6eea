package relay_test

import (
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/rules"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// harness is a relay between two recording SMTP servers: "vendor" receives
// what the tenant leg forwards, "tenant" what the return leg reinjects.
type harness struct {
	t      testing.TB
	relay  *relay.Relay
	vendor *relaytest.Tenant
	tenant *relaytest.Tenant
	store  relay.Store
	signer *headers.Signer
	logs   *syncWriter
	// obs sees every event; tests assert on it rather than on log text.
	obs *relay.MemoryObserver
}

func newHarness(t testing.TB, mod func(*relay.Config)) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncWriter{buf: &bytes.Buffer{}}, obs: &relay.MemoryObserver{}}
	h.vendor = startRecorder(t, nil)
	h.tenant = startRecorder(t, nil)
	h.store = storetest.Bolt(t)
	cfg := looptest.Config(t, h.tenant.Addr(), looptest.Hop("vendor", h.vendor.Addr()))
	cfg.Store, cfg.Log, cfg.Observers = h.store, zerolog.New(h.logs), []relay.Observer{h.obs}
	cfg.Vendors[0].CommandTimeout, cfg.Target.CommandTimeout = 5*time.Second, 5*time.Second
	h.signer = cfg.Signer
	if mod != nil {
		mod(&cfg)
	}
	h.relay = looptest.Start(t, cfg)
	return h
}

// startRecorder is looptest.Recorder.
var startRecorder = looptest.Recorder

// rawClient speaks SMTP line by line, for what go-smtp's client cannot do
// (BDAT, pipelining, malformed data).
type rawClient struct {
	t testing.TB
	c net.Conn
	*textproto.Conn
}

func dial(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	rc := &rawClient{t: t, c: c, Conn: textproto.NewConn(c)}
	t.Cleanup(func() { c.Close() })
	rc.expect(220)
	rc.cmd(250, "EHLO client.test")
	return rc
}

// cmd sends a line and checks the reply's code; it returns the reply text.
func (r *rawClient) cmd(code int, format string, args ...any) string {
	r.t.Helper()
	if err := r.PrintfLine(format, args...); err != nil {
		r.t.Fatal(err)
	}
	return r.expect(code)
}

func (r *rawClient) expect(code int) string {
	r.t.Helper()
	got, msg, err := r.ReadResponse(0)
	if err != nil && got == 0 {
		r.t.Fatalf("reading reply: %v", err)
	}
	if got != code {
		r.t.Fatalf("reply %d %s, want %d", got, msg, code)
	}
	return msg
}

func (r *rawClient) write(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

const msg = "From: a@contoso.com\r\nTo: b@fabrikam.example\r\nSubject: test\r\nMessage-ID: <m1@contoso.com>\r\n" +
	"X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n\r\nHello.\r\n"

// The relay answers end-of-data with the next hop's verdict: 250 only after
// the vendor's 250, the vendor's 4xx as 4xx, its 5xx as 5xx with its text.
func TestDataReplyFollowsNextHop(t *testing.T) {
	tests := []struct {
		name     string
		vendor   *smtp.SMTPError
		wantCode int
		wantText string
	}{
		{"accepted", nil, 250, ""},
		{"tempfail", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "queue full"}, 451, "vendor answered end of data: 451 queue full"},
		{"reject", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam"}, 554, "vendor answered end of data: 554 spam"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			if tt.vendor != nil {
				h.vendor.RejectNextData(1, tt.vendor)
			}
			c := dial(t, h.relay.TenantAddr())
			c.cmd(250, "MAIL FROM:<a@contoso.com>")
			c.cmd(250, "RCPT TO:<b@fabrikam.example>")
			c.cmd(354, "DATA")
			c.write(msg + ".\r\n")
			text := c.expect(tt.wantCode)
			if !strings.Contains(text, tt.wantText) {
				t.Errorf("reply text %q does not contain %q", text, tt.wantText)
			}
			if n := len(h.vendor.Deliveries()); (tt.vendor == nil) != (n == 1) {
				t.Errorf("vendor recorded %d deliveries", n)
			}
		})
	}
}

// A vendor that cannot be reached makes MAIL FROM fail with a 4xx that names it.
func TestVendorDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	h := newHarness(t, func(c *relay.Config) { c.Vendors[0].Address = dead; c.Vendors[0].ConnectTimeout = time.Second })
	c := dial(t, h.relay.TenantAddr())
	text := c.cmd(451, "MAIL FROM:<a@contoso.com>")
	if !strings.Contains(text, "4.4.1") || !strings.Contains(text, "vendor unreachable") {
		t.Errorf("reply %q", text)
	}
}

// A vendor that accepts the connection but never answers times out into a 4xx.
func TestVendorSilent(t *testing.T) {
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
			defer c.Close() // hold it open, say nothing
		}
	}()
	h := newHarness(t, func(c *relay.Config) {
		c.Vendors[0].Address = ln.Addr().String()
		c.Vendors[0].CommandTimeout = 300 * time.Millisecond
	})
	c := dial(t, h.relay.TenantAddr())
	text := c.cmd(451, "MAIL FROM:<a@contoso.com>")
	if !strings.Contains(text, "4.4.2") || !strings.Contains(text, "timed out") {
		t.Errorf("reply %q", text)
	}
}

// A recipient the vendor refuses is refused upstream at RCPT with the same
// class; the others go through.
func TestRcptRefusalPassesThrough(t *testing.T) {
	h := newHarness(t, nil)
	h.vendor.RejectRcpt("gone@fabrikam.example", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	h.vendor.RejectRcpt("full@fabrikam.example", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"})
	c := dial(t, h.relay.TenantAddr())
	c.cmd(250, "MAIL FROM:<a@contoso.com>")
	c.cmd(250, "RCPT TO:<b@fabrikam.example>")
	if text := c.cmd(550, "RCPT TO:<gone@fabrikam.example>"); !strings.Contains(text, "no such user") {
		t.Errorf("550 text %q", text)
	}
	c.cmd(452, "RCPT TO:<full@fabrikam.example>")
	c.cmd(354, "DATA")
	c.write(msg + ".\r\n")
	c.expect(250)
	d, err := h.vendor.WaitDeliveries(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := d[0].Rcpts; len(got) != 1 || got[0] != "b@fabrikam.example" {
		t.Errorf("vendor rcpts %q", got)
	}
}

// MAIL FROM with SIZE, BODY and SMTPUTF8, and every RCPT in order, reach
// the vendor as the tenant sent them; the message gains only the reference
// and a Received field.
func TestEnvelopePreserved(t *testing.T) {
	h := newHarness(t, nil)
	c := dial(t, h.relay.TenantAddr())
	body := strings.Replace(msg, "Hello.", "Grüße, 你好", 1)
	c.cmd(250, "MAIL FROM:<jürgen@contoso.com> SIZE=%d BODY=8BITMIME SMTPUTF8", len(body))
	rcpts := []string{"z@fabrikam.example", "a@fabrikam.example", "m@other.example"}
	for _, r := range rcpts {
		c.cmd(250, "RCPT TO:<%s>", r)
	}
	c.cmd(354, "DATA")
	c.write(body + ".\r\n")
	c.expect(250)
	d, err := h.vendor.WaitDeliveries(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := d[0]
	if got.MailFrom != "jürgen@contoso.com" || got.Size != int64(len(body)) || got.Body != "8BITMIME" || !got.UTF8 {
		t.Errorf("MAIL FROM arrived as %q SIZE=%d BODY=%s SMTPUTF8=%v", got.MailFrom, got.Size, got.Body, got.UTF8)
	}
	if strings.Join(got.Rcpts, ",") != strings.Join(rcpts, ",") {
		t.Errorf("rcpts %q, want %q", got.Rcpts, rcpts)
	}
	if !bytes.HasSuffix(got.Data, []byte(body)) {
		t.Errorf("message changed beyond the prepended fields:\n%s", got.Data)
	}
	prefix := string(got.Data[:len(got.Data)-len(body)])
	if !strings.HasPrefix(prefix, "Received: from client.test") || !strings.Contains(prefix, "\r\nX-RecallRelay-Ref: v=1; k=t1; r=") {
		t.Errorf("prepended fields:\n%s", prefix)
	}
}

// Bare LF or CR in DATA is refused and nothing reaches the vendor; with
// normalization on, it arrives as CRLF.
func TestBareLineEndings(t *testing.T) {
	payloads := map[string]string{
		"bare LF before dot": "Subject: x\r\n\r\nline\n.\nMAIL FROM:<evil@x>\r\n",
		"bare CR":            "Subject: x\r\n\r\nline\r.\rmore\r\n",
		"mixed":              "Subject: x\n\r\nline\r\n",
	}
	for name, p := range payloads {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			c := dial(t, h.relay.TenantAddr())
			c.cmd(250, "MAIL FROM:<a@contoso.com>")
			c.cmd(250, "RCPT TO:<b@fabrikam.example>")
			c.cmd(354, "DATA")
			c.write(p + ".\r\n")
			if text := c.expect(550); !strings.Contains(text, "5.6.0") || !strings.Contains(text, "bare CR or LF") {
				t.Errorf("reply %q", text)
			}
			c.cmd(250, "NOOP") // the session goes on
			time.Sleep(100 * time.Millisecond)
			if n := len(h.vendor.Deliveries()); n != 0 {
				t.Errorf("vendor got %d messages", n)
			}
		})
	}
	t.Run("normalize", func(t *testing.T) {
		h := newHarness(t, func(c *relay.Config) { c.Tenant.BareLineEndings = relay.BareLineNormalize })
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<a@contoso.com>")
		c.cmd(250, "RCPT TO:<b@fabrikam.example>")
		c.cmd(354, "DATA")
		c.write("Subject: x\r\n\r\nline\n.\nMAIL FROM:<evil@x>\r\n.\r\n")
		c.expect(250)
		d, _ := h.vendor.WaitDeliveries(1, 5*time.Second)
		if !bytes.HasSuffix(d[0].Data, []byte("\r\n\r\nline\r\n.\r\nMAIL FROM:<evil@x>\r\n")) {
			t.Errorf("normalized message: %q", d[0].Data)
		}
	})
}

// CHUNKING: a message in several BDAT chunks goes through; a BDAT LAST
// chunk cut short by the client closing the connection is never delivered
// (go-smtp alone would hand it on as complete).
func TestBDAT(t *testing.T) {
	t.Run("chunks", func(t *testing.T) {
		h := newHarness(t, nil)
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<a@contoso.com>")
		c.cmd(250, "RCPT TO:<b@fabrikam.example>")
		half := len(msg) / 2
		c.write(fmt.Sprintf("BDAT %d\r\n%s", half, msg[:half]))
		c.expect(250)
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-half, msg[half:]))
		c.expect(250)
		d, err := h.vendor.WaitDeliveries(1, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(d[0].Data, []byte(msg)) {
			t.Errorf("message: %q", d[0].Data)
		}
	})
	t.Run("truncated LAST chunk", func(t *testing.T) {
		h := newHarness(t, nil)
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<a@contoso.com>")
		c.cmd(250, "RCPT TO:<b@fabrikam.example>")
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)+100, msg))
		c.c.(*net.TCPConn).CloseWrite()
		time.Sleep(500 * time.Millisecond)
		if n := len(h.vendor.Deliveries()); n != 0 {
			t.Fatalf("a truncated BDAT message was delivered (%d)", n)
		}
		o := h.waitOutcome(t, func(o relay.Outcome) bool { return o.Code == 451 })
		if !strings.Contains(o.Err.Error(), "ended before the announced chunk size") {
			t.Errorf("outcome %+v", o)
		}
	})
}

// The data timeout is an idle timeout: a transfer that takes several times
// the timeout but never pauses that long succeeds; a stall fails it and
// nothing is delivered.
func TestDataIdleTimeout(t *testing.T) {
	const idle = 400 * time.Millisecond
	mod := func(c *relay.Config) { c.Tenant.DataTimeout = idle; c.Tenant.CommandTimeout = idle }
	t.Run("slow but steady", func(t *testing.T) {
		h := newHarness(t, mod)
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<a@contoso.com>")
		c.cmd(250, "RCPT TO:<b@fabrikam.example>")
		c.cmd(354, "DATA")
		c.write("Subject: slow\r\n\r\n")
		start := time.Now()
		line := strings.Repeat("a line of a slow transfer ", 8) + "\r\n" // 210 bytes
		for time.Since(start) < 4*idle {
			c.write(line) // about 2 kB/s: over the default minimum rate
			time.Sleep(idle / 4)
		}
		c.write(".\r\n")
		c.expect(250)
	})
	t.Run("stalled", func(t *testing.T) {
		h := newHarness(t, mod)
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<a@contoso.com>")
		c.cmd(250, "RCPT TO:<b@fabrikam.example>")
		c.cmd(354, "DATA")
		c.write("Subject: stalled\r\n\r\npart")
		time.Sleep(3 * idle)
		c.write(" more\r\n.\r\n")
		code, _, _ := c.ReadResponse(0)
		if code == 250 {
			t.Fatal("stalled transfer was accepted")
		}
		if n := len(h.vendor.Deliveries()); n != 0 {
			t.Fatalf("vendor got %d messages", n)
		}
	})
}

// PIPELINING: a client may send the whole envelope and DATA in one write.
func TestPipelining(t *testing.T) {
	h := newHarness(t, nil)
	c := dial(t, h.relay.TenantAddr())
	c.write("MAIL FROM:<a@contoso.com>\r\nRCPT TO:<b@fabrikam.example>\r\nRCPT TO:<c@fabrikam.example>\r\nDATA\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.write(msg + ".\r\nMAIL FROM:<a@contoso.com>\r\nRCPT TO:<d@fabrikam.example>\r\nDATA\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.write(msg + ".\r\nQUIT\r\n")
	c.expect(250)
	c.expect(221)
	if _, err := h.vendor.WaitDeliveries(2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Header blocks over the limit are refused with 552 5.3.4, malformed ones
// with 550 5.6.0; messages over SIZE with 552.
func TestLimits(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.Tenant.MaxHeaderSize = 1024; c.Tenant.MaxMessageSize = 64 << 10 })
	send := func(data string, want int, wantText string) {
		t.Helper()
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<a@contoso.com>")
		c.cmd(250, "RCPT TO:<b@fabrikam.example>")
		c.cmd(354, "DATA")
		c.write(data + ".\r\n")
		if text := c.expect(want); !strings.Contains(text, wantText) {
			t.Errorf("reply %q does not contain %q", text, wantText)
		}
	}
	send(strings.Repeat("X-Big: "+strings.Repeat("a", 60)+"\r\n", 20)+"\r\nbody\r\n", 552, "5.3.4 Header block exceeds 1024 bytes")
	send("X-Long: "+strings.Repeat("a", 2100)+"\r\n\r\nbody\r\n", 500, "5.5.2 Line longer than 2000 bytes")
	send("Subject: ok\r\nthis is no header\r\n\r\nbody\r\n", 550, "5.6.0 Malformed header block")
	send("Subject: big\r\n\r\n"+strings.Repeat("0123456789abcdef\r\n", 5000), 552, "5.3.4")
	c := dial(t, h.relay.TenantAddr())
	c.cmd(552, "MAIL FROM:<a@contoso.com> SIZE=100000000")
	if n := len(h.vendor.Deliveries()); n != 0 {
		t.Errorf("vendor got %d messages", n)
	}
}

// syncWriter lets tests read logs written from server goroutines.
type syncWriter struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// While the vendor cannot be reached, mail the rules keep off the vendors
// (a recall request here) still reaches the tenant: the tenant leg accepts
// MAIL and RCPT without a next hop when the route is not yet known, and
// opens the route's hop once the header block has decided it. Mail for
// the vendor gets 451 at the end of its data, never a bounce.
func TestVendorDownBypassFlows(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	set, err := rules.Parse([]byte("default_route: [vendor]\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := set.Compile(rules.CompileOptions{Vendors: []string{"vendor"}, LoopMarker: relay.DefaultLoopMarkerName})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *relay.Config) {
		c.Vendors[0].Address, c.Vendors[0].ConnectTimeout = dead, time.Second
		c.Router = relay.NewRulesRouter(e)
	})
	send := func(msg string, want int) string {
		t.Helper()
		c := dial(t, h.relay.TenantAddr())
		c.cmd(250, "MAIL FROM:<ann@contoso.com>")
		c.cmd(250, "RCPT TO:<bob@contoso.com>")
		c.cmd(354, "DATA")
		c.write(msg + ".\r\n")
		return c.expect(want)
	}
	recall := "Message-ID: <recall-1@contoso.com>\r\nX-MS-Exchange-RecallReportGenerated: true\r\n" +
		"Subject: Recall: numbers\r\n\r\nAnn would like to recall the message.\r\n"
	send(recall, 250)
	got := h.tenant.Deliveries()
	if len(got) != 1 || !bytes.Contains(got[0].Data, []byte("X-RecallRelay-Processed")) || got[0].Rcpts[0] != "bob@contoso.com" {
		t.Fatalf("the recall request did not reach the tenant marked as processed: %d deliveries", len(got))
	}
	text := send(original, 451)
	if !strings.Contains(text, "4.4.1") || !strings.Contains(text, "vendor") {
		t.Errorf("a message for the unreachable vendor got %q, want 451 4.4.1 naming it", text)
	}
	if n := len(h.tenant.Deliveries()); n != 1 {
		t.Errorf("the tenant has %d messages, want only the recall request", n)
	}
	if len(h.obs.HopFailures()) == 0 {
		t.Error("the unreachable vendor was not reported to the observers")
	}
}
