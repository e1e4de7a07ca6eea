package relay_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
)

// Reload swaps vendors and the tenant target under open sessions: a
// transaction in progress finishes where it started, the next one on the
// same connection uses the new configuration, and an invalid configuration
// changes nothing.
func TestReload(t *testing.T) {
	var policy relay.Policy
	h := newHarness(t, func(c *relay.Config) { policy = c.Policy })
	vendor2 := startRecorder(t, nil)

	c := dial(t, h.relay.TenantAddr())
	transaction := func(subject string) {
		t.Helper()
		c.cmd(250, "MAIL FROM:<ann@contoso.com>")
		c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
		c.cmd(354, "DATA")
		c.write("From: ann@contoso.com\r\nTo: bob@fabrikam.example\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@contoso.com>\r\n\r\nbody\r\n.\r\n")
		c.expect(250)
	}
	transaction("before")

	// A transaction open at MAIL/RCPT when the reload lands finishes at
	// the vendor it started with.
	c.cmd(250, "MAIL FROM:<ann@contoso.com>")
	c.cmd(250, "RCPT TO:<bob@fabrikam.example>")
	next := policy
	next.Vendors = []relay.NextHop{{Name: "vendor2", Address: vendor2.Addr(), StartTLS: relay.StartTLSOff}}
	if err := h.relay.Reload(next); err != nil {
		t.Fatal(err)
	}
	c.cmd(354, "DATA")
	c.write("From: ann@contoso.com\r\nTo: bob@fabrikam.example\r\nSubject: during\r\nMessage-ID: <during@contoso.com>\r\n\r\nbody\r\n.\r\n")
	c.expect(250)

	transaction("after")

	bad := next
	bad.Vendors = nil
	if err := h.relay.Reload(bad); err == nil || !strings.Contains(err.Error(), "no vendor") {
		t.Fatalf("Reload without vendors = %v, want an error", err)
	}
	transaction("after-bad-reload")

	if s := deliveredSubjects(h.vendor.Deliveries()); strings.Join(s, ",") != "before,during" {
		t.Errorf("first vendor got %v, want before,during", s)
	}
	if s := deliveredSubjects(vendor2.Deliveries()); strings.Join(s, ",") != "after,after-bad-reload" {
		t.Errorf("second vendor got %v, want after,after-bad-reload", s)
	}
}

// deliveredSubjects lists the Subject of each delivery, in order.
func deliveredSubjects(ds []relaytest.Delivery) []string {
	var out []string
	for _, d := range ds {
		h, _, err := headers.ReadHeader(bytes.NewReader(d.Data), 1<<20)
		if err != nil {
			out = append(out, "unreadable: "+err.Error())
			continue
		}
		out = append(out, h.Get("Subject"))
	}
	return out
}
