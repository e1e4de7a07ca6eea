package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/relaytest"
)

// check --connect pings the store and opens a session to every next hop,
// one line each, and fails when any could not be reached.
func TestCheckConnect(t *testing.T) {
	t.Parallel()
	hop := func() string {
		tn, err := relaytest.NewTenant(relaytest.TenantConfig{Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := tn.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tn.Close() })
		return tn.Addr()
	}
	vendor, tenant := hop(), hop()
	dir := t.TempDir()
	write := func(vendorAddr string) string {
		p := filepath.Join(dir, "c.yaml")
		cfg := fmt.Sprintf(`hostname: relay.connect.test
store: {data_dir: %q}
reference:
  keys: [{id: k1, secret: "0123456789abcdef0123456789abcdef"}]
listeners:
  tenant: {listen: "127.0.0.1:2525"}
  return: {listen: "127.0.0.1:2526"}
vendors:
  - {name: signatures, address: %q, starttls: "off"}
tenant: {address: %q, starttls: "off"}
`, filepath.Join(dir, "data"), vendorAddr, tenant)
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--connect", "--config", write(vendor)}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"store                    ok", "signatures " + vendor, "tenant " + tenant} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "FAILED") {
		t.Errorf("a connection failed:\n%s", out.String())
	}

	out.Reset()
	errOut.Reset()
	if code := run([]string{"check", "--connect", "--config", write("127.0.0.1:9")}, &out, &errOut); code != 1 ||
		!strings.Contains(out.String(), "signatures 127.0.0.1:9") || !strings.Contains(out.String(), "FAILED: 451 4.4.1") ||
		!strings.Contains(errOut.String(), "1 of 3 connections failed") {
		t.Errorf("unreachable vendor: exit %d\n%s%s", code, out.String(), errOut.String())
	}

	// check --production lists what the configuration lacks for production
	// (here TLS and the tenant's certificate); --strict makes that fail.
	out.Reset()
	errOut.Reset()
	if code := run([]string{"check", "--production", "--config", write(vendor)}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "production: 4 findings") || !strings.Contains(out.String(), "PRODUCTION: listeners.tenant.tls.cert_file: TLS is off") {
		t.Errorf("--production: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"check", "--production", "--strict", "--config", write(vendor)}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "4 production findings (--strict)") {
		t.Errorf("--production --strict: exit %d\n%s", code, errOut.String())
	}
	if code := run([]string{"check", "--strict", "--config", write(vendor)}, &out, &errOut); code != 2 {
		t.Errorf("--strict alone: exit %d, want 2", code)
	}
}
