package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exampleFile is the rules file of the package documentation, every key
// used.
const exampleFile = `organization:
  accepted_domains: [contoso.com, contoso.onmicrosoft.com]
defaults:
  recall_bypass: true
  loop_protection: true
  null_sender_bypass: true
  calendar_bypass: true
  vendor_markers: [X-CodeTwoProcessed, X-ExclaimerHostedSignatures-MessageProcessed, X-ProcessedByTemplafy]
  scan_incomplete: bypass
default_route: [signature]
rules:
  - name: sign-external
    priority: 10
    when:
      header_exists: [X-Foo]
      header_contains: {header: X-Foo, words: [urgent, "two words"]}
      header_matches: {header: Subject, patterns: ["^\\[ext\\]"]}
      sender: {addresses: [a@x.com], domains: [x.com], patterns: [".*@sales\\..*"]}
      recipient: {addresses: [b@y.com], domains: [y.com], patterns: ["^ops-"]}
      sender_in_organization: true
      recipients_outside_organization: any
      subject_contains: [invoice]
      subject_matches: ["(?i)^re:"]
      size_over: 10MB
      attachment_extension: [pdf, .docx]
      attachment_content_type: [application/pdf, "image/*"]
      message_class: [IPM.Note, "IPM.Schedule.Meeting.*"]
      predicate: [recall-request, recall-report, auto-generated, calendar, encrypted-or-signed, already-processed]
    except:
      header_exists: [X-Skip]
    actions:
      route: [signature, scanner]
      set_header: [{name: X-Foo, value: bar}]
      remove_header: [X-Bar]
    stop: true
  - name: block
    actions:
      reject: {code: 550, enhanced: 5.7.1, text: "Blocked by policy"}
  - name: later
    actions:
      tempfail: {code: 451, enhanced: 4.7.1, text: "Try later"}
  - name: skip
    actions:
      bypass: true
`

func TestParseExample(t *testing.T) {
	s, err := Parse([]byte(exampleFile), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.rules) != 4 {
		t.Fatalf("%d rules, want 4", len(s.rules))
	}
	r := s.rules[0]
	if len(r.when) != 14 || len(r.except) != 1 {
		t.Errorf("sign-external: %d when and %d except conditions, want 14 and 1", len(r.when), len(r.except))
	}
	if got := strings.Join(r.act.route, ","); got != "signature,scanner" || !r.stop {
		t.Errorf("sign-external: route %q, stop %v", got, r.stop)
	}
	if p := s.rules[1].priority; p != 20 {
		t.Errorf("second rule's default priority = %d, want 20", p)
	}
	if _, err := s.Compile(CompileOptions{Vendors: []string{"signature", "scanner"}, LoopMarker: "X-RecallRelay-Loop"}); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, []byte(exampleFile), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Source() != path {
		t.Errorf("Source() = %q, want %q", s.Source(), path)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an error wrapping os.ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": default_route: required") {
		t.Errorf("Load(bad) = %v, want an error naming the file", err)
	}
}

// rule1 wraps the lines of one rule (indented by four spaces) into a file.
func rule1(lines ...string) string {
	return "default_route: [signature]\nrules:\n  - name: r\n" + strings.Join(lines, "\n") + "\n"
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"regexp", rule1(`    when:`, `      header_matches: {header: Subject, patterns: ["ok", "[a"]}`, `    actions: {bypass: true}`),
			"rules.yaml: rule \"r\": when.header_matches.patterns[1]: error parsing regexp: missing closing ]: `[a` (line 5)"},
		{"address pattern", rule1(`    except:`, `      sender: {patterns: ["a(b"]}`, `    actions: {bypass: true}`),
			"rules.yaml: rule \"r\": except.sender.patterns[0]: error parsing regexp: missing closing ): `a(b` (line 5)"},
		{"subject pattern", rule1(`    when: {subject_matches: ["x**"]}`, `    actions: {bypass: true}`),
			"rules.yaml: rule \"r\": when.subject_matches[0]: error parsing regexp: invalid nested repetition operator: `**` (line 4)"},
		{"unknown condition", rule1(`    when:`, `      header_exist: [X-Foo]`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.header_exist: unknown field; valid here: header_exists, header_contains, header_matches, sender, recipient, sender_in_organization, recipients_outside_organization, subject_contains, subject_matches, size_over, attachment_extension, attachment_content_type, message_class, predicate (line 5)`},
		{"unknown top-level key", "default_route: []\nrule: []\n",
			`rules.yaml: rule: unknown field; valid here: organization, defaults, default_route, rules (line 2)`},
		{"wrong type", rule1(`    priority: high`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": priority: must be an integer, not "high" (line 4)`},
		{"list for a string", rule1(`    when: {header_contains: {header: [a], words: [b]}}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.header_contains.header: must be a string, not a list (line 4)`},
		{"repeated key", rule1(`    stop: true`, `    stop: false`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": stop: set more than once (first on line 4) (line 5)`},
		{"no default route", "rules: []\n",
			`rules.yaml: default_route: required: the vendor chain of messages no rule routes, or [] to bypass every vendor`},
		{"null default route", "default_route:\n",
			`rules.yaml: default_route: must be a list of vendor names, or [] to bypass every vendor (line 1)`},
		{"duplicate vendor in chain", "default_route: [a, a]\n",
			`rules.yaml: default_route[1]: vendor "a" appears twice in the chain (line 1)`},
		{"rule without name", "default_route: []\nrules:\n  - priority: 3\n    actions: {bypass: true}\n",
			`rules.yaml: rules[0].name: required (line 3)`},
		{"reserved name", "default_route: []\nrules:\n  - name: \"builtin:x\"\n    actions: {bypass: true}\n",
			`rules.yaml: rules[0].name: names starting with "builtin:" are reserved for the built-in defaults (line 3)`},
		{"duplicate name", "default_route: []\nrules:\n  - name: a\n    actions: {bypass: true}\n  - name: a\n    actions: {bypass: true}\n",
			`rules.yaml: rule "a": name: rules[0] on line 3 has the same name; names must be unique (line 5)`},
		{"two routing actions", rule1(`    actions: {route: [x], bypass: true}`),
			`rules.yaml: rule "r": actions: at most one of route, bypass, reject and tempfail (line 4)`},
		{"no action", rule1(`    when: {header_exists: [X-A]}`),
			`rules.yaml: rule "r": actions: no action: give route, bypass, set_header, remove_header, reject or tempfail, or stop: true (line 3)`},
		{"empty route", rule1(`    actions: {route: []}`),
			`rules.yaml: rule "r": actions.route: must list at least one vendor (use bypass: true to skip every vendor) (line 4)`},
		{"reject not 5xx", rule1(`    actions: {reject: {code: 450}}`),
			`rules.yaml: rule "r": actions.reject.code: must be a 5xx SMTP reply code (500-559), not 450 (line 4)`},
		{"reject invalid code", rule1(`    actions: {reject: {code: 599}}`),
			`rules.yaml: rule "r": actions.reject.code: must be a 5xx SMTP reply code (500-559), not 599 (line 4)`},
		{"reject enhanced class", rule1(`    actions: {reject: {enhanced: 4.7.1}}`),
			`rules.yaml: rule "r": actions.reject.enhanced: 4.7.1 does not match a 5xx reply: must be 5.x.y (line 4)`},
		{"tempfail not 4xx", rule1(`    actions: {tempfail: {code: 550, enhanced: 5.7.1}}`),
			"rules.yaml: rule \"r\": actions.tempfail.code: must be a 4xx SMTP reply code (400-459), not 550 (line 4)\n" +
				`rules.yaml: rule "r": actions.tempfail.enhanced: 5.7.1 does not match a 4xx reply: must be 4.x.y (line 4)`},
		{"enhanced syntax", rule1(`    actions: {tempfail: {enhanced: "4.7"}}`),
			`rules.yaml: rule "r": actions.tempfail.enhanced: "4.7" is not an enhanced status code like 5.7.1 (line 4)`},
		{"reply text", rule1(`    actions: {reject: {text: "Zugriff verweigert, Grüße"}}`),
			`rules.yaml: rule "r": actions.reject.text: must be printable ASCII (byte 0xc3 at 22) (line 4)`},
		{"set_header CR LF", rule1(`    actions: {set_header: [{name: X-A, value: "a\r\nX-Evil: 1"}]}`),
			`rules.yaml: rule "r": actions.set_header[0]: field X-A: value contains CR, LF or NUL at 1 (line 4)`},
		{"set_header NUL", rule1(`    actions: {set_header: [{name: X-A, value: "a\0"}]}`),
			`rules.yaml: rule "r": actions.set_header[0]: field X-A: value contains CR, LF or NUL at 1 (line 4)`},
		{"set_header bad name", rule1(`    actions: {set_header: [{name: "X A", value: v}]}`),
			`rules.yaml: rule "r": actions.set_header[0]: field "X A": byte ' ' at 1 is not allowed in a field name (line 4)`},
		{"set_header protected", rule1(`    actions: {set_header: [{name: message-id, value: "<x@y>"}]}`),
			`rules.yaml: rule "r": actions.set_header[0].name: message-id cannot be set by a rule: the round trip and recall depend on it (line 4)`},
		{"remove_header protected", rule1(`    actions: {remove_header: [X-MS-Exchange-CrossPremises-AuthAs, Content-Type]}`),
			"rules.yaml: rule \"r\": actions.remove_header[0]: X-MS-Exchange-CrossPremises-AuthAs cannot be removed by a rule: the round trip and recall depend on it (line 4)\n" +
				`rules.yaml: rule "r": actions.remove_header[1]: Content-Type cannot be removed by a rule: it describes the MIME structure of the body (line 4)`},
		{"remove_header pattern", rule1(`    actions: {remove_header: ["X-MS-Exchange-*", X-Old]}`),
			`rules.yaml: rule "r": actions.remove_header[0]: "X-MS-Exchange-*": header actions take exact field names, not patterns (line 4)`},
		{"set_header pattern", rule1(`    actions: {set_header: [{name: "X-OrganizationHeaders*", value: x}]}`),
			`rules.yaml: rule "r": actions.set_header[0].name: "X-OrganizationHeaders*": header actions take exact field names, not patterns (line 4)`},
		{"header name", rule1(`    when: {header_exists: ["X:A"]}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.header_exists[0]: byte ':' at 1 is not allowed in a field name (line 4)`},
		{"missing header", rule1(`    when: {header_contains: {words: [a]}}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.header_contains.header: required (line 4)`},
		{"missing words", rule1(`    when: {header_contains: {header: X-A}}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.header_contains.words: required: list at least one value (line 4)`},
		{"empty word", rule1(`    when: {subject_contains: ["  "]}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.subject_contains[0]: empty word (line 4)`},
		{"empty list", rule1(`    when: {predicate: []}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.predicate: must list at least one value (leave the condition out to not use it) (line 4)`},
		{"null condition", rule1(`    when:`, `      sender:`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.sender: has no value (line 5)`},
		{"empty address condition", rule1(`    when: {recipient: {}}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.recipient: list at least one of addresses, domains and patterns (line 4)`},
		{"bad address", rule1(`    when: {sender: {addresses: [nobody]}}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.sender.addresses[0]: "nobody" is not an address like user@example.com (line 4)`},
		{"address as domain", rule1(`    when: {sender: {domains: [a@b.com]}}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.sender.domains[0]: "a@b.com" is an address, not a domain (line 4)`},
		{"organization needed", rule1(`    when: {sender_in_organization: true}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.sender_in_organization: needs organization.accepted_domains (line 4)`},
		{"recipients mode", "organization: {accepted_domains: [a.com]}\n" + rule1(`    when: {recipients_outside_organization: some}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.recipients_outside_organization: must be any, all or none, not "some" (line 5)`},
		{"size", rule1(`    when: {size_over: 1.5MB}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.size_over: invalid size "1.5MB": fractions are not allowed; use a smaller unit (1500kB, not 1.5MB) (line 4)`},
		{"size unit", rule1(`    when: {size_over: 10XB}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.size_over: invalid size "10XB": unknown unit "XB" (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB) (line 4)`},
		{"size too large", rule1(`    when: {size_over: 9000000TiB}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.size_over: invalid size "9000000TiB": too large (line 4)`},
		{"negative size", rule1(`    when: {size_over: -1}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.size_over: must not be negative (line 4)`},
		{"negative size with unit", rule1(`    when: {size_over: -5MB}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.size_over: must not be negative (line 4)`},
		{"size mapping", rule1(`    when: {size_over: {mb: 1}}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.size_over: must be a size like 10MB, 512KiB or 1048576 (line 4)`},
		{"extension", rule1(`    when: {attachment_extension: ["*.exe"]}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.attachment_extension[0]: "*.exe" is not a file name extension (like pdf, .docx or tar.gz) (line 4)`},
		{"content type", rule1(`    when: {attachment_content_type: [pdf]}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.attachment_content_type[0]: "pdf" is not a media type like application/pdf or image/* (line 4)`},
		{"message class", rule1(`    when: {message_class: ["IPM.*.Note"]}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.message_class[0]: "IPM.*.Note" is not a message class like IPM.Note, or a prefix like IPM.Schedule.Meeting.* (line 4)`},
		{"predicate", rule1(`    when: {predicate: [recall]}`, `    actions: {bypass: true}`),
			`rules.yaml: rule "r": when.predicate[0]: unknown predicate "recall"; known: recall-request, recall-report, auto-generated, calendar, encrypted-or-signed, already-processed (line 4)`},
		{"scan_incomplete", "default_route: []\ndefaults:\n  scan_incomplete: drop\n",
			`rules.yaml: defaults.scan_incomplete: must be bypass, reject or tempfail, not "drop" (line 3)`},
		{"vendor marker", "default_route: []\ndefaults:\n  vendor_markers: [ok, \"not ok\"]\n",
			`rules.yaml: defaults.vendor_markers[1]: byte ' ' at 3 is not allowed in a field name (line 3)`},
		{"accepted domain", "default_route: []\norganization: {accepted_domains: [contoso.com, \"*.contoso.com\", Contoso.com.]}\n",
			"rules.yaml: organization.accepted_domains[1]: \"*.contoso.com\" is not a domain name (line 2)\n" +
				`rules.yaml: organization.accepted_domains[2]: contoso.com is listed twice (line 2)`},
		{"syntax", "rules: [\n", `rules.yaml: invalid YAML: did not find expected node content (line 1)`},
		{"two documents", "default_route: []\n---\ndefault_route: []\n",
			`rules.yaml: more than one YAML document; a rules file holds exactly one (line 2)`},
		{"several problems", "default_route: []\nrules:\n  - name: one\n    when: {header_exists: [\"\"]}\n    actions: {bypass: true}\n  - name: two\n    actions: {reject: {code: 250}}\n",
			"rules.yaml: rule \"one\": when.header_exists[0]: empty field name (line 4)\n" +
				`rules.yaml: rule "two": actions.reject.code: must be a 5xx SMTP reply code (500-559), not 250 (line 7)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.src), "rules.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded (%d rules), want error %q", len(s.rules), tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Source != "rules.yaml" || len(pe.Problems) == 0 {
				t.Errorf("error %T is not an *Error with problems", err)
			}
		})
	}
}

// TestAliases checks that YAML anchors, aliases and merge keys work: the
// fields they set count as set.
func TestAliases(t *testing.T) {
	src := "default_route: &chain [signature, scanner]\n" +
		"x-actions: &acts\n  route: *chain\n" +
		"rules:\n" +
		"  - &base\n    name: a\n    actions: *acts\n" +
		"  - <<: *base\n    name: b\n" +
		"  - name: c\n    actions:\n      <<: *acts\n      set_header: [{name: X-A, value: \"1\"}]\n"
	_, err := Parse([]byte(src), "t")
	if err == nil || !strings.Contains(err.Error(), "x-actions: unknown field") {
		t.Fatalf("Parse = %v, want the unknown x-actions key reported", err)
	}
	src = "default_route: &chain [signature, scanner]\n" +
		"rules:\n" +
		"  - &base\n    name: a\n    actions: &acts\n      route: *chain\n" +
		"  - <<: *base\n    name: b\n" +
		"  - name: c\n    actions:\n      <<: *acts\n      set_header: [{name: X-A, value: \"1\"}]\n"
	s, err := Parse([]byte(src), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.rules) != 3 {
		t.Fatalf("%d rules", len(s.rules))
	}
	for _, r := range s.rules {
		if got := strings.Join(r.act.route, ","); got != "signature,scanner" {
			t.Errorf("rule %s: route %q, want the aliased chain", r.name, got)
		}
	}
	if len(s.rules[2].act.set) != 1 {
		t.Errorf("rule c: set_header lost next to a merge key")
	}
	// Exponential aliasing is refused, not expanded.
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for i, prev := 0, "a"; i < 8; i++ {
		name := string(rune('b' + i))
		bomb += name + ": &" + name + " [" + strings.Repeat("*"+prev+", ", 9) + "*" + prev + "]\n"
		prev = name
	}
	if _, err := Parse([]byte(bomb), "t"); err == nil {
		t.Fatal("alias bomb accepted")
	}
}

func TestProblemFields(t *testing.T) {
	_, err := Parse([]byte(rule1(`    when:`, `      header_matches: {header: Subject, patterns: ["[a"]}`, `    actions: {bypass: true}`)), "f.yaml")
	var p Problem
	if !errors.As(err, &p) {
		t.Fatalf("%v does not hold a Problem", err)
	}
	want := Problem{Rule: "r", Path: "when.header_matches.patterns[0]", Line: 5, Msg: "error parsing regexp: missing closing ]: `[a`"}
	if p != want {
		t.Errorf("problem = %+v, want %+v", p, want)
	}
}

func TestCompileErrors(t *testing.T) {
	src := "default_route: [signature, sig]\nrules:\n" +
		"  - name: scan\n    actions: {route: [signature, scaner]}\n" +
		"  - name: mark\n    actions:\n      set_header: [{name: x-recallrelay-loop, value: \"1\"}]\n      remove_header: [X-RecallRelay-Loop]\n"
	s, err := Parse([]byte(src), "rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Compile(CompileOptions{Vendors: []string{"signature", "scanner"}, LoopMarker: "X-RecallRelay-Loop"})
	want := "rules.yaml: default_route[1]: unknown vendor \"sig\" (vendors: signature, scanner) (line 1)\n" +
		"rules.yaml: rule \"scan\": actions.route[1]: unknown vendor \"scaner\" (vendors: signature, scanner) (line 4)\n" +
		"rules.yaml: rule \"mark\": actions.set_header[0].name: x-recallrelay-loop is the relay's loop marker; rules cannot set it (line 7)\n" +
		"rules.yaml: rule \"mark\": actions.remove_header[0]: X-RecallRelay-Loop is the relay's loop marker; rules cannot remove it (line 8)"
	if err == nil || err.Error() != want {
		t.Errorf("Compile error:\n got %v\nwant %s", err, want)
	}

	if _, err := Default("signature").Compile(CompileOptions{Vendors: []string{"scanner"}}); err == nil ||
		err.Error() != `default rules: default_route[0]: unknown vendor "signature" (vendors: scanner)` {
		t.Errorf("Default with an unknown vendor: %v", err)
	}
	if _, err := Default("signature").Compile(CompileOptions{Vendors: []string{"signature"}, LoopMarker: "X Loop"}); err == nil ||
		!strings.Contains(err.Error(), `loop marker "X Loop"`) {
		t.Errorf("invalid loop marker: %v", err)
	}
}
