package relaytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// corpusDir is where the real Exchange messages live, relative to this
// package (the repository root's ../shared).
var corpusDir = filepath.Join("..", "..", "shared", "corpus", "exchange")

// loadCorpus returns the corpus messages, skipping the test when the corpus
// is not available.
func loadCorpus(t testing.TB) []Message {
	t.Helper()
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("corpus not available at %s: %v", corpusDir, err)
	}
	msgs, err := LoadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) == 0 {
		t.Skipf("no .eml files in %s", corpusDir)
	}
	return msgs
}

// waitTimeout bounds every wait in the tests.
const waitTimeout = 20 * time.Second

func startTenant(t testing.TB, cfg TenantConfig) *Tenant {
	t.Helper()
	tn, err := NewTenant(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tn.Close(); err != nil {
			t.Errorf("close tenant: %v", err)
		}
	})
	return tn
}

func startVendor(t testing.TB, cfg VendorConfig) *Vendor {
	t.Helper()
	if cfg.Backoff == 0 {
		cfg.Backoff = 10 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	v, err := NewVendor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("close vendor: %v", err)
		}
	})
	return v
}

// fastSender returns a Sender with short backoffs for tests.
func fastSender(addr string) *Sender {
	return &Sender{Addr: addr, Backoff: 10 * time.Millisecond, Timeout: 10 * time.Second}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// selfSignedTLS returns a server and a matching client TLS configuration
// for 127.0.0.1.
func selfSignedTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tenant.relaytest.invalid"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client
}

// waitGoroutines waits until the number of goroutines drops to at most n.
func waitGoroutines(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines still running, want at most %d:\n%s", runtime.NumGoroutine(), n, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runtimeGoroutines() int { return runtime.NumGoroutine() }
