package relay_test

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/rules"
)

// RulesRouter turns each kind of rules decision into the Route the tenant
// leg acts on.
func TestRulesRouter(t *testing.T) {
	set, err := rules.Parse([]byte(`
default_route: [signature]
rules:
  - name: chain
    when: {subject_contains: [chain]}
    actions:
      route: [signature, scanner]
      set_header: [{name: X-Policy, value: chained}]
      remove_header: [X-Drop]
  - name: skip
    when: {subject_contains: [skip]}
    actions: {bypass: true}
  - name: block
    when: {subject_contains: [block]}
    actions:
      reject: {code: 554, enhanced: 5.7.1, text: Blocked here}
  - name: later
    when: {subject_contains: [later]}
    actions:
      tempfail: {code: 452, enhanced: 4.3.1, text: Not now}
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := set.Compile(rules.CompileOptions{Vendors: []string{"signature", "scanner"}, LoopMarker: "X-RecallRelay-Processed"})
	if err != nil {
		t.Fatal(err)
	}
	rr := relay.NewRulesRouter(e)
	tests := []struct {
		subject  string
		action   relay.RouteAction
		vendors  string
		reply    *smtp.SMTPError
		matched  string
		decision string
	}{
		{"plain", relay.ToVendors, "signature", nil, "", "route signature"},
		{"chain please", relay.ToVendors, "signature,scanner", nil, "chain", "route signature → scanner; set X-Policy: chained; remove X-Drop; matched chain"},
		{"skip it", relay.Bypass, "", nil, "skip", "bypass; matched skip"},
		{"block me", relay.Refuse, "", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Blocked here"}, "block", ""},
		{"later please", relay.Refuse, "", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Not now"}, "later", ""},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			h, _, err := headers.ReadHeader(strings.NewReader("Subject: "+tt.subject+"\r\n\r\n"), 1<<10)
			if err != nil {
				t.Fatal(err)
			}
			rt := rr.Message("a@contoso.com", []string{"b@fabrikam.example"}, 100, h, nil)
			if rt.Action != tt.action || strings.Join(rt.Vendors, ",") != tt.vendors || strings.Join(rt.Matched, ",") != tt.matched {
				t.Errorf("route %+v", rt)
			}
			if tt.reply != nil && (rt.Reply == nil || *rt.Reply != *tt.reply) {
				t.Errorf("reply %+v, want %+v", rt.Reply, tt.reply)
			}
			if tt.decision != "" && rt.Decision != tt.decision {
				t.Errorf("decision %q, want %q", rt.Decision, tt.decision)
			}
		})
	}
	t.Run("set and remove headers", func(t *testing.T) {
		h, _, _ := headers.ReadHeader(strings.NewReader("Subject: chain\r\n\r\n"), 1<<10)
		rt := rr.Message("a@contoso.com", []string{"b@fabrikam.example"}, 100, h, nil)
		if len(rt.SetHeaders) != 1 || string(rt.SetHeaders[0].Raw) != "X-Policy: chained\r\n" || strings.Join(rt.RemoveHeaders, ",") != "X-Drop" {
			t.Errorf("header actions %+v %v", rt.SetHeaders, rt.RemoveHeaders)
		}
	})
	t.Run("a body that cannot be scanned is noted and kept off the vendors", func(t *testing.T) {
		h, body, _ := headers.ReadHeader(strings.NewReader("Subject: x\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n"), 1<<10)
		rt := rr.Message("a@contoso.com", []string{"b@fabrikam.example"}, 100, h, body)
		if rt.Action != relay.Bypass || strings.Join(rt.Matched, ",") != "builtin:scan-incomplete-bypass" ||
			len(rt.Notes) != 1 || !strings.Contains(rt.Notes[0], "without a boundary") {
			t.Errorf("route %+v, notes %q", rt, rt.Notes)
		}
	})
	t.Run("null sender decides at MAIL", func(t *testing.T) {
		rt, final := rr.Envelope("", nil)
		if !final || rt.Action != relay.Bypass {
			t.Errorf("Envelope(<>) = %+v, final %v", rt, final)
		}
		if _, final := rr.Envelope("a@contoso.com", nil); final {
			t.Error("an ordinary sender is decided before its header block")
		}
	})
}
