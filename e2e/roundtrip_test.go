// Package e2e holds recallrelay's end-to-end tests: a fake Microsoft 365
// tenant, the relay and a fake vendor, all speaking real SMTP over loopback.
// Read them top to bottom as a description of what the relay guarantees.
package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store"
)

// loop is tenant → relay → vendor → relay → tenant.
type loop struct {
	tenant *relaytest.Tenant
	relay  *relay.Relay
	vendor *relaytest.Vendor
	sender relaytest.Sender
}

// newLoop starts a tenant, a relay on st and a vendor with the given
// behaviours.
func newLoop(t *testing.T, st store.Store, behaviors string) *loop {
	t.Helper()
	l := &loop{tenant: startTenant(t)}
	vendorLn := reserve(t)
	l.relay = startOneVendorRelay(t, st, vendorLn.Addr().String(), l.tenant.Addr())
	l.vendor = startVendor(t, relaytest.VendorConfig{
		Listener: vendorLn, ReturnAddr: l.relay.ReturnAddr(),
		Behaviors: relaytest.MustParseBehaviors(behaviors), Backoff: 50 * time.Millisecond,
	})
	l.sender = relaytest.Sender{Addr: l.relay.TenantAddr(), Backoff: 50 * time.Millisecond}
	return l
}

// startOneVendorRelay starts a relay on st that sends everything to the
// vendor at vendorAddr and returns it to the tenant at tenantAddr.
func startOneVendorRelay(t *testing.T, st store.Store, vendorAddr, tenantAddr string) *relay.Relay {
	t.Helper()
	cfg := looptest.Config(t, tenantAddr, hop("vendor", vendorAddr))
	cfg.Store = st
	return startRelay(t, cfg)
}

// messages is the generated Exchange set plus the shared corpus of real
// Exchange Online messages, when it is there.
func messages(t *testing.T) []relaytest.Message {
	t.Helper()
	msgs := relaytest.Generate(relaytest.GenerateOptions{Seed: 7, BigAttachmentBytes: 12 << 20})
	return append(msgs, corpusMessages(t)...)
}

// Every message goes through a vendor that strips all X-MS-* headers,
// rewrites Message-ID and appends a footer, and arrives at the tenant
// exactly once, with its envelope intact and its recall identity (Message-ID,
// CrossPremises, X-OrganizationHeadersPreserved, TNEF correlator, recall
// markers, winmail.dat) byte-identical to what the tenant sent.
func TestRoundTripRestoresRecallIdentity(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, st store.Store) {
		l := newLoop(t, st, "strip-ms-headers,rewrite-message-id,footer-text")
		msgs := messages(t)

		// Four senders at once, as Exchange opens several connections.
		var wg sync.WaitGroup
		work := make(chan relaytest.Message)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for m := range work {
					if res := l.sender.Send(context.Background(), m); !res.Accepted {
						t.Errorf("%s: not accepted: %v %q", m.Name, res.Err, res.Replies)
					}
				}
			}()
		}
		start := time.Now()
		for _, m := range msgs {
			work <- m
		}
		close(work)
		wg.Wait()
		delivered, err := l.tenant.WaitDeliveries(len(msgs), 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		l.vendor.WaitIdle(5 * time.Second)
		if n := len(l.tenant.Deliveries()); n != len(msgs) {
			t.Fatalf("tenant got %d deliveries for %d messages", n, len(msgs))
		}
		t.Logf("%d messages round trip in %s (%.1f ms each, 4 concurrent senders)",
			len(msgs), time.Since(start).Round(time.Millisecond), float64(time.Since(start).Milliseconds())/float64(len(msgs)))

		byID := map[string][]relaytest.Delivery{}
		for _, d := range delivered {
			id := messageID(t, d.Data)
			byID[id] = append(byID[id], d)
		}
		restored := 0
		for _, m := range msgs {
			ds := byID[messageID(t, m.Data)]
			if len(ds) != 1 {
				t.Errorf("%s: delivered %d times", m.Name, len(ds))
				continue
			}
			d := ds[0]
			if r := relaytest.CompareIdentity(m.Data, d.Data); !r.Intact {
				t.Errorf("%s: recall identity damaged: %s", m.Name, r)
			}
			if d.MailFrom != m.From || strings.Join(d.Rcpts, ",") != strings.Join(m.To, ",") || d.UTF8 != m.UTF8 {
				t.Errorf("%s: envelope %s→%v (utf8 %v), want %s→%v (utf8 %v)", m.Name, d.MailFrom, d.Rcpts, d.UTF8, m.From, m.To, m.UTF8)
			}
			if !bytes.Contains(d.Data, []byte("X-RecallRelay-Processed: true\r\n")) {
				t.Errorf("%s: no loop marker", m.Name)
			}
			if vendorOut := relaytest.CompareIdentity(m.Data, returnedFor(l.vendor, d)); !vendorOut.Intact {
				restored++
			}
		}
		if restored == 0 {
			t.Fatal("the vendor damaged nothing: the test proves nothing")
		}
		t.Logf("the vendor damaged %d of %d messages; all were restored", restored, len(msgs))
	})
}

// returnedFor finds what the vendor sent back for the delivery d (the
// vendor's copy carries the rewritten Message-ID; match on the body).
func returnedFor(v *relaytest.Vendor, d relaytest.Delivery) []byte {
	_, body, _ := bytes.Cut(d.Data, []byte("\r\n\r\n"))
	for _, o := range v.Returned() {
		if _, b, _ := bytes.Cut(o.Delivery.Data, []byte("\r\n\r\n")); bytes.Equal(b, body) {
			return o.Delivery.Data
		}
	}
	return nil
}

// The embedded store keeps records on disk: a relay restarted between the
// two legs still restores the message.
func TestRestartBetweenLegs(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "records.db")
	open := func() *store.Bolt {
		b, err := store.OpenBolt(store.BoltConfig{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tenant := startTenant(t)
	vendor := startTenant(t) // records, sends nothing back yet

	m := relaytest.Generate(relaytest.GenerateOptions{Seed: 3})[0]

	// Leg one on the first relay process.
	st1 := open()
	r1 := startOneVendorRelay(t, st1, vendor.Addr(), tenant.Addr())
	if res := (&relaytest.Sender{Addr: r1.TenantAddr()}).Send(context.Background(), m); !res.Accepted {
		t.Fatalf("tenant leg: %v", res.Err)
	}
	out, err := vendor.WaitDeliveries(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	r1.Shutdown(ctx)
	cancel()
	st1.Close()

	// The vendor strips everything while the relay is down...
	back, err := relaytest.MustParseBehaviors("strip-ms-headers")[0].(relaytest.Transformer).Transform(out[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	// ...and delivers to the restarted relay.
	st2 := open()
	defer st2.Close()
	r2 := startOneVendorRelay(t, st2, vendor.Addr(), tenant.Addr())
	res := (&relaytest.Sender{Addr: r2.ReturnAddr(), MaxAttempts: 1}).Send(context.Background(),
		relaytest.Message{Name: m.Name, From: m.From, To: m.To, Data: back})
	if !res.Accepted {
		t.Fatalf("return leg after restart: %v %q", res.Err, res.Replies)
	}
	d, err := tenant.WaitDeliveries(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := relaytest.CompareIdentity(m.Data, d[0].Data); !r.Intact {
		t.Fatalf("not restored after restart: %s", r)
	}
}
