package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/internal/testpki"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// The real binary, run as an administrator runs it: its admin listener
// answers /healthz, takes the relay out of rotation on /readyz while its
// Redis is down and back in when Redis returns, and /metrics counts the
// messages that went round the loop.
func TestOperations(t *testing.T) {
	t.Parallel()
	bin := buildRelay(t)
	redis := storetest.StartRedisServer(t)
	tenant := startTenant(t)
	tenantListen, returnListen, adminListen := freeAddr(t), freeAddr(t), freeAddr(t)
	vendor := startVendor(t, relaytest.VendorConfig{Name: "signatures", Listen: "127.0.0.1:0", ReturnAddr: returnListen,
		Behaviors: relaytest.MustParseBehaviors("strip-ms-headers,footer-text")})
	cfg := fmt.Sprintf(`hostname: relay.ops.test
store:
  redis: {url: %q, key_prefix: rrops, timeout: 1s}
reference:
  signing_key: k1
  keys:
    - id: k1
listeners:
  tenant: {listen: %q}
  return: {listen: %q}
vendors:
  - {name: signatures, address: %q, starttls: "off"}
tenant: {address: %q, starttls: "off"}
admin:
  listen: %q
`, redis.URL(), tenantListen, returnListen, vendor.Addr(), tenant.Addr(), adminListen)
	startRelayProcess(t, bin, cfg, tenantListen, returnListen)

	get := func(path string) (int, string) { return adminGet(t, adminListen, path) }
	waitStatus := func(path string, want int) { waitAdmin(t, adminListen, path, want) }
	waitStatus("/readyz", 200)

	msgs := relaytest.Generate(relaytest.GenerateOptions{Seed: 3})[:4] // ordinary messages
	sender := relaytest.Sender{Addr: tenantListen, Backoff: 50 * time.Millisecond}
	for _, m := range msgs {
		if res := sender.Send(context.Background(), m); !res.Accepted {
			t.Fatalf("%s not accepted: %v", m.Name, res.Err)
		}
	}
	if _, err := tenant.WaitDeliveries(len(msgs), 15*time.Second); err != nil {
		t.Fatal(err)
	}
	// The tenant has the messages once the relay's end of data got 250;
	// the relay counts each a moment later, when it answers its client.
	delivered := func(metrics, leg string) int {
		re := regexp.MustCompile(`recallrelay_messages_total\{code_class="2xx",leg="` + leg + `",matched_by="[a-z_/]+",result="delivered"\} (\d+)`)
		got := 0
		for _, m := range re.FindAllStringSubmatch(metrics, -1) {
			n, _ := strconv.Atoi(m[1])
			got += n
		}
		return got
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, metrics := get("/metrics")
		tenantLeg, returnLeg := delivered(metrics, "tenant"), delivered(metrics, "return")
		if tenantLeg == len(msgs) && returnLeg == len(msgs) {
			break
		}
		if time.Now().After(deadline) || tenantLeg > len(msgs) || returnLeg > len(msgs) {
			t.Fatalf("/metrics counts %d delivered on the tenant leg and %d on the return leg, want %d each", tenantLeg, returnLeg, len(msgs))
		}
	}

	// Redis goes away: the instance leaves the load balancer's rotation,
	// and comes back when Redis does. /healthz says the process lives.
	redis.Stop()
	waitStatus("/readyz", 503)
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d while the store is down", code)
	}
	redis.Start()
	waitStatus("/readyz", 200)
}

// An expired certificate does not stop the relay, but takes it out of
// rotation: /readyz and the status page say which certificate, until a
// valid one is in place and SIGHUP loads it.
func TestExpiredCertificateNotReady(t *testing.T) {
	t.Parallel()
	bin := buildRelay(t)
	tenant := startTenant(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ops test CA")
	expired := ca.IssueValid(t, "relay.ops.test", x509.ExtKeyUsageServerAuth, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	certPath, keyPath := testpki.WritePair(t, dir, "tenant-listener", expired)
	tenantListen, returnListen, adminListen := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`hostname: relay.ops.test
store:
  data_dir: %q
reference:
  signing_key: k1
  keys:
    - id: k1
listeners:
  tenant:
    listen: %q
    tls: {cert_file: %q, key_file: %q}
  return: {listen: %q}
vendors:
  - {name: signatures, address: %q, starttls: "off"}
tenant: {address: %q, starttls: "off"}
admin:
  listen: %q
`, filepath.Join(dir, "data"), tenantListen, certPath, keyPath, returnListen, tenant.Addr(), tenant.Addr(), adminListen)
	p := startRelayProcess(t, bin, cfg, tenantListen, returnListen)

	get := func(path string) (int, string) { return adminGet(t, adminListen, path) }
	body := waitAdmin(t, adminListen, "/readyz", 503)
	if !strings.Contains(body, "certificate "+certPath+" expired") {
		t.Fatalf("/readyz with an expired certificate = %q, want 503 naming it", body)
	}
	if _, page := get("/"); !strings.Contains(page, "Not ready") || !strings.Contains(page, certPath+" expired") {
		t.Error("the status page does not say the certificate expired")
	}
	if log := p.tail(50); !strings.Contains(log, "a certificate in use is not valid") {
		t.Errorf("no error line about the certificate at start; log:\n%s", log)
	}

	testpki.WritePair(t, dir, "tenant-listener", ca.Issue(t, "relay.ops.test", x509.ExtKeyUsageServerAuth))
	if err := p.signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitAdmin(t, adminListen, "/readyz", 200) // a valid certificate, reloaded
}
