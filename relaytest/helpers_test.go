package relaytest

import (
	"context"
	"crypto/tls"
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

// startTenant, startVendor, fastSender and selfSignedTLS are the package's
// own shorthands for the exported test helpers.
func startTenant(t testing.TB, cfg TenantConfig) *Tenant { t.Helper(); return StartTenant(t, cfg) }

func startVendor(t testing.TB, cfg VendorConfig) *Vendor { t.Helper(); return StartVendor(t, cfg) }

// fastSender returns a Sender with short backoffs for tests. It keeps the
// default number of attempts, which some retry tests rely on.
func fastSender(addr string) *Sender {
	return &Sender{Addr: addr, Backoff: FastBackoff, Timeout: FastTimeout}
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
	return SelfSignedTLS(t)
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
