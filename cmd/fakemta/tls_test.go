package main

import (
	"context"
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
	tn, err := relaytest.NewTenant(relaytest.TenantConfig{Listen: "127.0.0.1:0", RequireTLS: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(); err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	code, _, stderr := runApp(t, ctx, "send", "--to", tn.Addr(), "--generate", "--starttls", "--ca-file", caFile, "--tls-server-name", "tenant.test")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if ds := tn.Deliveries(); len(ds) == 0 || !ds[0].TLS {
		t.Fatalf("deliveries %d, first over TLS: %v", len(ds), len(ds) > 0 && ds[0].TLS)
	}
	before := len(tn.Deliveries())
	code, _, _ = runApp(t, ctx, "send", "--to", tn.Addr(), "--generate", "--starttls", "--attempts", "1", "--tls-server-name", "tenant.test")
	if code != exitFailure || len(tn.Deliveries()) != before {
		t.Errorf("an untrusted certificate: exit %d, %d new deliveries", code, len(tn.Deliveries())-before)
	}
	if code, _, stderr := runApp(t, ctx, "send", "--to", tn.Addr(), "--generate", "--ca-file", caFile); code != exitUsage || !strings.Contains(stderr, "--ca-file needs --starttls") {
		t.Errorf("--ca-file without --starttls: exit %d %s", code, stderr)
	}
}
