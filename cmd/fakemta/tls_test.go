package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/relaytest"
)

// send --starttls speaks TLS to a server that requires it, verifying its
// certificate against --ca-file, as Exchange Online does towards a
// connector; without the right roots the attempt fails.
func TestSendSTARTTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "tenant.test"}, DNSNames: []string{"tenant.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	tn, err := relaytest.NewTenant(relaytest.TenantConfig{Listen: "127.0.0.1:0", RequireTLS: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}})
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
	if code, _, stderr := runApp(t, ctx, "send", "--to", tn.Addr(), "--generate", "--ca-file", caFile); code != exitUsage || !strings.Contains(stderr, "need --starttls") {
		t.Errorf("--ca-file without --starttls: exit %d %s", code, stderr)
	}
}
