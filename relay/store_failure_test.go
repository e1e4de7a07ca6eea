package relay_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// Redis down on either leg: 451 4.3.0, nothing accepted that could not be
// restored. Redis back: the same relay works again, no restart.
func TestStoreOutage(t *testing.T) {
	srv := storetest.StartRedisServer(t)
	cfg, err := store.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyPrefix = "outage"
	rs, err := store.NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	h := newHarness(t, func(c *relay.Config) { c.Store = rs; c.StoreTimeout = 2 * time.Second })

	out := h.sendOut("ann@contoso.com", "bob@fabrikam.example") // recorded while Redis is up
	back := vendorise(out, false, false)

	srv.Stop()
	c := dial(t, h.relay.TenantAddr())
	c.cmd(250, "MAIL FROM:<ann@contoso.com>")
	c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
	c.cmd(354, "DATA")
	c.write(original + ".\r\n")
	if text := c.expect(451); !strings.Contains(text, "4.3.0 Origin record store unavailable") {
		t.Errorf("tenant leg: %q", text)
	}
	if code, text := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example"); code != 451 || !strings.Contains(text, "4.3.0") {
		t.Errorf("return leg: %d %s", code, text)
	}
	if n := len(h.tenant.Deliveries()); n != 0 {
		t.Fatalf("tenant got %d messages while the store was down", n)
	}
	if n := len(h.vendor.Deliveries()); n != 1 {
		t.Fatalf("vendor got %d messages, want only the one sent before the outage", n)
	}

	// This redis-server keeps nothing on disk, so the record made before
	// the outage is gone: the relay refuses that message rather than
	// guessing. New traffic works on the same relay without a restart.
	srv.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for rs.Ping(ctx) != nil && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	if code, _ := h.sendBack(back, "ann@contoso.com", "bob@fabrikam.example"); code != 550 {
		t.Errorf("message whose record was lost with Redis's memory: %d, want 550", code)
	}
	again := vendorise(h.sendOut("ann@contoso.com", "bob@fabrikam.example"), false, false)
	if code, text := h.sendBack(again, "ann@contoso.com", "bob@fabrikam.example"); code != 250 {
		t.Fatalf("after recovery: %d %s", code, text)
	}
	if d, _ := h.tenant.WaitDeliveries(1, 5*time.Second); len(d) != 1 {
		t.Fatalf("tenant got %d messages after recovery", len(d))
	}
}

// pass_unrecorded: the tenant leg sends mail on without a record while the
// store is down; when it comes back it has no record, so it is refused (or
// stripped), never made internal.
func TestPassUnrecorded(t *testing.T) {
	srv := storetest.StartRedisServer(t)
	cfg, _ := store.ParseRedisURL(srv.URL())
	rs, err := store.NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	h := newHarness(t, func(c *relay.Config) { c.Store = rs; c.StoreTimeout = 2 * time.Second; c.PassUnrecorded = true })
	srv.Stop()
	out := h.sendOut("ann@contoso.com", "bob@fabrikam.example")
	h.waitOutcome(t, func(o relay.Outcome) bool { return o.Unrecorded && o.Result == "delivered" })
	if len(h.obs.StoreFailures()) == 0 {
		t.Errorf("store failure not observed")
	}
	srv.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for rs.Ping(ctx) != nil && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	if code, text := h.sendBack(vendorise(out, false, false), "ann@contoso.com", "bob@fabrikam.example"); code != 550 {
		t.Fatalf("return of an unrecorded message: %d %s", code, text)
	}
}
