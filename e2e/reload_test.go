package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relaytest"
)

// SIGHUP puts a new rules file in force without dropping a session, and a
// broken one changes nothing: the relay is the real binary, the SMTP
// connection from the tenant stays open across both reloads.
func TestSIGHUPReloadsRules(t *testing.T) {
	t.Parallel()
	bin := buildRelay(t)
	dir := t.TempDir()
	tenant := startTenant(t)
	tenantListen, returnListen := freeAddr(t), freeAddr(t)
	vendors := map[string]*relaytest.Vendor{}
	for _, name := range []string{"signature", "scanner"} {
		vendors[name] = startVendor(t, relaytest.VendorConfig{Name: name, Listen: "127.0.0.1:0", ReturnAddr: returnListen,
			Behaviors: relaytest.MustParseBehaviors("strip-ms-headers,footer-text")})
	}

	rulesPath := filepath.Join(dir, "rules.yaml")
	writeRules := func(s string) {
		t.Helper()
		if err := os.WriteFile(rulesPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeRules("default_route: [signature]\n")
	cfg := fmt.Sprintf(`hostname: relay.reload.test
store:
  data_dir: %q
reference:
  signing_key: k1
  keys:
    - id: k1
listeners:
  tenant: {listen: %q}
  return: {listen: %q}
vendors:
  - {name: signature, address: %q, starttls: "off"}
  - {name: scanner, address: %q, starttls: "off"}
tenant: {address: %q, starttls: "off"}
rules_file: %q
`, filepath.Join(dir, "data"), tenantListen, returnListen, vendors["signature"].Addr(), vendors["scanner"].Addr(), tenant.Addr(), rulesPath)
	p := startRelayProcess(t, bin, cfg, tenantListen, returnListen)

	var plain []relaytest.Message
	for _, m := range relaytest.Generate(relaytest.GenerateOptions{Seed: 7}) {
		if m.Kind == "plain" || m.Kind == "html" || m.Kind == "8bit" || m.Kind == "attachment" {
			plain = append(plain, m)
		}
	}
	if len(plain) < 3 {
		t.Fatalf("generated only %d ordinary messages", len(plain))
	}

	// One connection for the whole test, as Exchange keeps one open.
	c, err := smtp.Dial(tenantListen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("exchange.reload.test"); err != nil {
		t.Fatal(err)
	}
	delivered := 0
	send := func(m relaytest.Message, wantVendor string) {
		t.Helper()
		before := map[string]int{}
		for n, v := range vendors {
			before[n] = len(v.Received())
		}
		if err := c.SendMail(m.From, m.To, bytes.NewReader(m.Data)); err != nil {
			t.Fatalf("%s: %v\n%s", m.Name, err, p.tail(20))
		}
		delivered++
		if _, err := tenant.WaitDeliveries(delivered, 15*time.Second); err != nil {
			t.Fatalf("%s: %v\n%s", m.Name, err, p.tail(20))
		}
		for n, v := range vendors {
			got, want := len(v.Received())-before[n], 0
			if n == wantVendor {
				want = 1
			}
			if got != want {
				t.Errorf("%s: vendor %s received %d copies, want %d", m.Name, n, got, want)
			}
		}
	}
	hup := func(wantLog string) {
		t.Helper()
		before := strings.Count(p.tail(1<<20), wantLog)
		if err := p.signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); strings.Count(p.tail(1<<20), wantLog) == before; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", wantLog, p.tail(10))
			}
		}
	}

	send(plain[0], "signature")

	writeRules("default_route: [signature]\nrules:\n  - name: to-nowhere\n    actions:\n      route: [nosuch]\n")
	hup("new configuration refused")
	if log := p.tail(5); !strings.Contains(log, `rule \"to-nowhere\": actions.route[0]: unknown vendor \"nosuch\" (vendors: signature, scanner) (line 5)`) {
		t.Errorf("the refusal does not say why:\n%s", log)
	}
	send(plain[1], "signature")

	writeRules("default_route: [scanner]\n")
	hup("SIGHUP: configuration reloaded")
	send(plain[2], "scanner")

	if err := c.Quit(); err != nil {
		t.Errorf("the session did not survive the reloads: %v", err)
	}
}
