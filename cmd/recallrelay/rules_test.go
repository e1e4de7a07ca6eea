package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const corpusDir = "../../../shared/corpus/exchange"

// exampleEnvKey sets the secret the example configuration reads.
func exampleEnvKey(t *testing.T) {
	t.Setenv("RECALLRELAY_REF_SECRET_K1", "base64:"+strings.Repeat("QUFB", 11))
}

func TestRulesCheck(t *testing.T) {
	exampleEnvKey(t)
	bad := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(bad, []byte("default_route: [signatures]\nrules:\n  - name: sign\n    when:\n      header_matches: {header: Subject, patterns: ['[a']}\n    actions:\n      route: [nosuch]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		want  []string // substrings of stdout, or of the error
		fails bool
		usage bool
	}{
		{"example against the example configuration",
			[]string{"check", "--config", "../../deploy/recallrelay.example.yaml", "--rules", "../../deploy/rules.example.yaml"},
			[]string{"deploy/rules.example.yaml: valid", "4 rules (internal-only, keep-crypto-intact, legal-sign-and-scan, no-executables)"}, false, false},
		{"configuration without rules_file: the defaults",
			[]string{"check", "--config", "../../deploy/recallrelay.example.yaml"},
			[]string{"default rules: valid", "built-in defaults null-sender-bypass, loop-protection, recall-bypass, calendar-bypass; no rules; otherwise route signatures"}, false, false},
		{"without configuration, vendors listed",
			[]string{"check", "--rules", "../../deploy/rules.example.yaml", "--vendors", "signatures,scanner"},
			[]string{"valid"}, false, false},
		{"without configuration, a vendor missing",
			[]string{"check", "--rules", "../../deploy/rules.example.yaml", "--vendors", "signatures"},
			[]string{`rule "legal-sign-and-scan": actions.route[1]: unknown vendor "scanner" (vendors: signatures) (line 64)`}, true, false},
		{"a broken file: every problem with rule, field and line",
			[]string{"check", "--config", "../../deploy/recallrelay.example.yaml", "--rules", bad},
			[]string{`rules_file: ` + bad + `: rule "sign": when.header_matches.patterns[0]: `, "missing closing ]", "(line 5)"}, true, false},
		{"neither configuration nor vendors", []string{"check", "--rules", bad}, []string{"--vendors"}, true, true},
		{"unknown subcommand", []string{"frobnicate"}, []string{"unknown rules command"}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := cmdRules(tt.args, &out)
			got := out.String()
			if err != nil {
				got = err.Error()
			}
			if (err != nil) != tt.fails {
				t.Fatalf("err = %v, want failure %v\n%s", err, tt.fails, out.String())
			}
			var ue usageError
			if errors.As(err, &ue) != tt.usage {
				t.Errorf("usage error = %v, want %v (%v)", !tt.usage, tt.usage, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestRulesExplain(t *testing.T) {
	exampleEnvKey(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.eml")
	if err := os.WriteFile(plain, []byte("From: Ann <ann@legal.contoso.com>\nTo: bob@fabrikam.example\nSubject: contract\nMessage-ID: <1@contoso.com>\n\nhello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"explain", "--config", "../../deploy/recallrelay.example.yaml", "--rules", "../../deploy/rules.example.yaml"}
	explain := func(t *testing.T, extra ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := cmdRules(append(append([]string{}, args...), extra...), &out); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}

	// The envelope comes from the header: a legal sender writing outside.
	got := explain(t, plain)
	for _, w := range []string{
		"envelope: MAIL FROM:<ann@legal.contoso.com> RCPT TO:<bob@fabrikam.example>",
		`rule "legal-sign-and-scan" (priority 30): MATCH`,
		`rule "internal-only" (priority 10): no match`,
		"decision: route signatures → scanner; set X-Contoso-Policy: legal; matched legal-sign-and-scan",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("explain lacks %q:\n%s", w, got)
		}
	}
	// --from and --to replace it: inside the organization, to colleagues.
	got = explain(t, "--from", "ann@contoso.com", "--to", "carl@contoso.com", plain)
	if !strings.Contains(got, "decision: bypass; matched internal-only") {
		t.Errorf("internal mail:\n%s", got)
	}

	recall := filepath.Join(corpusDir, "001-recall-nxp-messagerecallemail-http.eml")
	if _, err := os.Stat(recall); err != nil {
		t.Skipf("shared corpus not present (%v): the real recall request is not explained", err)
	}
	got = explain(t, recall)
	if !strings.Contains(got, "builtin:recall-bypass: MATCH") || !strings.Contains(got, "decision: bypass (final); matched builtin:recall-bypass") {
		t.Errorf("recall request:\n%s", got)
	}

	var out bytes.Buffer
	var ue usageError
	if err := cmdRules(append(append([]string{}, args...), plain, plain), &out); !errors.As(err, &ue) {
		t.Errorf("two messages: err = %v, want a usage error", err)
	}
}
