package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/internal/testpki"
)

// exoTestConfig writes a relay configuration with the certificates the
// Exchange Online setup needs and returns its path.
func exoTestConfig(t *testing.T, hostname string) string {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "exo-setup test CA")
	cert := func(file, name string) string {
		path, _ := testpki.WritePair(t, dir, strings.TrimSuffix(file, ".pem"), ca.IssueNames(t, name))
		return path
	}
	yaml := `hostname: ` + hostname + `
listeners:
  tenant:
    listen: 0.0.0.0:25
    allow_nets: [40.92.0.0/15, 40.107.0.0/16, 52.100.0.0/14, 104.47.0.0/17, "2a01:111:f400::/48", "2a01:111:f403::/48"]
    tls: {cert_file: ` + cert("tenant.pem", "relay.contoso.com") + `, key_file: /nonexistent.key, require: true}
  return:
    listen: 0.0.0.0:2526
    allow_nets: [198.51.100.0/24]
    tls: {cert_file: ` + cert("return.pem", "relay-return.contoso.com") + `, key_file: /nonexistent.key, require: true}
vendors:
  - {name: signatures, address: "smtp.signatures.contoso.net:25"}
tenant:
  address: contoso-com.mail.protection.outlook.com:25
  starttls: required
  client_cert_file: ` + cert("client.pem", "relay.contoso.com") + `
  client_key_file: /nonexistent.key
`
	path := filepath.Join(dir, "recallrelay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExoSetup(t *testing.T) {
	cfg := exoTestConfig(t, "relay.contoso.com")
	placeholder := exoTestConfig(t, "relay.example.com")
	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  []string
		stderr  []string
		without []string // must not be in stdout
	}{
		{"help", []string{"--help"}, 0, []string{"Usage:", "recallrelay exo-setup --config FILE", "-topology"}, nil, nil},
		{"no config", nil, 2, nil, []string{"--config FILE is required"}, nil},
		{"bad topology", []string{"--config", cfg, "--topology", "hybrid"}, 2, nil, []string{`unknown topology "hybrid"`}, nil},
		{"unknown flag", []string{"--config", cfg, "--topolgy", "direct"}, 2, nil, []string{"flag provided but not defined: -topolgy"}, nil},
		{"direct setup", []string{"--config", cfg}, 0,
			[]string{"New-InboundConnector `", "-TlsSenderCertificateName 'relay.contoso.com'", "-SmartHosts 'relay.contoso.com'",
				"-TlsSettings DomainValidation", "-ExceptIfHeaderContainsMessageHeader 'X-RecallRelay-Processed'", "-RouteMessageOutboundConnector 'RecallRelay to relay'"},
			nil, []string{"Remove-", "relay return leg"}},
		{"removal", []string{"--config", cfg, "--remove"}, 0,
			[]string{"Remove-TransportRule `\n    -Identity 'RecallRelay route to relay' `\n    -Confirm:$false", "Remove-InboundConnector"}, nil, []string{"New-"}},
		{"checklist", []string{"--config", cfg, "--checklist"}, 0, []string{"verification checklist", "Get-MessageTraceV2", "Recall test"}, nil, []string{"New-"}},
		{"via-tenant", []string{"--config", cfg, "--topology", "via-tenant", "--return-host", "relay-return.contoso.com"}, 0,
			[]string{"-SmartHosts 'relay-return.contoso.com'", "-Name 'RecallRelay return X-CodeTwoProcessed'"}, nil, nil},
		{"via-tenant without return host", []string{"--config", cfg, "--topology", "via-tenant"}, 1, nil,
			[]string{"the Exchange Online setup needs:", "--return-host: required for the via-tenant topology"}, nil},
		{"vendor markers flag", []string{"--config", cfg, "--vendor-markers", "X-Acme-Signed, X-Other"}, 0,
			[]string{"-HeaderMatchesMessageHeader 'X-Acme-Signed'", "-HeaderMatchesMessageHeader 'X-Other'"}, nil, []string{"X-CodeTwoProcessed"}},
		{"placeholder hostname", []string{"--config", placeholder}, 1, nil,
			[]string{`hostname: "relay.example.com" is a placeholder`, "listeners.tenant.tls.cert_file: the certificate (names relay.contoso.com) does not cover relay.example.com"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"exo-setup"}, tt.args...), &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			for _, w := range tt.without {
				if strings.Contains(stdout.String(), w) {
					t.Errorf("stdout has %q", w)
				}
			}
		})
	}
}

func TestExoSetupOut(t *testing.T) {
	cfg := exoTestConfig(t, "relay.contoso.com")
	out := filepath.Join(t.TempDir(), "exo")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"exo-setup", "--config", cfg, "--remove", "--checklist", "--out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, f := range []string{"exo-remove-direct.ps1", "exo-checklist-direct.txt"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
		if !strings.Contains(stdout.String(), "wrote "+filepath.Join(out, f)) {
			t.Errorf("stdout does not name %s: %s", f, stdout.String())
		}
	}
	if _, err := os.Stat(filepath.Join(out, "exo-setup-direct.ps1")); err == nil {
		t.Error("the setup script was written though only --remove and --checklist were asked for")
	}
}

func TestUsageListsExoSetup(t *testing.T) {
	var stdout, stderr bytes.Buffer
	run([]string{"--help"}, &stdout, &stderr)
	if !strings.Contains(stdout.String(), "recallrelay exo-setup --config FILE") {
		t.Errorf("usage does not list exo-setup:\n%s", stdout.String())
	}
}
