package rules

import (
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	src := org + "default_route: [signature]\nrules:\n" +
		"  - name: tag-urgent\n    priority: 5\n    when: {header_contains: {header: X-Priority-Note, words: [urgent]}}\n    actions: {set_header: [{name: X-Urgent, value: \"yes\"}]}\n" +
		"  - name: sign-internal\n    when: {sender_in_organization: true}\n    except: {header_exists: [X-No-Sign]}\n    actions: {route: [signature, scanner]}\n    stop: true\n" +
		"  - name: archive-all\n    actions: {route: [archive]}\n"
	e := compile(t, src)

	t.Run("user rules", func(t *testing.T) {
		m := msg{from: "alice@contoso.com", fields: []string{"X-Priority-Note: reply urgently", "Content-Type: text/plain"}}.message(t)
		x := e.Explain(m)
		if d := e.Decide(m); x.Decision.String() != d.String() {
			t.Errorf("Explain decision %s, Decide %s", x.Decision, d)
		}
		s := x.String()
		for _, want := range []string{
			"builtin:null-sender-bypass: no match (null_sender does not hold)\n    no   null_sender: MAIL FROM is <alice@contoso.com>, not null\n",
			"builtin:loop-protection: no match (predicate does not hold)\n    no   predicate: already-processed: none of X-RecallRelay-Loop, X-CodeTwoProcessed, X-ExclaimerHostedSignatures-MessageProcessed, X-ProcessedByTemplafy present\n",
			"builtin:recall-bypass: no match (predicate does not hold)\n    no   predicate: recall-request: no recall request field, no TNEF message class; recall-report: no recall report field, no TNEF message class\n",
			"builtin:calendar-bypass: no match",
			"rule \"tag-urgent\" (priority 5): no match (when.header_contains does not hold)\n    no   when.header_contains: X-Priority-Note does not contain \"urgent\" as whole words\n",
			"rule \"sign-internal\" (priority 20): MATCH → route signature → scanner, stop\n    yes  when.sender_in_organization: sender <alice@contoso.com> is in the organization\n    no   except.header_exists: no X-No-Sign field\n",
			"rule \"archive-all\" (priority 30): not reached (evaluation ended at sign-internal); would match\n    (no conditions: applies to every message)\n",
			"decision: route signature → scanner; matched sign-internal\n",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("explanation lacks %q:\n%s", want, s)
			}
		}
	})
	t.Run("except and builtin", func(t *testing.T) {
		x := e.Explain(msg{from: "alice@contoso.com", fields: []string{"X-No-Sign: 1", "X-Priority-Note: URGENT"}}.message(t))
		s := x.String()
		for _, want := range []string{
			"rule \"tag-urgent\" (priority 5): MATCH → set X-Urgent\n    yes  when.header_contains: X-Priority-Note contains \"urgent\"\n",
			"rule \"sign-internal\" (priority 20): no match (except.header_exists holds)\n",
			"    yes  except.header_exists: X-No-Sign present\n",
			"rule \"archive-all\" (priority 30): MATCH → route archive\n",
			"decision: route archive; set X-Urgent: yes; matched tag-urgent, archive-all\n",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("explanation lacks %q:\n%s", want, s)
			}
		}
		x = e.Explain(msg{fields: []string{"x-ms-exchange-recallreportgenerated: true", "X-Priority-Note: urgent"}}.message(t))
		s = x.String()
		for _, want := range []string{
			"builtin:recall-bypass: MATCH → bypass every vendor (final: user rules are not evaluated)\n    yes  predicate: recall-request: X-MS-Exchange-RecallReportGenerated present\n",
			"builtin:calendar-bypass: not reached (evaluation ended at builtin:recall-bypass)\n",
			"rule \"tag-urgent\" (priority 5): not reached (evaluation ended at builtin:recall-bypass); would match\n",
			"decision: bypass (final); matched builtin:recall-bypass\n",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("explanation lacks %q:\n%s", want, s)
			}
		}
		if x.Unscanned || strings.Contains(s, "note:") {
			t.Errorf("a single-part message is reported unscanned")
		}
		x = e.Explain(msg{fields: []string{"Content-Type: multipart/mixed; boundary=b"}}.message(t))
		if !x.Unscanned || !strings.HasPrefix(x.String(), "note: body not scanned;") {
			t.Errorf("a multipart message without BodyInfo is not reported unscanned:\n%s", x)
		}
		if len(x.Rules) != 7 {
			t.Errorf("%d rules traced, want 7 (4 built-in, 3 user)", len(x.Rules))
		}
	})
}
