package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/headers"
)

// checkRules parses src and compiles it as `recallrelay rules check` does
// for a relay with the default loop marker and reference header, and
// returns the problems found by either.
func checkRules(t *testing.T, src string, opts CompileOptions) []Problem {
	t.Helper()
	s, err := Parse([]byte(src), "rules.yaml")
	if err == nil {
		_, err = s.Compile(opts)
	}
	if err == nil {
		return nil
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %T %v is not an *Error", err, err)
	}
	return pe.Problems
}

// relayNames are the names of a relay on its defaults.
var relayNames = CompileOptions{Vendors: []string{"signature"}, LoopMarker: "X-RecallRelay-Processed"}

// TestHeaderActionsRefuseProtected checks that set_header and remove_header
// refuse patterns and every field recall, the round trip, the MIME
// structure and the relay depend on, under any case, each at its path.
func TestHeaderActionsRefuseProtected(t *testing.T) {
	const (
		pattern  = "header actions take exact field names, not patterns"
		recall   = "the round trip and recall depend on it"
		mime     = "it describes the MIME structure of the body"
		restamp  = "Exchange strips and re-stamps it when the message comes back"
		loop     = "is the relay's loop marker"
		refField = "is the relay's reference header"
	)
	tests := []struct {
		name string
		want string // in the message, after the quoted or plain name
	}{
		{"X-MS-Exchange-*", pattern},
		{"Message-*", pattern},
		{"MESSAGE-*", pattern},
		{"X-OrganizationHeaders*", pattern},
		{"X-RecallRelay-*", pattern},
		{"*", pattern},
		{"X-MS-Exchange-CrossPremises-*", pattern},
		{"X-*-Policy", pattern},
		{"X-Contoso-*", pattern},
		{"Message-ID", recall},
		{"message-id", recall},
		{"MESSAGE-ID", recall},
		{"X-MS-Exchange-CrossPremises-AuthAs", recall},
		{"x-ms-exchange-crosspremises-authas", recall},
		{"X-MS-Exchange-Organization-AuthAs", recall},
		{"x-ms-exchange-organization-scl", recall},
		{"X-OrganizationHeadersPreserved", recall},
		{"X-MS-TNEF-Correlator", recall},
		{"x-ms-has-attach", recall},
		{"Thread-Index", recall},
		{"thread-topic", recall},
		{"X-MS-Exchange-RecallReportGenerated", recall},
		{"X-MS-Exchange-Generated-Message-Source", recall},
		{"X-MS-Exchange-SenderADCheck", recall},
		{"Content-Type", mime},
		{"content-transfer-encoding", mime},
		{"MIME-Version", mime},
		{"X-MS-Exchange-CrossTenant-Id", restamp},
		{"x-ms-exchange-crosstenant-authas", restamp},
		{"X-MS-Exchange-Transport-CrossTenantHeadersStamped", restamp},
		{"X-OriginatorOrg", restamp},
		{"x-originatororg", restamp},
		{"X-RecallRelay-Processed", loop},
		{"x-recallrelay-processed", loop},
		{"X-RecallRelay-Ref", refField},
		{"X-RECALLRELAY-REF", refField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, action := range []struct {
				line, path string
			}{
				{`    actions: {remove_header: ["` + tt.name + `"]}`, "actions.remove_header[0]"},
				{`    actions: {set_header: [{name: "` + tt.name + `", value: "1"}]}`, "actions.set_header[0].name"},
			} {
				probs := checkRules(t, rule1(action.line), relayNames)
				if len(probs) != 1 {
					t.Fatalf("%s: %d problems %v, want one", action.line, len(probs), probs)
				}
				p := probs[0]
				if p.Rule != "r" || p.Path != action.path || p.Line != 4 || !strings.Contains(p.Msg, tt.want) {
					t.Errorf("%s: problem %+v, want rule r, path %s, line 4, message containing %q", action.line, p, action.path, tt.want)
				}
				if tt.want == pattern && p.Msg != `"`+tt.name+`": `+pattern {
					t.Errorf("%s: message %q, want %q", action.line, p.Msg, `"`+tt.name+`": `+pattern)
				}
			}
		})
	}
}

// TestHeaderActionsAllowed checks that ordinary fields can be set and
// removed, and that the reference header protected is the configured one.
func TestHeaderActionsAllowed(t *testing.T) {
	src := rule1(`    actions:`, `      set_header: [{name: X-Contoso-Policy, value: legal}]`, `      remove_header: [X-Contoso-Old, x-contoso-policy-v1]`)
	if probs := checkRules(t, src, relayNames); len(probs) != 0 {
		t.Fatalf("X-Contoso-Policy refused: %v", probs)
	}
	e := compile(t, src)
	d := e.Decide(msg{}.message(t))
	if d.String() != "route signature; set X-Contoso-Policy: legal; remove X-Contoso-Old; remove x-contoso-policy-v1; matched r" {
		t.Errorf("decision %s", d)
	}

	// A relay with its own reference header name: that name is protected,
	// the default one is an ordinary field.
	custom := CompileOptions{Vendors: []string{"signature"}, LoopMarker: "X-Contoso-Loop", RefHeader: "X-Contoso-Ref"}
	probs := checkRules(t, rule1(`    actions: {remove_header: [x-contoso-ref, x-contoso-loop, X-RecallRelay-Ref]}`), custom)
	var got []string
	for _, p := range probs {
		got = append(got, p.Path+": "+p.Msg)
	}
	want := []string{
		"actions.remove_header[0]: x-contoso-ref is the relay's reference header; rules cannot remove it",
		"actions.remove_header[1]: x-contoso-loop is the relay's loop marker; rules cannot remove it",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := Default("signature").Compile(CompileOptions{Vendors: []string{"signature"}, RefHeader: "X Ref"}); err == nil ||
		!strings.Contains(err.Error(), `reference header "X Ref"`) {
		t.Errorf("invalid reference header: %v", err)
	}
}

// TestProtected checks the run-time guard the relay applies to every
// header action.
func TestProtected(t *testing.T) {
	tests := []struct {
		name      string
		loop, ref string
		protected bool
	}{
		{"X-Contoso-Policy", "X-RecallRelay-Processed", "", false},
		{"X-RecallRelay-Processed", "", "", false}, // the relay stamps no loop marker
		{"X-RecallRelay-Processed", "X-RecallRelay-Processed", "", true},
		{"x-recallrelay-processed", "X-RecallRelay-Processed", "", true},
		{"X-RecallRelay-Ref", "", "", true}, // "" is headers.DefaultRefHeader
		{"x-recallrelay-ref", "", "X-RecallRelay-Ref", true},
		{"X-RecallRelay-Ref", "", "X-Contoso-Ref", false},
		{"X-CONTOSO-REF", "", "X-Contoso-Ref", true},
		{"X-MS-Exchange-*", "", "", true},
		{"Message-*", "", "", true},
		{"X-Contoso-*", "", "", true}, // any pattern: the relay must not take it for one
		{"*", "", "", true},
		{"", "", "", true},
		{"X Bad", "", "", true},
		{"message-id", "", "", true},
		{"X-MS-Exchange-CrossPremises-Whatever-Comes-Next", "", "", true},
		{"x-ms-exchange-organization-authas", "", "", true},
		{"X-OrganizationHeadersPreserved", "", "", true},
		{"Content-Disposition", "", "", true},
		{"mime-version", "", "", true},
		{"X-MS-Exchange-CrossTenant-Network-Message-Id", "", "", true},
		{"X-MS-Exchange-Transport-CrossTenantHeadersStamped", "", "", true},
		{"X-OriginatorOrg", "", "", true},
		{"X-MS-Exchange-Transport-Other", "", "", false},
		{"Contents", "", "", false},
	}
	for _, tt := range tests {
		if got := Protected(tt.name, tt.loop, tt.ref); got != tt.protected {
			t.Errorf("Protected(%q, %q, %q) = %v, want %v", tt.name, tt.loop, tt.ref, got, tt.protected)
		}
	}
	// Every field the return leg restores or firewalls, under any case; a
	// prefix with anything after it.
	for _, n := range append(append([]string{}, headers.DefaultRestore...), headers.Firewall...) {
		name := strings.Replace(n, "*", "Anything", 1)
		for _, v := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if !Protected(v, "", "") {
				t.Errorf("%s is not protected", v)
			}
		}
	}
}
