package rules

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/headers"
)

// winmailPart is a winmail.dat part of class, without its delimiter line.
func winmailPart(class string) string {
	return "Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"winmail.dat\"\r\n\r\n" + base64Lines(tnefStream(class))
}

// deepMessage nests levels multipart/mixed entities (boundaries b1, b2,
// ...) around a winmail.dat of class: its TNEF part is at depth levels.
// The message is well formed: every multipart is closed.
func deepMessage(t testing.TB, levels int, class string) (*headers.Header, []byte) {
	var b strings.Builder
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i, i+1)
	}
	fmt.Fprintf(&b, "--b%d\r\n%s", levels, winmailPart(class))
	for i := levels; i >= 1; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return hdr(t, "From: a@contoso.com", "Content-Type: multipart/mixed; boundary=b1"), []byte(b.String())
}

// wideMessage puts n text parts before a winmail.dat of class.
func wideMessage(t testing.TB, n int, class string) (*headers.Header, []byte) {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	b.WriteString("--b\r\n" + winmailPart(class) + "--b--\r\n")
	return hdr(t, "From: a@contoso.com", "Content-Type: multipart/mixed; boundary=b"), []byte(b.String())
}

// multipartMessage wraps body (CRLF line endings) as multipart/mixed with
// boundary b, after the header fields given.
func multipartMessage(t testing.TB, body string, fields ...string) (*headers.Header, []byte) {
	return hdr(t, append(fields, "Content-Type: multipart/mixed; boundary=b")...), []byte(body)
}

func TestScanBodyIncomplete(t *testing.T) {
	brokenTNEF := "--b\r\nContent-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAAAAAA\r\n--b--\r\n"
	tests := []struct {
		name   string
		msg    func(t testing.TB) (*headers.Header, []byte)
		reason string // "" for a complete scan
	}{
		{"16 levels", func(t testing.TB) (*headers.Header, []byte) { return deepMessage(t, 16, "IPM.Note") }, ""},
		{"17 levels", func(t testing.TB) (*headers.Header, []byte) { return deepMessage(t, 17, "IPM.Note") },
			"message" + strings.Repeat(" part 1", 16) + ": multipart nesting deeper than 16 (scan limit)"},
		{"1000 entities", func(t testing.TB) (*headers.Header, []byte) { return wideMessage(t, 998, "IPM.Note") }, ""},
		{"1001 entities", func(t testing.TB) (*headers.Header, []byte) { return wideMessage(t, 999, "IPM.Note") },
			"message part 1000: more than 1000 parts (scan limit)"},
		{"part header too large", func(t testing.TB) (*headers.Header, []byte) {
			return multipartMessage(t, "--b\r\nX-Big: "+strings.Repeat("a", 70<<10)+"\r\n\r\nx\r\n--b\r\n"+winmailPart("IPM.Outlook.Recall")+"--b--\r\n")
		}, "message part 1: header block larger than 65536 bytes (scan limit)"},
		{"broken TNEF", func(t testing.TB) (*headers.Header, []byte) { return multipartMessage(t, brokenTNEF) },
			"message part 1: application/ms-tnef: tnef: not a TNEF stream"},
		{"multipart without boundary", func(t testing.TB) (*headers.Header, []byte) {
			return hdr(t, "Content-Type: multipart/mixed"), []byte("--b\r\n" + winmailPart("IPM.Outlook.Recall") + "--b--\r\n")
		}, "message: multipart/mixed without a boundary"},
		{"broken part header: the rest of the multipart is lost", func(t testing.TB) (*headers.Header, []byte) {
			return multipartMessage(t, "--b\r\nbroken header line\r\n\r\nx\r\n--b\r\n"+winmailPart("IPM.Outlook.Recall")+"--b--\r\n")
		}, "message part 1: message: malformed MIME header line: broken header line"},
		{"delimiter line with junk: the rest of the multipart is lost", func(t testing.TB) (*headers.Header, []byte) {
			return multipartMessage(t, "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b junk\r\n"+winmailPart("IPM.Outlook.Recall")+"--b--\r\n")
		}, "message part 2: multipart: expecting a new Part"},
		{"no close delimiter: every line was read", func(t testing.TB) (*headers.Header, []byte) {
			return multipartMessage(t, "--b\r\n"+winmailPart("IPM.Note")+"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n")
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body := tt.msg(t)
			info, err := ScanBody(h, bytes.NewReader(body), ScanLimits{})
			if info.Incomplete != (tt.reason != "") || !strings.HasPrefix(info.IncompleteReason, tt.reason) {
				t.Errorf("Incomplete = %v, IncompleteReason = %q; want %v, %q (error %v)", info.Incomplete, info.IncompleteReason, tt.reason != "", tt.reason, err)
			}
			if info.Incomplete && err == nil {
				t.Errorf("incomplete scan without an error")
			}
		})
	}
}

// decideScanned decides on a message as the relay does: the body scanned
// with the default limits.
func decideScanned(t testing.TB, e *Engine, h *headers.Header, body []byte) (Decision, *Message) {
	t.Helper()
	info, _ := ScanBody(h, bytes.NewReader(body), ScanLimits{})
	m := &Message{From: "a@contoso.com", Rcpts: []string{"b@fabrikam.com"}, Size: int64(len(body)), Header: h, Body: info}
	return e.Decide(m), m
}

// TestDecideIncompleteScan checks the fail-safe: a message whose body scan
// did not finish never reaches a vendor on the strength of the parts seen.
func TestDecideIncompleteScan(t *testing.T) {
	def := defaultEngine(t)
	withAction := func(action string) *Engine {
		return compile(t, "defaults: {scan_incomplete: "+action+"}\ndefault_route: [signature]\n")
	}
	exeRule := noDefaults + "default_route: [signature]\nrules:\n" +
		"  - name: done\n    when: {header_exists: [X-Done]}\n    actions: {route: [archive]}\n    stop: true\n" +
		"  - name: no-exe\n    when: {attachment_extension: [exe]}\n    actions: {reject: {}}\n"
	exeHidden := func(t testing.TB, fields ...string) (*headers.Header, []byte) {
		var b strings.Builder
		for i := 0; i < 1000; i++ {
			b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n")
		}
		b.WriteString("--b\r\nContent-Type: application/octet-stream; name=setup.exe\r\n\r\nMZ\r\n--b--\r\n")
		return multipartMessage(t, b.String(), fields...)
	}
	const failSafe = "(final); matched builtin:scan-incomplete-bypass; the body scan did not finish: "
	tests := []struct {
		name string
		e    *Engine
		msg  func(t testing.TB) (*headers.Header, []byte)
		want string // the decision, or its prefix when it ends in ": "
	}{
		{"recall request below depth 16", def, func(t testing.TB) (*headers.Header, []byte) { return deepMessage(t, 17, "IPM.Outlook.Recall") },
			"bypass " + failSafe},
		{"recall request deeper still", def, func(t testing.TB) (*headers.Header, []byte) { return deepMessage(t, 40, "IPM.Outlook.Recall") },
			"bypass " + failSafe},
		{"recall request after 1000 parts", def, func(t testing.TB) (*headers.Header, []byte) { return wideMessage(t, 1000, "IPM.Outlook.Recall") },
			"bypass " + failSafe},
		{"recall report after 1000 parts", def, func(t testing.TB) (*headers.Header, []byte) { return wideMessage(t, 1200, "IPM.Recall.Report.Success") },
			"bypass " + failSafe},
		{"broken winmail.dat", def, func(t testing.TB) (*headers.Header, []byte) {
			return multipartMessage(t, "--b\r\nContent-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAAAAAA\r\n--b--\r\n")
		}, "bypass " + failSafe},
		{"ordinary message 16 levels deep", def, func(t testing.TB) (*headers.Header, []byte) { return deepMessage(t, 16, "IPM.Note") },
			"route signature"},
		{"ordinary message of 1000 entities", def, func(t testing.TB) (*headers.Header, []byte) { return wideMessage(t, 998, "IPM.Note") },
			"route signature"},
		{"recall request 16 levels deep", def, func(t testing.TB) (*headers.Header, []byte) { return deepMessage(t, 16, "IPM.Outlook.Recall") },
			"bypass (final); matched builtin:recall-bypass"},
		{"recall seen before the limit", def, func(t testing.TB) (*headers.Header, []byte) {
			_, deep := deepMessage(t, 20, "IPM.Note")
			return multipartMessage(t, "--b\r\n"+winmailPart("IPM.Outlook.Recall")+"--b\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"+string(deep)+"--b--\r\n")
		}, "bypass (final); matched builtin:recall-bypass"},
		{"loop marker in the header", def, func(t testing.TB) (*headers.Header, []byte) {
			_, body := deepMessage(t, 17, "IPM.Note")
			return hdr(t, "X-RecallRelay-Loop: 1", "Content-Type: multipart/mixed; boundary=b1"), body
		}, "bypass (final); matched builtin:loop-protection"},
		{"reject chosen", withAction("reject"), func(t testing.TB) (*headers.Header, []byte) { return deepMessage(t, 17, "IPM.Outlook.Recall") },
			"reject 550 5.6.0 Message rejected: its MIME structure could not be fully scanned (final); matched builtin:scan-incomplete-reject; the body scan did not finish: "},
		{"tempfail chosen", withAction("tempfail"), func(t testing.TB) (*headers.Header, []byte) { return wideMessage(t, 1000, "IPM.Note") },
			"tempfail 451 4.6.0 Message deferred: its MIME structure could not be fully scanned; try again later (final); matched builtin:scan-incomplete-tempfail; the body scan did not finish: message part 1000: more than 1000 parts (scan limit)"},
		{"bypass chosen", withAction("bypass"), func(t testing.TB) (*headers.Header, []byte) { return wideMessage(t, 1000, "IPM.Note") },
			"bypass " + failSafe + "message part 1000: more than 1000 parts (scan limit)"},
		{"an attachment rule cannot decide on the parts seen", compile(t, exeRule), func(t testing.TB) (*headers.Header, []byte) { return exeHidden(t) },
			"bypass " + failSafe},
		{"a header rule that stops first decides", compile(t, exeRule), func(t testing.TB) (*headers.Header, []byte) { return exeHidden(t, "X-Done: 1") },
			"route archive; matched done"},
		{"rules that do not read the body", compile(t, noDefaults+"default_route: [signature]\nrules:\n  - name: tag\n    actions: {set_header: [{name: X-Tag, value: \"1\"}]}\n"),
			func(t testing.TB) (*headers.Header, []byte) { return deepMessage(t, 17, "IPM.Outlook.Recall") },
			"route signature; set X-Tag: 1; matched tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body := tt.msg(t)
			d, m := decideScanned(t, tt.e, h, body)
			got := d.String()
			if strings.HasSuffix(tt.want, ": ") && !strings.HasPrefix(got, tt.want) || !strings.HasSuffix(tt.want, ": ") && got != tt.want {
				t.Errorf("decision\n %s\nwant\n %s", got, tt.want)
			}
			if x := tt.e.Explain(m); x.Decision.String() != got {
				t.Errorf("Explain decided %s", x.Decision)
			}
			// The relay scans only when NeedsBodyFor says so: when it does
			// not, the scan must not matter.
			if !tt.e.NeedsBodyFor(h) {
				unscanned := *m
				unscanned.Body = nil
				if d := tt.e.Decide(&unscanned); d.String() != got {
					t.Errorf("NeedsBodyFor = false, but unscanned the decision is %s", d)
				}
			}
		})
	}
}

func TestExplainIncompleteScan(t *testing.T) {
	e := defaultEngine(t)
	h, body := deepMessage(t, 17, "IPM.Outlook.Recall")
	_, m := decideScanned(t, e, h, body)
	s := e.Explain(m).String()
	for _, want := range []string{
		"builtin:recall-bypass: no match (predicate undecided)\n" +
			"    ?    predicate: recall-request: no recall request field, no TNEF message class; recall-report: no recall report field, no TNEF message class (in the parts scanned; the scan did not finish)\n",
		"builtin:scan-incomplete-bypass: MATCH → bypass every vendor (final: what the scan did not see could change the decision)\n" +
			"    yes  scan_incomplete: message" + strings.Repeat(" part 1", 16) + ": multipart nesting deeper than 16 (scan limit)\n" +
			"    yes  undecided: not decided on the parts scanned: builtin:recall-bypass, builtin:calendar-bypass\n",
		"decision: bypass (final); matched builtin:scan-incomplete-bypass; the body scan did not finish: message part 1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("explanation lacks %q:\n%s", want, s)
		}
	}

	// A scan that stopped where nothing could change: the built-in is
	// shown, not applied.
	h, body = deepMessage(t, 17, "IPM.Note")
	h.Prepend(mustField(t, "X-MS-Exchange-RecallReportGenerated", "true"))
	_, m = decideScanned(t, e, h, body)
	s = e.Explain(m).String()
	if !strings.Contains(s, "builtin:scan-incomplete-bypass: not reached (evaluation ended at builtin:recall-bypass)\n") {
		t.Errorf("explanation of a recall request known by its header:\n%s", s)
	}
}

func mustField(t testing.TB, name, value string) headers.Field {
	t.Helper()
	f, err := headers.NewField(name, value)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSummaryScanIncomplete(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"defaults: {scan_incomplete: reject}\ndefault_route: [signature]\n",
			"test.yaml: built-in defaults null-sender-bypass, loop-protection, recall-bypass, calendar-bypass; no rules; otherwise route signature; a body scan that cannot finish: reject 550 5.6.0"},
		{"defaults: {scan_incomplete: tempfail}\ndefault_route: [signature]\n",
			"test.yaml: built-in defaults null-sender-bypass, loop-protection, recall-bypass, calendar-bypass; no rules; otherwise route signature; a body scan that cannot finish: tempfail 451 4.6.0"},
		// bypass is the default, and without a condition on the body no
		// scan can be incomplete: neither is worth a mention.
		{"defaults: {scan_incomplete: bypass}\ndefault_route: [signature]\n",
			"test.yaml: built-in defaults null-sender-bypass, loop-protection, recall-bypass, calendar-bypass; no rules; otherwise route signature"},
	}
	for _, tt := range tests {
		if got := compile(t, tt.src).Summary(); got != tt.want {
			t.Errorf("Summary() = %q\nwant %q", got, tt.want)
		}
	}
	e := compile(t, "defaults: {recall_bypass: false, loop_protection: false, null_sender_bypass: false, calendar_bypass: false, scan_incomplete: reject}\ndefault_route: [signature]\n")
	if got, want := e.Summary(), "test.yaml: built-in defaults none; no rules; otherwise route signature"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
}
