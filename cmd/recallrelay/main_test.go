package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/config"
)

func TestCheck(t *testing.T) {
	example := filepath.Join("..", "..", "deploy", "recallrelay.example.yaml")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listeners:\n  tenant:\n    listen: 127.0.0.1:2525\n    max_mesage_size: 1MB\n"), 0o600)
	// configFile writes a configuration whose listeners have the given
	// YAML flow-mapping contents, and extra top-level lines.
	configFile := func(name, tenant, ret, extra string) string {
		p := filepath.Join(t.TempDir(), name)
		os.WriteFile(p, []byte(`listeners:
  tenant: {`+tenant+`}
  return: {`+ret+`}
vendors:
  - {name: sig, address: "127.0.0.1:10025"}
tenant: {address: "127.0.0.1:10026"}
reference:
  keys:
    - {id: k1, secret: "0123456789abcdef0123456789abcdef"}
`+extra), 0o600)
		return p
	}
	openReturn := configFile("open-return.yaml", `listen: "127.0.0.1:2525"`, `listen: "0.0.0.0:2526"`, "")
	openTenant := configFile("open-tenant.yaml", `listen: ":25"`, `listen: "127.0.0.1:2526"`, "")
	optedIn := configFile("opted-in.yaml", `listen: "127.0.0.1:2525"`, `listen: "0.0.0.0:2526", insecure_open: true`, "")
	anyFallback := configFile("any.yaml", `listen: "127.0.0.1:2525"`, `listen: "[::]:2526", allow_nets: [192.0.2.0/24]`, "fallback_matching: any\n")
	restricted := configFile("restricted.yaml", `listen: "0.0.0.0:25", allow_nets: [40.92.0.0/15]`, `listen: "0.0.0.0:2526", allow_nets: [192.0.2.0/24]`, "")

	tests := []struct {
		name     string
		args     []string
		env      string
		wantCode int
		wantOut  string
		wantErr  string
		notOut   string // stdout must not contain it, when set
	}{
		{"example with key from env", []string{"check", "--config", example}, "base64:" + strings.Repeat("QUFB", 11), 0, example + ": valid\n", "", "WARNING"},
		{"rules explained", []string{"check", "--config", example}, "base64:" + strings.Repeat("QUFB", 11), 0, "\nrules: default rules: built-in defaults null-sender-bypass, loop-protection, recall-bypass, calendar-bypass; no rules; otherwise route signatures\n", "", ""},
		{"open return leg", []string{"check", "--config", openReturn}, "", 1, "", "listeners.return.allow_nets: open listener: 0.0.0.0:2526 is reachable from other hosts, and neither allow_nets nor client authentication restricts who connects, so anyone can send mail that the relay reinjects into the tenant and, by fallback matching, restore a recorded message's internal headers onto other content; set allow_nets to your vendors' sending addresses, require client certificates (tls.client_cert_names) or SMTP AUTH (auth.users_file), or set insecure_open: true to accept the risk (line 3)", ""},
		{"open tenant leg", []string{"check", "--config", openTenant}, "", 1, "", "listeners.tenant.allow_nets: open listener: :25 is reachable from other hosts, and neither allow_nets nor client authentication restricts who connects, so anyone can send mail with forged X-MS-Exchange-CrossPremises fields straight to the tenant through the bypass path; set allow_nets to Exchange Online's outbound IP ranges, require client certificates (tls.client_cert_names), or set insecure_open: true to accept the risk (line 2)", ""},
		{"insecure_open warns", []string{"check", "--config", optedIn}, "", 0, "WARNING: listeners.return.insecure_open: open listener: 0.0.0.0:2526 is reachable from other hosts, and neither allow_nets nor client authentication restricts who connects, so anyone can send mail that the relay reinjects into the tenant and, by fallback matching, restore a recorded message's internal headers onto other content (accepted by insecure_open: true) (line 3)\n", "", ""},
		{"insecure_open counted", []string{"check", "--config", optedIn}, "", 0, optedIn + ": valid, with 1 warning\n", "", ""},
		{"fallback any warns", []string{"check", "--config", anyFallback}, "", 0, "WARNING: fallback_matching: any: every client of the return listener may be matched without the signed reference", "", ""},
		{"restricted listeners", []string{"check", "--config", restricted}, "", 0, restricted + ": valid\n", "", "WARNING"},
		{"example without key", []string{"check", "--config", example}, "", 1, "", "reference.keys[0].secret_env: environment variable RECALLRELAY_REF_SECRET_K1 is not set", ""},
		{"unknown key with line", []string{"check", "--config", bad}, "", 1, "", "listeners.tenant.max_mesage_size", ""},
		{"missing file", []string{"check", "--config", "/nonexistent.yaml"}, "", 1, "", "no such file", ""},
		{"missing flag", []string{"check"}, "", 2, "", "--config FILE is required", ""},
		{"unknown command", []string{"frobnicate"}, "", 2, "", `unknown command "frobnicate"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("RECALLRELAY_REF_SECRET_K1", tt.env)
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errb.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantOut, out.String())
			}
			if !strings.Contains(errb.String(), tt.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantErr, errb.String())
			}
			if tt.notOut != "" && strings.Contains(out.String(), tt.notOut) {
				t.Errorf("stdout has %q:\n%s", tt.notOut, out.String())
			}
			if tt.env != "" && strings.Contains(out.String()+errb.String(), tt.env) {
				t.Error("the key secret was printed")
			}
		})
	}
}

// The demo is the README's first command: it must run the whole loop on the
// built-in defaults and report every message intact.
func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"demo"}, &out, &errb); code != 0 {
		t.Fatalf("demo exited %d:\n%s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "12 messages, 12 delivered intact") {
		t.Errorf("demo output:\n%s", out.String())
	}
	// A vendor that does nothing leaves nothing to restore, and the demo
	// says so rather than claiming repairs.
	out.Reset()
	if code := run([]string{"demo", "--behaviors", "passthrough"}, &out, &errb); code != 0 {
		t.Fatalf("passthrough demo exited %d:\n%s", code, errb.String())
	}
	if !strings.Contains(out.String(), "0 fields restored") {
		t.Errorf("passthrough demo output:\n%s", out.String())
	}
	if code := run([]string{"demo", "--behaviors", "no-such-behaviour"}, &out, &errb); code != 2 {
		t.Errorf("unknown behaviour: exit %d", code)
	}
}

// TestLogWarnings checks that serve logs each warning of the configuration
// with its field and line.
func TestLogWarnings(t *testing.T) {
	cfg, err := config.Parse([]byte(`listeners:
  tenant: {listen: "127.0.0.1:2525"}
  return: {listen: "0.0.0.0:2526", insecure_open: true}
fallback_matching: any
`), "w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logWarnings(zerolog.New(&buf), cfg)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`{"level":"warn","field":"listeners.return.insecure_open","line":3,"message":"open listener: 0.0.0.0:2526 is reachable from other hosts`,
		`{"level":"warn","field":"fallback_matching","line":4,"message":"any: every client of the return listener`,
	}
	if len(lines) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %s\nwant prefix %s", i, lines[i], w)
		}
	}
}

// Every command's --help prints its flags and exits 0; a bad flag exits 2
// with the flags too.
func TestCommandHelp(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"check"}, {"demo"}, {"conformance"}, {"rules", "check"}, {"rules", "explain"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(append(args, "--help"), &out, &errOut); code != 0 || !strings.Contains(out.String(), "Usage of recallrelay") || !strings.Contains(out.String(), "  -") {
				t.Errorf("--help: exit %d\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
			}
			out.Reset()
			errOut.Reset()
			if code := run(append(args, "--no-such-flag"), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "  -") {
				t.Errorf("bad flag: exit %d\nstderr: %s", code, errOut.String())
			}
		})
	}
}
