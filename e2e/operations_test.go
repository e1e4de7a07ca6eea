package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

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

	get := func(path string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminListen+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitStatus := func(path string, want int) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			code, body := get(path)
			if code == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s = %d %s, want %d", path, code, body, want)
			}
		}
	}
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
