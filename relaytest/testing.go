package relaytest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/internal/testpki"
)

// Settings of NewTestSender and StartVendor: quick retries, and timeouts
// short enough that a service under test that hangs fails the test within
// seconds instead of minutes, yet long enough for loopback traffic on a
// loaded machine.
const (
	FastBackoff     = 10 * time.Millisecond
	FastTimeout     = 5 * time.Second
	FastMaxAttempts = 3
)

// StartTenant creates and starts a Tenant for the test tb and registers a
// cleanup that closes it, failing the test if Close fails. Any error
// creating or starting it ends the test (tb.Fatal).
func StartTenant(tb testing.TB, cfg TenantConfig) *Tenant {
	tb.Helper()
	t, err := NewTenant(cfg)
	if err != nil {
		tb.Fatalf("relaytest: StartTenant: %v", err)
	}
	if err := t.Start(); err != nil {
		tb.Fatalf("relaytest: StartTenant: %v", err)
	}
	tb.Cleanup(func() {
		if err := t.Close(); err != nil {
			tb.Errorf("relaytest: close tenant: %v", err)
		}
	})
	return t
}

// StartVendor creates and starts a Vendor for the test tb and registers a
// cleanup that closes it. Zero Backoff and Timeout become FastBackoff and
// FastTimeout (MaxAttempts keeps its default: retrying is often what a
// test exercises). Any error creating or starting it ends the test.
//
// The cleanup fails the test if Close fails, including when it drops
// messages still queued (*DroppedError): a test that ends before the
// vendor has sent everything back usually forgot to wait (WaitIdle). If
// the test has failed already, dropped messages are only logged. A test
// that closes the vendor early on purpose calls Close itself and checks
// the error; the cleanup's Close then has nothing more to report.
func StartVendor(tb testing.TB, cfg VendorConfig) *Vendor {
	tb.Helper()
	if cfg.Backoff == 0 {
		cfg.Backoff = FastBackoff
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = FastTimeout
	}
	v, err := NewVendor(cfg)
	if err != nil {
		tb.Fatalf("relaytest: StartVendor: %v", err)
	}
	if err := v.Start(); err != nil {
		tb.Fatalf("relaytest: StartVendor: %v", err)
	}
	tb.Cleanup(func() {
		err := v.Close()
		var dropped *DroppedError
		switch {
		case err == nil:
		case errors.As(err, &dropped) && tb.Failed():
			tb.Logf("relaytest: close vendor: %v", err)
		default:
			tb.Errorf("relaytest: close vendor: %v", err)
		}
	})
	return v
}

// NewTestSender returns a Sender to addr for tests: FastBackoff between
// FastMaxAttempts attempts and FastTimeout on connecting and on every read
// and write, so that a service that does not answer fails the test in
// about FastMaxAttempts × FastTimeout rather than the minutes the defaults
// allow. Its fields may be changed before use.
func NewTestSender(tb testing.TB, addr string) *Sender {
	tb.Helper()
	if addr == "" {
		tb.Fatal("relaytest: NewTestSender: empty address (server not started, or closed?)")
	}
	return &Sender{Addr: addr, MaxAttempts: FastMaxAttempts, Backoff: FastBackoff, Timeout: FastTimeout}
}

// SelfSignedTLS returns a matching server and client TLS configuration for
// the loopback interface: the server presents a fresh self-signed ECDSA
// certificate valid for 127.0.0.1, ::1 and localhost for an hour; the
// client trusts exactly that certificate and verifies it for the name
// 127.0.0.1, whatever address it dials. Give the server side to
// TenantConfig.TLSConfig or VendorConfig.TLSConfig, the client side to
// Sender.TLSConfig or VendorConfig.ReturnTLSConfig. Errors end the test.
func SelfSignedTLS(tb testing.TB) (server, client *tls.Config) {
	tb.Helper()
	cert, err := testpki.SelfSigned("relaytest.invalid", []string{"localhost"}, time.Hour)
	if err != nil {
		tb.Fatalf("relaytest: SelfSignedTLS: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client
}
