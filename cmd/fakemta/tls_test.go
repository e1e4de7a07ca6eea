package main

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/internal/testpki"
	"github.com/recallrelay/recallrelay/relaytest"
)

// send --starttls speaks TLS to a server that requires it, verifying its
// certificate against --ca-file, as Exchange Online does towards a
// connector; without the right roots the attempt fails.
func TestSendSTARTTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	caFile := ca.WriteCA(t, dir)
	serverCert := ca.Issue(t, "tenant.test", x509.ExtKeyUsageServerAuth)
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{Listen: "127.0.0.1:0", RequireTLS: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}}})
	ctx := testContext(t, 30*time.Second)

	runOK(t, ctx, "send", "--to", tn.Addr(), "--generate", "--starttls", "--ca-file", caFile, "--tls-server-name", "tenant.test")
	if ds := tn.Deliveries(); len(ds) == 0 || !ds[0].TLS {
		t.Fatalf("deliveries %d, first over TLS: %v", len(ds), len(ds) > 0 && ds[0].TLS)
	}
	before := len(tn.Deliveries())
	code, _, _ := runApp(t, ctx, "send", "--to", tn.Addr(), "--generate", "--starttls", "--attempts", "1", "--tls-server-name", "tenant.test")
	if code != exitFailure || len(tn.Deliveries()) != before {
		t.Errorf("an untrusted certificate: exit %d, %d new deliveries", code, len(tn.Deliveries())-before)
	}
	if code, _, stderr := runApp(t, ctx, "send", "--to", tn.Addr(), "--generate", "--ca-file", caFile); code != exitUsage || !strings.Contains(stderr, "--ca-file needs --starttls") {
		t.Errorf("--ca-file without --starttls: exit %d %s", code, stderr)
	}
}

// tenant --tls-self-signed --require-tls takes mail only over STARTTLS;
// --tls-cert and --tls-key serve a certificate a client verifies with
// --ca-file.
func TestTenantTLS(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 60*time.Second)

	self := startServer(t, "tenant", "--tls-self-signed", "--require-tls")
	code, out, stderr := runApp(t, ctx, "send", "--to", self.addr, "--generate", "--kind", "plain", "--attempts", "1")
	if code != exitFailure || !strings.Contains(out, "SMTP error 530") {
		t.Errorf("without STARTTLS: exit %d\n%s%s", code, out, stderr)
	}
	code, _, stderr = runApp(t, ctx, "send", "--to", self.addr, "--generate", "--kind", "plain", "--starttls", "--attempts", "1")
	if code != exitFailure || strings.Contains(self.out.String(), "delivery from=") {
		t.Errorf("a self-signed certificate verified: exit %d %s", code, stderr)
	}
	code, _, stderr = runApp(t, ctx, "send", "--to", self.addr, "--generate", "--kind", "plain", "--starttls", "--insecure-skip-verify")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := self.out.String(); strings.Count(got, "delivery from=") != 1 || !strings.Contains(got, " tls\n") {
		t.Errorf("tenant output:\n%s", got)
	}

	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	caFile := ca.WriteCA(t, dir)
	certFile, keyFile := testpki.WritePair(t, dir, "tenant", ca.Issue(t, "tenant.test", x509.ExtKeyUsageServerAuth))
	files := startServer(t, "tenant", "--tls-cert", certFile, "--tls-key", keyFile, "--require-tls")
	code, _, stderr = runApp(t, ctx, "send", "--to", files.addr, "--generate", "--kind", "plain", "--starttls", "--ca-file", caFile, "--tls-server-name", "tenant.test")
	if code != exitOK || !strings.Contains(files.out.String(), " tls\n") {
		t.Errorf("exit %d: %s\n%s", code, stderr, files.out.String())
	}
}

// vendor --tls-self-signed offers STARTTLS; --return-starttls and
// --return-ca-file make it send back over verified TLS.
func TestVendorTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	caFile := ca.WriteCA(t, dir)
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{RequireTLS: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "tenant.test", x509.ExtKeyUsageServerAuth)}}})
	v := startServer(t, "vendor", "--return", tn.Addr(), "--tls-self-signed",
		"--return-starttls", "--return-ca-file", caFile, "--return-tls-server-name", "tenant.test")
	ctx := testContext(t, 60*time.Second)
	runOK(t, ctx, "send", "--to", v.addr, "--generate", "--kind", "plain", "--starttls", "--insecure-skip-verify")
	ds, err := tn.WaitDeliveries(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !ds[0].TLS {
		t.Error("sent back without TLS")
	}
}
