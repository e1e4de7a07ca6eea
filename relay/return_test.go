package relay_test

import (
	"bytes"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
)

const original = "From: Ann <ann@contoso.com>\r\n" +
	"To: bob@fabrikam.example\r\n" +
	"Subject: figures\r\n" +
	"Date: Mon, 2 Jan 2023 10:00:00 +0000\r\n" +
	"Message-ID: <orig-1@AM0PR01MB1.eurprd01.prod.outlook.com>\r\n" +
	"Thread-Topic: figures\r\n" +
	"X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n" +
	"X-MS-Exchange-CrossPremises-AuthSource: AM0PR01MB1.eurprd01.prod.outlook.com\r\n" +
	"X-MS-Exchange-CrossPremises-Antispam-ScanContext:\r\n\tDIR:Originating;SFV:NSPM;SKIP:0;\r\n" +
	"X-OrganizationHeadersPreserved: AM0PR01MB1.eurprd01.prod.outlook.com\r\n" +
	"\r\nThe figures.\r\n"

// sendOut sends original through the tenant leg and returns what the vendor
// received.
func (h *harness) sendOut(from string, rcpts ...string) []byte {
	h.t.Helper()
	return h.sendOutMessage(original, from, rcpts...)
}

// sendOutMessage sends msg through the tenant leg and returns what the
// vendor received.
func (h *harness) sendOutMessage(msg, from string, rcpts ...string) []byte {
	h.t.Helper()
	before := len(h.vendor.Deliveries())
	c := dial(h.t, h.relay.TenantAddr())
	c.cmd(250, "MAIL FROM:<%s>", from)
	for _, r := range rcpts {
		c.cmd(250, "RCPT TO:<%s>", r)
	}
	c.cmd(354, "DATA")
	c.write(msg + ".\r\n")
	c.expect(250)
	d, err := h.vendor.WaitDeliveries(before+1, time.Second)
	if err != nil {
		h.t.Fatalf("vendor got nothing: %v", err)
	}
	return d[len(d)-1].Data
}

// sendBack delivers data on the return leg and returns the reply.
func (h *harness) sendBack(data []byte, from string, rcpts ...string) (int, string) {
	h.t.Helper()
	c := dial(h.t, h.relay.ReturnAddr())
	defer func() {
		c.try("QUIT")
		c.Close()
	}()
	if code, text := c.try("MAIL FROM:<%s>", from); code != 250 {
		return code, text
	}
	for _, r := range rcpts {
		if code, text := c.try("RCPT TO:<%s>", r); code != 250 {
			return code, text
		}
	}
	c.cmd(354, "DATA")
	c.write(string(data) + ".\r\n")
	code, text, _ := c.ReadResponse(0)
	return code, text
}

func (r *rawClient) try(format string, args ...any) (int, string) {
	r.t.Helper()
	if err := r.PrintfLine(format, args...); err != nil {
		r.t.Fatal(err)
	}
	code, text, _ := r.ReadResponse(0)
	return code, text
}

// vendorise does what a signature service does: drops every X-MS-* field,
// optionally the reference and Message-ID, and appends a footer.
func vendorise(data []byte, dropRef, newMsgID bool) []byte {
	var out []string
	head, body, _ := strings.Cut(string(data), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	skip := false
	for _, l := range lines {
		if l != "" && (l[0] == ' ' || l[0] == '\t') {
			if !skip {
				out = append(out, l)
			}
			continue
		}
		name, _, _ := strings.Cut(l, ":")
		ln := strings.ToLower(name)
		skip = strings.HasPrefix(ln, "x-ms-") || strings.HasPrefix(ln, "x-organization") ||
			(dropRef && ln == "x-recallrelay-ref") || ln == "thread-topic"
		if newMsgID && ln == "message-id" {
			out = append(out, "Message-ID: <rewritten@vendor.example>")
			skip = true
			continue
		}
		if !skip {
			out = append(out, l)
		}
	}
	out = append([]string{"Received: from vendor.example"}, out...)
	return []byte(strings.Join(out, "\r\n") + "\r\n\r\n" + body + "-- \r\nSent with SignatureVendor\r\n")
}

// guarded lists the fields the return leg must make byte-identical.
var guarded = regexp.MustCompile(`(?im)^(message-id|thread-topic|x-ms-exchange-crosspremises-[^:]*|x-organizationheaderspreserved):.*\r\n([ \t].*\r\n)*`)

func guardedOf(data []byte) string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	return strings.Join(guarded.FindAllString(string(head)+"\r\n", -1), "")
}

// The return leg finds the record by reference, by Message-ID, or by
// fingerprint, and the tenant receives the origin fields byte-identical
// (regardless of order), the vendor's body and the loop marker.
func TestReturnRestores(t *testing.T) {
	tests := []struct {
		name              string
		dropRef, newMsgID bool
		matchedBy         string
	}{
		{"by reference", false, false, "reference"},
		{"by message-id", true, false, "message-id"},
		{"by fingerprint", true, true, "fingerprint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			out := h.sendOut("ann@contoso.com", "bob@fabrikam.example", "eve@fabrikam.example")
			back := vendorise(out, tt.dropRef, tt.newMsgID)
			if code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
				t.Fatalf("return leg: %d %s", code, text)
			}
			d, err := h.tenant.WaitDeliveries(1, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got := d[0].Data
			if g, w := sortedLines(guardedOf(got)), sortedLines(guardedOf([]byte(original))); g != w {
				t.Errorf("restored fields:\n%s\nwant:\n%s", g, w)
			}
			for _, must := range []string{"X-RecallRelay-Processed: true\r\n", "Received: from vendor.example\r\n", "\r\n\r\nThe figures.\r\n-- \r\nSent with SignatureVendor\r\n"} {
				if !bytes.Contains(got, []byte(must)) {
					t.Errorf("missing %q in\n%s", must, got)
				}
			}
			if bytes.Contains(got, []byte("X-RecallRelay-Ref")) {
				t.Error("reference header reached the tenant")
			}
			h.waitOutcome(t, func(o relay.Outcome) bool {
				return o.Leg == "return" && o.MatchedBy == tt.matchedBy && o.Result == "delivered"
			})
		})
	}
}

func sortedLines(s string) string {
	fields := strings.SplitAfter(s, "\r\n")
	for i := 1; i < len(fields); i++ {
		for j := i; j > 0 && fields[j] < fields[j-1]; j-- {
			fields[j], fields[j-1] = fields[j-1], fields[j]
		}
	}
	return strings.Join(fields, "")
}

// Mail the relay did not send out is refused, whatever it claims.
func TestReturnRefuses(t *testing.T) {
	h := newHarness(t, nil)
	out := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
	ref := regexp.MustCompile(`r=([a-z2-7]{26})`).FindSubmatch(out)[1]

	forged := []byte("X-RecallRelay-Ref: v=1; k=t1; r=" + string(ref) + "; t=1700000000; s=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n" + original)
	unknownKey := bytes.Replace(out, []byte("k=t1;"), []byte("k=t9;"), 1)
	otherRef := regexp.MustCompile(`r=[a-z2-7]{26}`).ReplaceAll(out, []byte("r=aaaaaaaaaaaaaaaaaaaaaaaaaa"))
	neverSent := []byte("X-MS-Exchange-CrossPremises-AuthAs: Internal\r\nMessage-ID: <never@sent>\r\nSubject: hi\r\n\r\nbody\r\n")

	tests := []struct {
		name      string
		data      []byte
		from      string
		rcpt      string
		wantCode  int
		wantText  string
		wantInLog string
	}{
		{"no record", neverSent, "x@contoso.com", "bob@fabrikam.example", 550, "5.7.1 No origin record", `"result":"rejected"`},
		{"forged signature", forged, "ann@contoso.com", "bob@fabrikam.example", 550, "5.7.1 Reference refused: signature invalid", "reference refused"},
		{"unknown key id", unknownKey, "ann@contoso.com", "bob@fabrikam.example", 550, "5.7.1 Reference refused: unknown key id", "unknown key id"},
		{"reference edited to another record", otherRef, "ann@contoso.com", "bob@fabrikam.example", 550, "signature invalid", "reference refused"},
		{"recipient not recorded", out, "ann@contoso.com", "mallory@evil.example", 550, "recipient mallory@evil.example was not a recipient", "reference refused"},
		{"sender differs", out, "mallory@evil.example", "bob@fabrikam.example", 550, "MAIL FROM differs", "reference refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, text := h.sendBack(tt.data, tt.from, tt.rcpt)
			if code != tt.wantCode || !strings.Contains(text, tt.wantText) {
				t.Errorf("reply %d %s; want %d …%s…", code, text, tt.wantCode, tt.wantText)
			}
			if !strings.Contains(h.logs.String(), tt.wantInLog) {
				t.Errorf("log lacks %q", tt.wantInLog)
			}
		})
	}
	if n := len(h.tenant.Deliveries()); n != 0 {
		t.Fatalf("tenant received %d refused messages", n)
	}
}

// With return_without_record: strip, unrecorded mail is delivered with
// every organization header removed, so it cannot become internal.
func TestReturnStripsWithoutRecord(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.ReturnWithoutRecord = relay.ReturnStrip })
	data := []byte("X-MS-Exchange-CrossPremises-AuthAs: Internal\r\nX-MS-Exchange-Organization-AuthAs: Internal\r\n" +
		"X-OrganizationHeadersPreserved: x\r\nMessage-ID: <never@sent>\r\nSubject: hi\r\n\r\nbody\r\n")
	if code, text := h.sendBack(data, "x@contoso.com", "bob@fabrikam.example"); code != 250 {
		t.Fatalf("%d %s", code, text)
	}
	d, err := h.tenant.WaitDeliveries(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := string(d[0].Data)
	for _, bad := range []string{"CrossPremises", "Organization-AuthAs", "OrganizationHeadersPreserved"} {
		if strings.Contains(got, bad) {
			t.Errorf("%s reached the tenant:\n%s", bad, got)
		}
	}
	if !strings.Contains(got, "Message-ID: <never@sent>\r\n") || !strings.HasSuffix(got, "\r\n\r\nbody\r\n") {
		t.Errorf("message damaged:\n%s", got)
	}
}

// A tenant that answers 451 on reinjection makes the return leg answer 451,
// so the vendor keeps the message and retries; the retry is delivered.
func TestReturnTenantTempfail(t *testing.T) {
	h := newHarness(t, nil)
	out := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
	h.tenant.RejectNextData(1, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "try later"})
	back := vendorise(out, false, false)
	code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example")
	if code != 451 || !strings.Contains(text, "tenant answered end of data: 451 try later") {
		t.Fatalf("first attempt: %d %s", code, text)
	}
	if code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
		t.Fatalf("retry: %d %s", code, text)
	}
	if d := h.tenant.Deliveries(); len(d) != 1 {
		t.Fatalf("tenant recorded %d deliveries, want 1", len(d))
	}
}

// A vendor that sends the same message back twice gets 250 both times, and
// the tenant receives it once per recipient; a return that adds a recipient
// who has not had it yet delivers to that recipient only.
func TestReturnSuppressesDuplicates(t *testing.T) {
	h := newHarness(t, nil)
	out := h.sendOut("ann@contoso.com", "bob@fabrikam.example", "eve@fabrikam.example")
	back := vendorise(out, false, false)

	for i := 0; i < 2; i++ {
		if code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
			t.Fatalf("return %d: %d %s", i+1, code, text)
		}
	}
	if code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example", "eve@fabrikam.example"); code != 250 {
		t.Fatalf("third return: %d %s", code, text)
	}
	d := h.tenant.Deliveries()
	if len(d) != 2 || strings.Join(d[0].Rcpts, ",") != "bob@fabrikam.example" || strings.Join(d[1].Rcpts, ",") != "eve@fabrikam.example" {
		for _, x := range d {
			t.Logf("delivery to %v", x.Rcpts)
		}
		t.Fatalf("tenant deliveries: %d, want bob once then eve once", len(d))
	}
	h.waitOutcome(t, func(o relay.Outcome) bool {
		return o.Result == "suppressed" && strings.Join(o.Suppressed, ",") == "bob@fabrikam.example"
	})
}

// Two copies returning at the same moment: exactly one is delivered, the
// other is told to retry (and is then suppressed).
func TestReturnConcurrentCopies(t *testing.T) {
	h := newHarness(t, nil)
	out := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
	back := vendorise(out, false, false)
	entered := make(chan struct{})
	release := make(chan struct{})
	h.tenant.SetDataHook(func(*relaytest.Delivery) *smtp.SMTPError {
		close(entered)
		<-release
		return nil
	})
	first := make(chan int)
	go func() {
		code, _ := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example")
		first <- code
	}()
	<-entered
	code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example")
	if code != 451 || !strings.Contains(text, "being delivered") {
		t.Errorf("concurrent copy: %d %s, want 451", code, text)
	}
	h.tenant.SetDataHook(nil)
	close(release)
	if c := <-first; c != 250 {
		t.Fatalf("first copy: %d", c)
	}
	if code, _ := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
		t.Errorf("retry of the second copy: %d", code)
	}
	if n := len(h.tenant.Deliveries()); n != 1 {
		t.Fatalf("tenant got %d copies", n)
	}
}

// With duplicate suppression off, every return is delivered.
func TestReturnKeepDuplicates(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.Duplicates = relay.DuplicatesDeliver })
	back := vendorise(h.sendOut("ann@contoso.com", "bob@fabrikam.example"), false, false)
	h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example")
	h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example")
	if n := len(h.tenant.Deliveries()); n != 2 {
		t.Fatalf("tenant got %d copies, want 2", n)
	}
}

// A vendor replaying a delivered message gets 250 (suppressed) up to the
// bound, then 550 5.7.1; the tenant never sees a second copy.
func TestReturnReplayBound(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.MaxDuplicateReturns = 3 })
	back := vendorise(h.sendOut("ann@contoso.com", "bob@fabrikam.example"), false, false)
	codes := []int{}
	for i := 0; i < 6; i++ {
		code, _ := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example")
		codes = append(codes, code)
	}
	want := []int{250, 250, 250, 250, 550, 550} // delivery, 3 suppressed copies, then refused
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("replies %v, want %v", codes, want)
		}
	}
	if n := len(h.tenant.Deliveries()); n != 1 {
		t.Fatalf("tenant got %d copies", n)
	}
}

// Exchange retries a message when it did not get 250 (a 4xx, or a reply
// lost with the connection). The retry reaches the vendor byte-identical —
// same reference, same time stamps — so a vendor that recognises retries
// can, and when both copies come back, the tenant gets the message once.
func TestRetrySameReference(t *testing.T) {
	// The clock moves on between attempts: a retry stamped anew would
	// differ from the first attempt.
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	h := newHarness(t, func(c *relay.Config) {
		c.Now = func() time.Time { return time.Unix(0, clock.Add(int64(time.Minute))) }
	})
	h.vendor.RejectNextData(1, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"})
	c := dial(t, h.relay.TenantAddr())
	c.cmd(250, "MAIL FROM:<ann@contoso.com>")
	c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
	c.cmd(354, "DATA")
	c.write(original + ".\r\n")
	c.expect(451)
	first := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
	second := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
	if !bytes.Equal(first, second) {
		t.Fatalf("retries differ:\n%s\n---\n%s", first, second)
	}
	for _, out := range [][]byte{first, second} {
		if code, text := h.sendBack(vendorise(out, false, false), "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
			t.Fatalf("return: %d %s", code, text)
		}
	}
	if n := len(h.tenant.Deliveries()); n != 1 {
		t.Fatalf("tenant got %d copies", n)
	}
	// A different message (another recipient set) gets another reference.
	other := h.sendOut("ann@contoso.com", "bob@fabrikam.example", "eve@fabrikam.example")
	if bytes.Equal(refOf(other), refOf(first)) {
		t.Error("different envelopes share a reference")
	}
}

func refOf(data []byte) []byte {
	return regexp.MustCompile(`r=[a-z2-7]{26}`).Find(data)
}

// A retry that reaches another instance (or this one after a restart) is
// stamped anew, since the first attempt's time is kept in the memory of the
// instance that recorded it, not read from the store. It still carries the
// same reference, and when both copies come back the tenant gets the
// message once.
func TestRetryOtherInstance(t *testing.T) {
	h := newHarness(t, nil)
	cfg := looptest.Config(t, h.tenant.Addr(), looptest.Hop("vendor", h.vendor.Addr()))
	cfg.Store, cfg.Signer = h.store, h.signer
	later := time.Now().Add(time.Hour)
	cfg.Now = func() time.Time { return later }
	other := looptest.Start(t, cfg)

	first := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
	c := dial(t, other.TenantAddr())
	c.cmd(250, "MAIL FROM:<ann@contoso.com>")
	c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
	c.cmd(354, "DATA")
	c.write(original + ".\r\n")
	c.expect(250)
	d, err := h.vendor.WaitDeliveries(2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	second := d[1].Data
	if bytes.Equal(first, second) {
		t.Fatal("the other instance stamped the retry with the first attempt's time; expected a new stamp")
	}
	if r1, r2 := refOf(first), refOf(second); r1 == nil || !bytes.Equal(r1, r2) {
		t.Fatalf("references differ: %q vs %q", r1, r2)
	}
	for _, out := range [][]byte{first, second} {
		if code, text := h.sendBack(vendorise(out, false, false), "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
			t.Fatalf("return: %d %s", code, text)
		}
	}
	if n := len(h.tenant.Deliveries()); n != 1 {
		t.Fatalf("tenant got %d copies", n)
	}
}
