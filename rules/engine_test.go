package rules

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/headers"
)

var testVendors = CompileOptions{Vendors: []string{"signature", "scanner", "archive"}, LoopMarker: "X-RecallRelay-Loop"}

// compile parses and compiles a rules file for the test vendors.
func compile(t testing.TB, src string) *Engine {
	t.Helper()
	s, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	e, err := s.Compile(testVendors)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

// hdr builds a header block from fields, one per argument.
func hdr(t testing.TB, fields ...string) *headers.Header {
	t.Helper()
	var b strings.Builder
	for _, f := range fields {
		b.WriteString(f + "\r\n")
	}
	b.WriteString("\r\n")
	h, _, err := headers.ReadHeader(strings.NewReader(b.String()), 1<<20)
	if err != nil {
		t.Fatalf("header %q: %v", fields, err)
	}
	return h
}

// noDefaults turns every recall-safe default off, to test user rules alone.
const noDefaults = "defaults: {recall_bypass: false, loop_protection: false, null_sender_bypass: false, calendar_bypass: false}\n"

const org = "organization: {accepted_domains: [contoso.com, contoso.onmicrosoft.com]}\n"

// oneRule is a file whose only rule routes to scanner when cond holds;
// cond is "when: {...}" or "except: {...}" or both, on one line each.
func oneRule(cond ...string) string {
	return org + noDefaults + "default_route: [signature]\nrules:\n  - name: r\n    " +
		strings.Join(cond, "\n    ") + "\n    actions: {route: [scanner]}\n"
}

type msg struct {
	from   string
	rcpts  []string
	fields []string
	body   *BodyInfo
	size   int64
}

func (m msg) message(t testing.TB) *Message {
	from, rcpts := m.from, m.rcpts
	if from == "" {
		from = "alice@contoso.com"
	} else if from == "<>" {
		from = ""
	}
	if rcpts == nil {
		rcpts = []string{"bob@fabrikam.com"}
	}
	return &Message{From: from, Rcpts: rcpts, Size: m.size, Header: hdr(t, m.fields...), Body: m.body}
}

func TestConditions(t *testing.T) {
	pdf := &BodyInfo{ContentTypes: []string{"multipart/mixed", "text/plain", "application/pdf"},
		Attachments: []Attachment{{Filename: "Report.PDF", ContentType: "application/pdf"}}}
	docx := &BodyInfo{Attachments: []Attachment{{Filename: "plan.DocX", ContentType: "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}}}
	tgz := &BodyInfo{Attachments: []Attachment{{Filename: "logs.tar.gz", ContentType: "application/gzip"}}}
	png := &BodyInfo{Attachments: []Attachment{{Filename: "image001.png", ContentType: "image/png"}}}
	notPDF := &BodyInfo{Attachments: []Attachment{{Filename: "notpdf", ContentType: "application/octet-stream"}, {Filename: "pdf.txt", ContentType: "text/plain"}}}
	meeting := &BodyInfo{TNEFClass: "IPM.Schedule.Meeting.Request"}
	smime := &BodyInfo{TNEFClass: "IPM.Note.SMIME"}
	note := &BodyInfo{TNEFClass: "IPM.Note"}

	tests := []struct {
		name string
		cond []string
		msg  msg
		want bool
	}{
		// header_exists: names compare case-insensitively; alternatives.
		{"exists", []string{"when: {header_exists: [X-Foo]}"}, msg{fields: []string{"X-Foo: 1"}}, true},
		{"exists other case", []string{"when: {header_exists: [x-foo]}"}, msg{fields: []string{"X-FOO: 1"}}, true},
		{"exists empty value", []string{"when: {header_exists: [X-Foo]}"}, msg{fields: []string{"X-Foo:"}}, true},
		{"exists alternative", []string{"when: {header_exists: [X-A, X-B]}"}, msg{fields: []string{"X-B: 1"}}, true},
		{"exists absent", []string{"when: {header_exists: [X-Foo]}"}, msg{fields: []string{"X-Food: 1"}}, false},
		{"exists non-token name", []string{`when: {header_exists: ["x(a)"]}`}, msg{fields: []string{"X(A): 1"}}, true},
		{"contains non-token name", []string{`when: {header_contains: {header: "x[a]", words: [two words]}}`}, msg{fields: []string{"X[A]: say two", " words"}}, true},

		// header_contains: Exchange word semantics.
		{"contains word", []string{"when: {header_contains: {header: X-Foo, words: [urgent]}}"}, msg{fields: []string{"X-Foo: This is URGENT!"}}, true},
		{"contains partial word", []string{"when: {header_contains: {header: X-Foo, words: [urgent]}}"}, msg{fields: []string{"X-Foo: reply urgently"}}, false},
		{"contains phrase", []string{`when: {header_contains: {header: X-Foo, words: [none, "two words"]}}`}, msg{fields: []string{"X-Foo: say two", "  words now"}}, true},
		{"contains second field", []string{"when: {header_contains: {header: x-foo, words: [b]}}"}, msg{fields: []string{"X-Foo: a", "x-FOO: b"}}, true},
		{"contains missing field", []string{"when: {header_contains: {header: X-Foo, words: [b]}}"}, msg{fields: []string{"X-Bar: b"}}, false},
		{"contains encoded word", []string{"when: {subject_contains: [Überweisung]}"}, msg{fields: []string{"Subject: =?utf-8?q?Ihre_=C3=9Cberweisung?="}}, true},
		{"contains gb2312", []string{"when: {subject_contains: [撤回]}"}, msg{fields: []string{"Subject: =?gb2312?B?s7e72DogW1BBVENIXSBuZXQ=?="}}, true},
		{"subject no match", []string{"when: {subject_contains: [invoice]}"}, msg{fields: []string{"Subject: invoices"}}, false},

		// header_matches: RE2, case-sensitive unless (?i), unanchored.
		{"matches", []string{`when: {header_matches: {header: subject, patterns: ["^\\[ext\\]"]}}`}, msg{fields: []string{"Subject: [ext] hello"}}, true},
		{"matches case-sensitive", []string{`when: {header_matches: {header: Subject, patterns: ["^\\[ext\\]"]}}`}, msg{fields: []string{"Subject: [EXT] hello"}}, false},
		{"matches (?i)", []string{`when: {header_matches: {header: Subject, patterns: ["(?i)^\\[ext\\]"]}}`}, msg{fields: []string{"Subject: [EXT] hello"}}, true},
		{"matches unanchored", []string{`when: {subject_matches: ["ext"]}`}, msg{fields: []string{"Subject: [ext] hello"}}, true},
		{"matches missing subject as empty", []string{`when: {subject_matches: ["^$"]}`}, msg{fields: []string{"X-A: 1"}}, true},
		{"matches missing field", []string{`when: {header_matches: {header: X-A, patterns: ["^$"]}}`}, msg{fields: []string{"X-B: 1"}}, false},

		// sender: envelope MAIL FROM.
		{"sender address", []string{"when: {sender: {addresses: [A@X.com]}}"}, msg{from: "a@x.COM"}, true},
		{"sender address other", []string{"when: {sender: {addresses: [a@x.com]}}"}, msg{from: "b@x.com"}, false},
		{"sender domain", []string{"when: {sender: {domains: [X.com]}}"}, msg{from: "b@x.com"}, true},
		{"sender subdomain not matched", []string{"when: {sender: {domains: [x.com]}}"}, msg{from: "b@mail.x.com"}, false},
		{"sender subdomain listed", []string{"when: {sender: {domains: [x.com, mail.x.com]}}"}, msg{from: "b@mail.x.com"}, true},
		{"sender domain suffix", []string{"when: {sender: {domains: [x.com]}}"}, msg{from: "b@notx.com"}, false},
		{"sender pattern", []string{`when: {sender: {patterns: [".*@sales\\..*"]}}`}, msg{from: "Bob@Sales.X.com"}, true},
		{"sender pattern no", []string{`when: {sender: {patterns: [".*@sales\\..*"]}}`}, msg{from: "bob@x.com"}, false},
		{"sender null", []string{`when: {sender: {patterns: [".*"]}}`}, msg{from: "<>"}, false},

		// recipient: any recipient.
		{"recipient any", []string{"when: {recipient: {addresses: [c@y.com]}}"}, msg{rcpts: []string{"a@y.com", "C@Y.com"}}, true},
		{"recipient none", []string{"when: {recipient: {domains: [y.com]}}"}, msg{rcpts: []string{"a@z.com"}}, false},

		// sender_in_organization: accepted domains, envelope.
		{"in org", []string{"when: {sender_in_organization: true}"}, msg{from: "a@Contoso.com"}, true},
		{"in org second domain", []string{"when: {sender_in_organization: true}"}, msg{from: "a@contoso.onmicrosoft.com"}, true},
		{"in org subdomain", []string{"when: {sender_in_organization: true}"}, msg{from: "a@eu.contoso.com"}, false},
		{"in org external", []string{"when: {sender_in_organization: true}"}, msg{from: "a@fabrikam.com"}, false},
		{"in org null sender", []string{"when: {sender_in_organization: true}"}, msg{from: "<>"}, false},
		{"not in org null sender", []string{"when: {sender_in_organization: false}"}, msg{from: "<>"}, true},
		{"not in org external", []string{"when: {sender_in_organization: false}"}, msg{from: "a@fabrikam.com"}, true},
		{"not in org internal", []string{"when: {sender_in_organization: false}"}, msg{from: "a@contoso.com"}, false},

		// recipients_outside_organization.
		{"outside any mixed", []string{"when: {recipients_outside_organization: any}"}, msg{rcpts: []string{"a@contoso.com", "b@fabrikam.com"}}, true},
		{"outside any internal", []string{"when: {recipients_outside_organization: any}"}, msg{rcpts: []string{"a@contoso.com"}}, false},
		{"outside all mixed", []string{"when: {recipients_outside_organization: all}"}, msg{rcpts: []string{"a@contoso.com", "b@fabrikam.com"}}, false},
		{"outside all external", []string{"when: {recipients_outside_organization: all}"}, msg{rcpts: []string{"a@x.com", "b@fabrikam.com"}}, true},
		{"outside none internal", []string{"when: {recipients_outside_organization: none}"}, msg{rcpts: []string{"a@contoso.com", "b@CONTOSO.onmicrosoft.com"}}, true},
		{"outside none mixed", []string{"when: {recipients_outside_organization: none}"}, msg{rcpts: []string{"a@contoso.com", "b@fabrikam.com"}}, false},

		// size_over.
		{"size over", []string{"when: {size_over: 10MB}"}, msg{size: 10_000_001}, true},
		{"size equal", []string{"when: {size_over: 10MB}"}, msg{size: 10_000_000}, false},
		{"size int", []string{"when: {size_over: 1024}"}, msg{size: 1025}, true},
		{"size binary", []string{"when: {size_over: 1KiB}"}, msg{size: 1024}, false},
		{"size short unit", []string{"when: {size_over: 2k}"}, msg{size: 2001}, true},
		{"size unit any case, spaced", []string{"when: {size_over: 1 mIb}"}, msg{size: 1 << 20}, false},
		{"size YAML integer", []string{"when: {size_over: 0x400}"}, msg{size: 1025}, true},

		// attachments.
		{"extension", []string{"when: {attachment_extension: [pdf]}"}, msg{body: pdf}, true},
		{"extension dot and case", []string{"when: {attachment_extension: [.DOCX]}"}, msg{body: docx}, true},
		{"extension two parts", []string{"when: {attachment_extension: [tar.gz]}"}, msg{body: tgz}, true},
		{"extension no", []string{"when: {attachment_extension: [pdf]}"}, msg{body: notPDF}, false},
		{"extension top-level part", []string{"when: {attachment_extension: [pdf]}"},
			msg{fields: []string{`Content-Type: application/pdf; name="a.pdf"`, "Content-Disposition: attachment"}}, true},
		{"content type exact", []string{"when: {attachment_content_type: [Application/PDF]}"}, msg{body: pdf}, true},
		{"content type wildcard", []string{`when: {attachment_content_type: ["image/*"]}`}, msg{body: png}, true},
		{"content type no", []string{`when: {attachment_content_type: ["image/*"]}`}, msg{body: pdf}, false},

		// message_class: TNEF class, exact or prefix.
		{"class prefix", []string{`when: {message_class: ["IPM.Schedule.Meeting.*"]}`}, msg{body: meeting}, true},
		{"class exact", []string{`when: {message_class: [ipm.note]}`}, msg{body: note}, true},
		{"class exact not prefix", []string{`when: {message_class: [IPM.Note]}`}, msg{body: smime}, false},
		{"class without TNEF", []string{`when: {message_class: ["IPM.*"]}`}, msg{}, false},

		// predicates: alternatives.
		{"auto-submitted", []string{"when: {predicate: [auto-generated]}"}, msg{fields: []string{"Auto-Submitted: auto-replied"}}, true},
		{"auto-submitted no", []string{"when: {predicate: [auto-generated]}"}, msg{fields: []string{"Auto-Submitted: No"}}, false},
		{"generated source", []string{"when: {predicate: [auto-generated]}"}, msg{fields: []string{"X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent"}}, true},
		{"precedence bulk is not generated", []string{"when: {predicate: [auto-generated]}"}, msg{fields: []string{"Precedence: bulk"}}, false},
		{"predicate alternatives", []string{"when: {predicate: [calendar, auto-generated]}"}, msg{fields: []string{"Auto-Submitted: auto-generated"}}, true},
		{"already processed vendor", []string{"when: {predicate: [already-processed]}"}, msg{fields: []string{"x-codetwoprocessed: true"}}, true},
		{"already processed loop marker", []string{"when: {predicate: [already-processed]}"}, msg{fields: []string{"X-RecallRelay-Loop: 1"}}, true},
		{"already processed no", []string{"when: {predicate: [already-processed]}"}, msg{fields: []string{"X-CodeTwo-MessageID: 1"}}, false},
		{"recall report", []string{"when: {predicate: [recall-report]}"}, msg{fields: []string{"X-MS-Exchange-Generated-Message-Source: Transport Message Recall Routing Agent"}}, true},
		{"recall report class", []string{"when: {predicate: [recall-report]}"}, msg{body: &BodyInfo{TNEFClass: "IPM.Recall.Report.Success"}}, true},
		{"encrypted top level", []string{"when: {predicate: [encrypted-or-signed]}"}, msg{fields: []string{`Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m`}}, true},
		{"calendar top level", []string{"when: {predicate: [calendar]}"}, msg{fields: []string{`Content-Type: text/calendar; method=REQUEST`}}, true},
		{"calendar class", []string{"when: {predicate: [calendar]}"}, msg{body: &BodyInfo{TNEFClass: "IPM.Appointment"}}, true},

		// AND inside when, OR inside except.
		{"and both", []string{"when: {header_exists: [X-A], sender_in_organization: true}"}, msg{fields: []string{"X-A: 1"}}, true},
		{"and one fails", []string{"when: {header_exists: [X-A], sender_in_organization: true}"}, msg{fields: []string{"X-A: 1"}, from: "a@fabrikam.com"}, false},
		{"except holds", []string{"except: {header_exists: [X-Skip]}"}, msg{fields: []string{"X-Skip: 1"}}, false},
		{"except does not hold", []string{"except: {header_exists: [X-Skip]}"}, msg{fields: []string{"X-Other: 1"}}, true},
		{"except any of two", []string{"except: {header_exists: [X-Skip], sender_in_organization: false}"}, msg{from: "a@fabrikam.com"}, false},
		{"when and except", []string{"when: {header_exists: [X-A]}", "except: {subject_contains: [draft]}"}, msg{fields: []string{"X-A: 1", "Subject: Draft 2"}}, false},
		{"no conditions", []string{"when: {}"}, msg{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := compile(t, oneRule(tt.cond...))
			d := e.Decide(tt.msg.message(t))
			got := d.Action == Route && slices.Equal(d.Route, []string{"scanner"})
			if got != tt.want {
				t.Errorf("matched = %v, want %v (decision %s)\n%s", got, tt.want, d, e.Explain(tt.msg.message(t)))
			}
			if got != slices.Contains(d.Matched, "r") {
				t.Errorf("Matched = %q disagrees with the route", d.Matched)
			}
		})
	}
}

func TestEvaluation(t *testing.T) {
	base := org + noDefaults + "default_route: [signature]\nrules:\n"
	tests := []struct {
		name  string
		rules string
		msg   msg
		want  string // Decision.String()
	}{
		{"default route", "  - name: a\n    when: {header_exists: [X-None]}\n    actions: {route: [scanner]}\n",
			msg{}, "route signature"},
		{"empty default route bypasses", "", msg{}, "route signature"},
		{"last routing action wins",
			"  - name: a\n    actions: {route: [scanner]}\n  - name: b\n    actions: {route: [archive, signature]}\n",
			msg{}, "route archive → signature; matched a, b"},
		{"bypass wins when last",
			"  - name: a\n    actions: {route: [scanner]}\n  - name: b\n    actions: {bypass: true}\n",
			msg{}, "bypass; matched a, b"},
		{"stop ends evaluation",
			"  - name: a\n    actions: {route: [scanner]}\n    stop: true\n  - name: b\n    actions: {route: [archive]}\n",
			msg{}, "route scanner; matched a"},
		{"stop only when matched",
			"  - name: a\n    when: {header_exists: [X-None]}\n    actions: {route: [scanner]}\n    stop: true\n  - name: b\n    actions: {route: [archive]}\n",
			msg{}, "route archive; matched b"},
		{"stop without action keeps the default route",
			"  - name: a\n    stop: true\n  - name: b\n    actions: {route: [archive]}\n",
			msg{}, "route signature; matched a"},
		{"priority before file order",
			"  - name: a\n    priority: 20\n    actions: {route: [scanner]}\n  - name: b\n    priority: 10\n    actions: {route: [archive]}\n",
			msg{}, "route scanner; matched b, a"},
		{"equal priority keeps file order",
			"  - name: a\n    priority: 5\n    actions: {route: [scanner]}\n  - name: b\n    priority: 5\n    actions: {route: [archive]}\n",
			msg{}, "route archive; matched a, b"},
		{"default priorities follow position",
			"  - name: a\n    actions: {route: [scanner]}\n  - name: b\n    actions: {route: [archive]}\n  - name: c\n    priority: 15\n    actions: {route: [signature]}\n",
			msg{}, "route archive; matched a, c, b"},
		{"reject ends at once",
			"  - name: a\n    actions: {set_header: [{name: X-A, value: \"1\"}]}\n  - name: b\n    actions: {reject: {}}\n  - name: c\n    actions: {bypass: true}\n",
			msg{}, "reject 550 5.7.1 Message rejected by policy; matched a, b"},
		{"tempfail with own reply",
			"  - name: a\n    actions: {tempfail: {code: 452, enhanced: 4.3.1, text: \"Try again later\"}}\n",
			msg{}, "tempfail 452 4.3.1 Try again later; matched a"},
		{"reject after stop not reached",
			"  - name: a\n    actions: {bypass: true}\n    stop: true\n  - name: b\n    actions: {reject: {}}\n",
			msg{}, "bypass; matched a"},
		{"header actions accumulate",
			"  - name: a\n    actions: {set_header: [{name: X-A, value: \"1\"}], remove_header: [X-Old]}\n" +
				"  - name: b\n    actions: {set_header: [{name: X-B, value: \"2\"}], route: [scanner]}\n",
			msg{}, "route scanner; set X-A: 1; set X-B: 2; remove X-Old; matched a, b"},
		{"later set_header replaces",
			"  - name: a\n    actions: {set_header: [{name: X-A, value: \"1\"}]}\n  - name: b\n    actions: {set_header: [{name: x-a, value: \"2\"}]}\n",
			msg{}, "route signature; set x-a: 2; matched a, b"},
		{"later remove_header cancels set_header",
			"  - name: a\n    actions: {set_header: [{name: X-A, value: \"1\"}, {name: X-B, value: \"2\"}]}\n  - name: b\n    actions: {remove_header: [x-a]}\n",
			msg{}, "route signature; set X-B: 2; remove x-a; matched a, b"},
		{"header actions of non-matching rules ignored",
			"  - name: a\n    when: {header_exists: [X-None]}\n    actions: {set_header: [{name: X-A, value: \"1\"}]}\n",
			msg{}, "route signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base + tt.rules
			if tt.rules == "" {
				src = org + noDefaults + "default_route: [signature]\n"
			}
			e := compile(t, src)
			if got := e.Decide(tt.msg.message(t)).String(); got != tt.want {
				t.Errorf("decision %q, want %q", got, tt.want)
			}
		})
	}

	e := compile(t, "default_route: []\n")
	if d := e.Decide(msg{}.message(t)); d.Action != Bypass || d.Route != nil || d.Final {
		t.Errorf("default_route [] decision = %s, want bypass (not final)", d)
	}
}

// TestDecisionIsCopy checks that a caller changing a Decision cannot change
// the engine's later decisions.
func TestDecisionIsCopy(t *testing.T) {
	e := compile(t, "default_route: [signature]\nrules:\n  - name: a\n    actions: {route: [scanner, archive], set_header: [{name: X-A, value: \"1\"}]}\n")
	d := e.Decide(msg{}.message(t))
	d.Route[0] = "evil"
	d.SetHeaders[0].Raw[0] = 'Y'
	d2 := e.Decide(msg{}.message(t))
	if d2.Route[0] != "scanner" || !bytes.Equal(d2.SetHeaders[0].Raw, []byte("X-A: 1\r\n")) {
		t.Errorf("second decision %s was changed through the first", d2)
	}
}

func TestDefaultsSwitchable(t *testing.T) {
	recall := msg{fields: []string{"X-MS-Exchange-RecallReportGenerated: true"}}
	report := msg{fields: []string{"X-MS-Exchange-Generated-Message-Source: Transport Message Recall Routing Agent"}}
	loop := msg{fields: []string{"X-RecallRelay-Loop: 1"}}
	vendor := msg{fields: []string{"X-ExclaimerHostedSignatures-MessageProcessed: true"}}
	null := msg{from: "<>"}
	calendar := msg{fields: []string{"Content-Type: text/calendar; method=REQUEST"}}
	// A user rule that would reject everything: the defaults still win.
	rejectAll := "rules:\n  - name: reject-all\n    actions: {reject: {}}\n"
	tests := []struct {
		name    string
		key     string
		builtin string
		msg     msg
	}{
		{"recall request", "recall_bypass", "builtin:recall-bypass", recall},
		{"recall report", "recall_bypass", "builtin:recall-bypass", report},
		{"loop marker", "loop_protection", "builtin:loop-protection", loop},
		{"vendor marker", "loop_protection", "builtin:loop-protection", vendor},
		{"null sender", "null_sender_bypass", "builtin:null-sender-bypass", null},
		{"calendar", "calendar_bypass", "builtin:calendar-bypass", calendar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			on := compile(t, "default_route: [signature]\n"+rejectAll)
			d := on.Decide(tt.msg.message(t))
			if d.Action != Bypass || !d.Final || !slices.Equal(d.Matched, []string{tt.builtin}) || len(d.SetHeaders) > 0 {
				t.Errorf("default on: decision %s, want a final bypass by %s", d, tt.builtin)
			}
			off := compile(t, "defaults: {"+tt.key+": false}\ndefault_route: [signature]\n"+rejectAll)
			if d := off.Decide(tt.msg.message(t)); d.Action != Reject || d.Final {
				t.Errorf("default off: decision %s, want the user rule's reject", d)
			}
		})
	}

	// vendor_markers replaces the default list; the loop marker stays.
	e := compile(t, "defaults: {vendor_markers: [X-Acme-Done, \"X-Acme{2}\"]}\ndefault_route: [signature]\n")
	for _, tt := range []struct {
		field  string
		bypass bool
	}{{"X-Acme-Done: yes", true}, {"x-acme{2}: yes", true}, {"X-CodeTwoProcessed: true", false}, {"X-RecallRelay-Loop: 1", true}} {
		if d := e.Decide(msg{fields: []string{tt.field}}.message(t)); (d.Action == Bypass) != tt.bypass {
			t.Errorf("vendor_markers [X-Acme-Done], %s: decision %s", tt.field, d)
		}
	}
	// Without any marker, loop protection has nothing to look for.
	s, err := Parse([]byte("defaults: {vendor_markers: []}\ndefault_route: [signature]\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	e, err = s.Compile(CompileOptions{Vendors: []string{"signature"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(msg{fields: []string{"X-CodeTwoProcessed: true"}}.message(t)); d.Action != Route {
		t.Errorf("no markers: decision %s, want route", d)
	}
}

func TestDefaultSet(t *testing.T) {
	e, err := Default("signature").Compile(CompileOptions{Vendors: []string{"signature"}, LoopMarker: "X-RecallRelay-Loop"})
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(msg{}.message(t)); d.String() != "route signature" {
		t.Errorf("ordinary message: %s", d)
	}
	for _, m := range []msg{{from: "<>"}, {fields: []string{"X-RecallRelay-Loop: 1"}}, {fields: []string{"x-ms-exchange-recallreportgenerated: true"}},
		{fields: []string{"X-CodeTwoProcessed: true"}}, {fields: []string{"Content-Type: application/ics"}}} {
		if d := e.Decide(m.message(t)); d.Action != Bypass || !d.Final {
			t.Errorf("%+v: decision %s, want a final bypass", m, d)
		}
	}
}

func TestDecideEnvelope(t *testing.T) {
	envOnly := org + noDefaults + "default_route: [signature]\nrules:\n" +
		"  - name: external\n    when: {sender_in_organization: false}\n    actions: {reject: {}}\n" +
		"  - name: ceo\n    when: {sender: {addresses: [ceo@contoso.com]}}\n    actions: {route: [scanner]}\n"
	stopFirst := org + noDefaults + "default_route: [signature]\nrules:\n" +
		"  - name: internal\n    when: {sender_in_organization: true}\n    actions: {route: [scanner]}\n    stop: true\n" +
		"  - name: tagged\n    when: {header_exists: [X-Tag]}\n    actions: {route: [archive]}\n"
	tests := []struct {
		name     string
		src      string
		from     string
		rcpts    []string
		wantOK   bool
		wantDesc string
	}{
		{"defaults, null sender", "default_route: [signature]\n", "", nil, true, "bypass (final); matched builtin:null-sender-bypass"},
		{"defaults, ordinary sender", "default_route: [signature]\n", "a@contoso.com", nil, false, "route signature"},
		{"envelope-only rules", envOnly, "CEO@contoso.com", nil, true, "route scanner; matched ceo"},
		{"envelope-only rules, reject", envOnly, "a@fabrikam.com", nil, true, "reject 550 5.7.1 Message rejected by policy; matched external"},
		{"envelope-only rules, default", envOnly, "a@contoso.com", nil, true, "route signature"},
		{"stop before a header rule", stopFirst, "a@contoso.com", nil, true, "route scanner; matched internal"},
		{"header rule reached", stopFirst, "a@fabrikam.com", nil, false, "route signature"},
		{"header rule that cannot match",
			org + noDefaults + "default_route: [signature]\nrules:\n  - name: r\n    when: {sender_in_organization: true, header_exists: [X-A]}\n    actions: {bypass: true}\n",
			"a@fabrikam.com", nil, true, "route signature"},
		{"header rule that may match",
			org + noDefaults + "default_route: [signature]\nrules:\n  - name: r\n    when: {sender_in_organization: true, header_exists: [X-A]}\n    actions: {bypass: true}\n",
			"a@contoso.com", nil, false, "route signature"},
		{"size rule", noDefaults + "default_route: [signature]\nrules:\n  - name: big\n    when: {size_over: 1MB}\n    actions: {bypass: true}\n",
			"a@contoso.com", nil, false, "route signature"},
		{"header except", org + noDefaults + "default_route: [signature]\nrules:\n  - name: r\n    except: {header_exists: [X-A]}\n    actions: {bypass: true}\n",
			"a@contoso.com", nil, false, "route signature"},
		{"envelope except", org + noDefaults + "default_route: [signature]\nrules:\n  - name: r\n    except: {recipients_outside_organization: any, header_exists: [X-A]}\n    actions: {bypass: true}\n",
			"a@contoso.com", []string{"x@fabrikam.com"}, true, "route signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := compile(t, tt.src)
			rcpts := tt.rcpts
			if rcpts == nil {
				rcpts = []string{"b@contoso.com"}
			}
			d, ok := e.DecideEnvelope(tt.from, rcpts)
			if ok != tt.wantOK || d.String() != tt.wantDesc {
				t.Errorf("DecideEnvelope = %q, %v; want %q, %v", d, ok, tt.wantDesc, tt.wantOK)
			}
			if ok {
				// A decided envelope must not change once the message is known.
				full := e.Decide(&Message{From: tt.from, Rcpts: rcpts, Header: hdr(t, "X-A: 1", "X-Tag: 1"), Size: 5 << 20})
				if full.String() != d.String() {
					t.Errorf("Decide = %q after DecideEnvelope said final %q", full, d)
				}
			}
		})
	}
}

func TestNeedsBody(t *testing.T) {
	tests := []struct {
		name      string
		src       string // "" is Default("signature")
		needs     bool
		perHeader map[string]bool // header fields joined by " || " → NeedsBodyFor
	}{
		{"defaults", "", true, map[string]bool{
			"Content-Type: text/plain":                                                                                false,
			"Subject: no content type":                                                                                false,
			"Content-Type: multipart/mixed; boundary=b":                                                               true,
			"Content-Type: multipart/alternative; boundary=b":                                                         true,
			"Content-Type: application/ms-tnef":                                                                       true,
			"Content-Type: multipart/mixed; boundary=b || X-RecallRelay-Loop: 1":                                      false,
			"Content-Type: multipart/mixed; boundary=b || X-MS-Exchange-RecallReportGenerated: true":                  false,
			"Content-Type: multipart/mixed; boundary=b || X-MS-TrafficTypeDiagnostic: A:EE_|B:EE_LegacyOutlookRecall": false,
		}},
		{"header rules only", noDefaults + "default_route: [signature]\nrules:\n  - name: r\n    when: {header_exists: [X-A], predicate: [auto-generated, already-processed]}\n    actions: {bypass: true}\n",
			false, map[string]bool{"Content-Type: multipart/mixed; boundary=b": false}},
		{"attachment rule", noDefaults + "default_route: [signature]\nrules:\n  - name: r\n    when: {attachment_extension: [exe]}\n    actions: {reject: {}}\n",
			true, map[string]bool{
				"Content-Type: text/plain":                           false,
				"Content-Type: application/x-msdownload; name=a.exe": false,
				"Content-Type: multipart/mixed; boundary=b":          true,
			}},
		{"attachment rule behind a header condition", noDefaults + "default_route: [signature]\nrules:\n  - name: r\n    when: {header_exists: [X-Scan], attachment_extension: [exe]}\n    actions: {reject: {}}\n",
			true, map[string]bool{
				"Content-Type: multipart/mixed; boundary=b":                false,
				"Content-Type: multipart/mixed; boundary=b || X-Scan: yes": true,
			}},
		{"attachment rule in except", noDefaults + "default_route: [signature]\nrules:\n  - name: r\n    except: {attachment_content_type: [\"image/*\"]}\n    actions: {bypass: true}\n",
			true, map[string]bool{"Content-Type: multipart/related; boundary=b": true, "Content-Type: text/html": false}},
		{"after a stopping header rule", noDefaults + "default_route: [signature]\nrules:\n" +
			"  - name: s\n    when: {header_exists: [X-Done]}\n    actions: {bypass: true}\n    stop: true\n" +
			"  - name: r\n    when: {message_class: [IPM.Note]}\n    actions: {route: [scanner]}\n",
			true, map[string]bool{
				"Content-Type: multipart/mixed; boundary=b || X-Done: 1": false,
				"Content-Type: multipart/mixed; boundary=b":              true,
			}},
		{"after a matching header rule that does not stop", noDefaults + "default_route: [signature]\nrules:\n" +
			"  - name: s\n    when: {header_exists: [X-Done]}\n    actions: {route: [archive]}\n" +
			"  - name: r\n    when: {message_class: [IPM.Note]}\n    actions: {route: [scanner]}\n",
			true, map[string]bool{"Content-Type: multipart/mixed; boundary=b || X-Done: 1": true}},
		{"size rule", noDefaults + "default_route: [signature]\nrules:\n  - name: big\n    when: {size_over: 20MB}\n    actions: {bypass: true}\n",
			true, map[string]bool{"Content-Type: text/plain": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e *Engine
			if tt.src == "" {
				var err error
				if e, err = Default("signature").Compile(testVendors); err != nil {
					t.Fatal(err)
				}
			} else {
				e = compile(t, tt.src)
			}
			if got := e.NeedsBody(); got != tt.needs {
				t.Errorf("NeedsBody() = %v, want %v", got, tt.needs)
			}
			for fields, want := range tt.perHeader {
				if got := e.NeedsBodyFor(hdr(t, strings.Split(fields, " || ")...)); got != want {
					t.Errorf("NeedsBodyFor(%q) = %v, want %v", fields, got, want)
				}
			}
		})
	}
}
