package e2e

// The "via-tenant" topology (docs/exchange-online.md): hosted signature
// services deliver processed mail back to the tenant's own MX endpoint, so
// the relay's return leg is reached through a second pass through Exchange
// Online. Exchange receives the vendor's delivery as mail from outside,
// stamps its own organization fields for it, and a return rule (vendor
// marker present, relay loop marker absent) sends it through a second
// OnPremises connector with CloudServicesMailEnabled to the relay's return
// listener. Here a second fake vendor with the exchange-second-pass
// behaviour plays that Exchange Online; everything else is as in the
// round-trip tests, over real SMTP on loopback.

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/exo"
	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/internal/testpki"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/rules"
)

const (
	// vtVendorMarker is what the fake vendor stamps (stamp-marker's
	// default), and what the tenant's return rule looks for.
	vtVendorMarker = "X-CodeTwoProcessed"
	// vtVendorBehaviors is the hosted signature service: it drops every
	// X-MS-* field, appends a text footer and marks what it processed.
	vtVendorBehaviors = "strip-ms-headers,footer-text,stamp-marker"
	// vtFooter is footer-text's default footer.
	vtFooter = "This message was processed by fakemta."
	// vtDoc is the document whose via-tenant configuration example the
	// tests load.
	vtDoc = "../docs/exchange-online.md"
	// vtReturnHost is the return listener's public name in that example.
	vtReturnHost = "relay-return.contoso.com"
)

// vtLoopback stands for Exchange Online's address on loopback: the fake
// Exchange Online connects from 127.0.0.1, which no published range holds.
var vtLoopback = netip.MustParsePrefix("127.0.0.1/32")

// viaTenant is fake tenant sender → relay tenant leg → fake vendor → fake
// Exchange Online (second pass) → relay return leg → fake tenant.
type viaTenant struct {
	tenant *relaytest.Tenant
	relay  *relay.Relay
	vendor *relaytest.Vendor
	exo    *relaytest.Vendor
	sender relaytest.Sender
}

// newViaTenant starts the chain. The relay routes by the default rules
// (recall traffic, calendar items and processed mail bypass the vendor);
// its return listener admits returnNets only (none: every client of the
// loopback listener), with the fallback matching fallback.
func newViaTenant(t *testing.T, returnNets []netip.Prefix, fallback relay.FallbackMatching) *viaTenant {
	t.Helper()
	vt := &viaTenant{tenant: startTenant(t)}
	engine, err := rules.Default("vendor").Compile(rules.CompileOptions{Vendors: []string{"vendor"}, LoopMarker: loopMarkerName})
	if err != nil {
		t.Fatal(err)
	}
	vendorLn, exoLn := reserve(t), reserve(t)
	cfg := looptest.Config(t, vt.tenant.Addr(), hop("vendor", vendorLn.Addr().String()))
	cfg.Router, cfg.SpoolDir = relay.NewRulesRouter(engine), t.TempDir()
	cfg.Return.AllowNets = returnNets
	cfg.FallbackMatching = fallback
	vt.relay = startRelay(t, cfg)

	// Exchange Online's second pass: what the vendor sends back goes on to
	// the relay's return listener, through the return-leg connector.
	vt.exo = startVendor(t, relaytest.VendorConfig{
		Name: "exchange-online", Listener: exoLn, ReturnAddr: vt.relay.ReturnAddr(),
		Helo:      relaytest.SecondPassServer,
		Behaviors: relaytest.MustParseBehaviors("exchange-second-pass"), Backoff: 50 * time.Millisecond,
	})
	// The hosted vendor delivers back to the tenant's MX: Exchange Online.
	vt.vendor = startVendor(t, relaytest.VendorConfig{
		Name: "vendor", Listener: vendorLn, ReturnAddr: exoLn.Addr().String(),
		Behaviors: relaytest.MustParseBehaviors(vtVendorBehaviors), Backoff: 50 * time.Millisecond,
	})
	vt.sender = relaytest.Sender{Addr: vt.relay.TenantAddr(), Backoff: 50 * time.Millisecond}
	return vt
}

// run sends msgs on the tenant leg from four connections at once and
// waits until the tenant has one delivery per message and both fakes are
// idle; it returns the tenant's deliveries.
func (vt *viaTenant) run(t *testing.T, msgs []relaytest.Message) []relaytest.Delivery {
	t.Helper()
	var wg sync.WaitGroup
	work := make(chan relaytest.Message)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range work {
				if res := vt.sender.Send(context.Background(), m); !res.Accepted {
					t.Errorf("%s: not accepted on the tenant leg: %v %q", m.Name, res.Err, res.Replies)
				}
			}
		}()
	}
	for _, m := range msgs {
		work <- m
	}
	close(work)
	wg.Wait()
	if _, err := vt.tenant.WaitDeliveries(len(msgs), 90*time.Second); err != nil {
		for _, o := range vt.exo.Returned() {
			if !o.Result.Accepted {
				t.Logf("Exchange Online → return leg refused: %v %q", o.Result.Err, o.Result.Replies)
			}
		}
		t.Fatal(err)
	}
	for _, v := range []*relaytest.Vendor{vt.vendor, vt.exo} {
		if err := v.WaitIdle(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return vt.tenant.Deliveries()
}

// vtGuarded reports whether a field is one the return leg guards: the
// firewall (CrossPremises, Organization, X-OrganizationHeadersPreserved)
// and what Exchange re-stamps (CrossTenant, X-OriginatorOrg,
// CrossTenantHeadersStamped).
func vtGuarded(name string) bool {
	return headers.MustMatcher(headers.Firewall...).Match(name) || headers.MustMatcher(headers.Restamped...).Match(name)
}

// fieldsMatching returns the raw fields of data's top-level header that
// m matches, grouped by lower-case name, in order.
func fieldsMatching(t *testing.T, data []byte, match func(string) bool) map[string][]string {
	t.Helper()
	fields, _ := splitHeader(t, data)
	out := map[string][]string{}
	for _, f := range fields {
		if match(f.Name) {
			k := strings.ToLower(f.Name)
			out[k] = append(out[k], string(f.Raw))
		}
	}
	return out
}

// returnRuleMatches evaluates the tenant's via-tenant return rule (exo:
// HeaderMatchesMessageHeader <marker> '.', ExceptIfHeaderContainsMessageHeader
// <loop marker> -ExceptIfHeaderContainsWords true, ExceptIfHeaderMatchesMessageHeader
// X-MS-Exchange-RecallReportGenerated '.') on a message's header.
func returnRuleMatches(data []byte) bool {
	h, err := readHeader(data)
	if err != nil {
		return false
	}
	present := func(name string) bool {
		return slices.ContainsFunc(h.Values(name), func(v string) bool { return strings.TrimSpace(v) != "" })
	}
	loop := slices.ContainsFunc(h.Values(loopMarkerName), func(v string) bool { return strings.Contains(strings.ToLower(v), "true") })
	return present(vtVendorMarker) && !loop && !present("X-MS-Exchange-RecallReportGenerated")
}

// isRecall reports whether the relay's classifier sees recall traffic in
// the message's header.
func isRecall(t *testing.T, data []byte) bool {
	t.Helper()
	h, err := readHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := rules.ClassifyRecall(h, nil)
	return r != rules.NotRecall
}

// withMessageID returns the deliveries among ds whose Message-ID is id.
func withMessageID(t *testing.T, ds []relaytest.Delivery, id string) []relaytest.Delivery {
	t.Helper()
	var out []relaytest.Delivery
	for _, d := range ds {
		if got, err := readMessageID(d.Data); err == nil && got == id {
			out = append(out, d)
		}
	}
	return out
}

// Every message reaches the tenant once through the via-tenant chain. Mail
// that went round (vendor, then Exchange Online's second pass) arrives with
// the vendor's changes and processed marker, its recorded origin fields
// byte for byte (the original CrossPremises set, not the second pass's
// anonymous one), its Message-ID, and the loop marker, so the tenant's
// return rule does not send it out again; recall traffic reaches neither
// the vendor nor the second pass. The return listener admits the ranges of
// the documented via-tenant configuration (plus loopback, which stands for
// Exchange Online here) and matches by the reference only, as that
// configuration says.
func TestViaTenantRoundTrip(t *testing.T) {
	t.Parallel()
	doc := viaTenantDocConfig(t)
	lc, err := doc.Listeners.Return.RelayListener()
	if err != nil {
		t.Fatal(err)
	}
	nets := append(slices.Clone(lc.AllowNets), vtLoopback)

	sets := []struct {
		name string
		msgs func(t *testing.T) []relaytest.Message
	}{
		{"generated", func(*testing.T) []relaytest.Message {
			return relaytest.Generate(relaytest.GenerateOptions{Seed: 11, BigAttachmentBytes: 2 << 20})
		}},
		{"corpus", func(t *testing.T) []relaytest.Message {
			if _, err := os.Stat(corpusDir); err != nil {
				t.Skipf("no Exchange corpus at %s: %v", corpusDir, err)
			}
			return corpusMessages(t)
		}},
	}
	for _, set := range sets {
		t.Run(set.name, func(t *testing.T) {
			t.Parallel()
			msgs := set.msgs(t)
			checkViaTenant(t, newViaTenant(t, nets, doc.FallbackMatching), msgs)
		})
	}
}

// checkViaTenant runs msgs through vt and checks what the tenant got.
func checkViaTenant(t *testing.T, vt *viaTenant, msgs []relaytest.Message) {
	ids := map[string]string{}
	for _, m := range msgs {
		id := messageID(t, m.Data)
		if id == "" {
			t.Fatalf("%s has no Message-ID", m.Name)
		}
		if prev, dup := ids[id]; dup {
			t.Fatalf("%s and %s share Message-ID %s", prev, m.Name, id)
		}
		ids[id] = m.Name
	}
	delivered := vt.run(t, msgs)
	if len(delivered) != len(msgs) {
		t.Errorf("tenant got %d deliveries for %d messages", len(delivered), len(msgs))
	}
	for _, o := range vt.exo.Returned() {
		if !o.Result.Accepted {
			t.Errorf("the return leg refused Exchange Online's delivery: %v %q", o.Result.Err, o.Result.Replies)
		}
	}
	// What Exchange Online received is what its return rule routes.
	for _, d := range vt.exo.Received() {
		if !returnRuleMatches(d.Data) {
			t.Errorf("Exchange Online received %s, which its return rule would not route to the relay", messageID(t, d.Data))
		}
	}

	restore := headers.MustMatcher(headers.DefaultRestore...)
	roundTrip, bypassed, footers, secondPassDamage := 0, 0, 0, 0
	for _, m := range msgs {
		id := messageID(t, m.Data)
		ds := withMessageID(t, delivered, id)
		if len(ds) != 1 {
			t.Errorf("%s: delivered %d times", m.Name, len(ds))
			continue
		}
		d := ds[0]
		if d.MailFrom != m.From || strings.Join(d.Rcpts, ",") != strings.Join(m.To, ",") || d.UTF8 != m.UTF8 {
			t.Errorf("%s: envelope %s→%v (utf8 %v), want %s→%v (utf8 %v)", m.Name, d.MailFrom, d.Rcpts, d.UTF8, m.From, m.To, m.UTF8)
		}
		if !bytes.Contains(d.Data, []byte("\r\n"+loopMarkerName+": true\r\n")) && !bytes.HasPrefix(d.Data, []byte(loopMarkerName+": true\r\n")) {
			t.Errorf("%s: no loop marker", m.Name)
		}
		if returnRuleMatches(d.Data) {
			t.Errorf("%s: the tenant's return rule would send the delivered message out again", m.Name)
		}
		if r := relaytest.CompareIdentity(m.Data, d.Data); !r.Intact {
			t.Errorf("%s: recall identity damaged: %s", m.Name, r)
		}

		atVendor := withMessageID(t, vt.vendor.Received(), id)
		atExo := withMessageID(t, vt.exo.Received(), id)
		if isRecall(t, m.Data) && len(atVendor)+len(atExo) > 0 {
			t.Errorf("%s: recall traffic reached the vendor %d times and Exchange Online's second pass %d times", m.Name, len(atVendor), len(atExo))
		}
		if len(atVendor) == 0 {
			bypassed++
			if len(atExo) != 0 {
				t.Errorf("%s: bypassed the vendor but reached the second pass", m.Name)
			}
			continue
		}
		roundTrip++
		if len(atVendor) != 1 || len(atExo) != 1 {
			t.Errorf("%s: the vendor received it %d times, Exchange Online %d times; want once each", m.Name, len(atVendor), len(atExo))
			continue
		}
		secondPass := withMessageID(t, deliveriesOf(vt.exo.Returned()), id)
		if len(secondPass) != 1 {
			t.Errorf("%s: Exchange Online sent it to the return leg %d times", m.Name, len(secondPass))
			continue
		}
		sp := secondPass[0].Data
		if !bytes.Contains(sp, []byte("\r\nX-MS-Exchange-CrossPremises-AuthAs: Anonymous\r\n")) {
			t.Errorf("%s: the second pass stamped no anonymous CrossPremises-AuthAs: the test proves nothing", m.Name)
		}
		if r := relaytest.CompareIdentity(m.Data, sp); !r.Intact {
			secondPassDamage++
		}

		// The recorded fields are back byte for byte...
		want, got := fieldsMatching(t, m.Data, restore.Match), fieldsMatching(t, d.Data, restore.Match)
		for k := range want {
			if _, ok := got[k]; !ok {
				got[k] = nil
			}
		}
		for k, vs := range got {
			if !slices.Equal(vs, want[k]) {
				t.Errorf("%s: %s delivered as %q, want %q", m.Name, k, vs, want[k])
			}
		}
		// ...and nothing of the second pass's organization fields is left:
		// every guarded field delivered is one the tenant sent, byte for
		// byte, and only the firewall's families (CrossTenant and
		// X-OriginatorOrg are never put back).
		sent := fieldsMatching(t, m.Data, vtGuarded)
		for k, vs := range fieldsMatching(t, d.Data, vtGuarded) {
			if headers.MustMatcher(headers.Restamped...).Match(k) {
				t.Errorf("%s: delivered with %s %q", m.Name, k, vs)
				continue
			}
			if !slices.Equal(vs, sent[k]) {
				t.Errorf("%s: %s delivered as %q, the tenant sent %q", m.Name, k, vs, sent[k])
			}
		}
		for _, f := range []string{
			"X-MS-Exchange-CrossPremises-AuthAs: Anonymous\r\n",
			"X-OrganizationHeadersPreserved: " + relaytest.SecondPassServer + "\r\n",
			"X-MS-Exchange-CrossPremises-OriginalClientIPAddress: " + relaytest.SecondPassClientIP + "\r\n",
		} {
			if bytes.Contains(d.Data, []byte("\n"+f)) && !bytes.Contains(m.Data, []byte("\n"+f)) {
				t.Errorf("%s: the second pass's %q survived", m.Name, strings.TrimSpace(f))
			}
		}
		if got, want := headerValue(d.Data, "Message-ID"), headerValue(m.Data, "Message-ID"); got != want {
			t.Errorf("%s: Message-ID %q, want %q", m.Name, got, want)
		}
		if headerValue(d.Data, vtVendorMarker) != "true" {
			t.Errorf("%s: the vendor's processed marker is gone", m.Name)
		}
		if headerValue(d.Data, "X-RecallRelay-Ref") != "" {
			t.Errorf("%s: delivered with the relay's reference", m.Name)
		}
		if bytes.Contains(d.Data, []byte(vtFooter)) {
			footers++
		}
	}
	t.Logf("%d messages: %d through the vendor and Exchange Online's second pass, %d bypassed; the second pass damaged the recall identity of %d of them; %d carry the vendor's footer",
		len(msgs), roundTrip, bypassed, secondPassDamage, footers)
	if roundTrip == 0 || secondPassDamage == 0 || footers == 0 {
		t.Error("nothing went round, was damaged by the second pass or changed by the vendor: the test proves nothing")
	}
}

// deliveriesOf returns what each send-back transaction sent.
func deliveriesOf(outs []relaytest.ReturnOutcome) []relaytest.Delivery {
	out := make([]relaytest.Delivery, len(outs))
	for i, o := range outs {
		out[i] = o.Delivery
	}
	return out
}

// A return listener whose allow_nets holds only Exchange Online's ranges
// refuses every other client at connect: here the fake Exchange Online on
// loopback, which is not in them.
func TestViaTenantReturnListenerAdmitsOnlyAllowNets(t *testing.T) {
	t.Parallel()
	doc := viaTenantDocConfig(t)
	lc, err := doc.Listeners.Return.RelayListener()
	if err != nil {
		t.Fatal(err)
	}
	vt := newViaTenant(t, lc.AllowNets, doc.FallbackMatching)
	m := relaytest.Generate(relaytest.GenerateOptions{Seed: 11})[0]
	res := (&relaytest.Sender{Addr: vt.relay.ReturnAddr(), MaxAttempts: 1}).Send(context.Background(), m)
	if res.Accepted || !strings.Contains(strings.Join(res.Replies, " "), "554") {
		t.Errorf("return listener with Exchange Online's ranges only: accepted %v, replies %q; want 554 at connect", res.Accepted, res.Replies)
	}
}

// The via-tenant configuration example of docs/exchange-online.md
// validates, gives the return listener (and the tenant listener) exactly
// Exchange Online's published ranges, and exo-setup accepts it for the
// via-tenant topology without a warning about allow_nets.
func TestViaTenantDocConfig(t *testing.T) {
	t.Parallel()
	c := viaTenantDocConfig(t)
	if !slices.Equal(c.Listeners.Return.AllowNets, exo.ExchangeOnlineRanges) {
		t.Errorf("listeners.return.allow_nets = %q, want exo.ExchangeOnlineRanges %q", c.Listeners.Return.AllowNets, exo.ExchangeOnlineRanges)
	}
	if !slices.Equal(c.Listeners.Tenant.AllowNets, exo.ExchangeOnlineRanges) {
		t.Errorf("listeners.tenant.allow_nets = %q, want exo.ExchangeOnlineRanges %q", c.Listeners.Tenant.AllowNets, exo.ExchangeOnlineRanges)
	}
	if c.FallbackMatching != relay.FallbackOff {
		t.Errorf("fallback_matching = %q, want off: Exchange Online's ranges admit every tenant", c.FallbackMatching)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
	s, err := exo.Plan(c, exo.Options{Topology: exo.ViaTenant, ReturnHost: vtReturnHost})
	if err != nil {
		t.Fatalf("exo-setup refuses the documented via-tenant configuration:\n%v", err)
	}
	for _, w := range s.Warnings {
		if strings.Contains(w, "allow_nets") || strings.Contains(w, ".listen") {
			t.Errorf("exo-setup warns: %s", w)
		}
	}
	for _, l := range []config.Listener{c.Listeners.Tenant, c.Listeners.Return} {
		lc, err := l.RelayListener()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range exo.ExchangeOnlineRanges {
			p := netip.MustParsePrefix(r)
			if !slices.ContainsFunc(lc.AllowNets, func(q netip.Prefix) bool { return q.Bits() <= p.Bits() && q.Contains(p.Addr()) }) {
				t.Errorf("%s: the relay's allow_nets does not admit %s", l.Listen, r)
			}
		}
	}
}

// viaTenantDocConfig loads the YAML example of the via-tenant section of
// docs/exchange-online.md, with its certificate files issued afresh in a
// temporary directory (for the names the example gives them), its key from
// the environment it names, and validates it.
func viaTenantDocConfig(t *testing.T) *config.Config {
	t.Helper()
	raw, err := os.ReadFile(vtDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Step by step: via-tenant\n")
	if !ok {
		t.Fatalf("%s has no via-tenant section", vtDoc)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, yaml, ok := strings.Cut(section, "\n```yaml\n")
	if !ok {
		t.Fatalf("%s: the via-tenant section has no yaml example", vtDoc)
	}
	yaml, _, _ = strings.Cut(yaml, "\n```")

	const certDir = "/etc/recallrelay/tls"
	if !strings.Contains(yaml, certDir+"/") {
		t.Fatalf("the example's certificates are not under %s:\n%s", certDir, yaml)
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "via-tenant test CA")
	testpki.WritePair(t, dir, "relay.contoso.com", ca.Issue(t, "relay.contoso.com", x509.ExtKeyUsageServerAuth))
	testpki.WritePair(t, dir, vtReturnHost, ca.Issue(t, vtReturnHost, x509.ExtKeyUsageServerAuth))
	testpki.WritePair(t, dir, "client", ca.Issue(t, "relay.contoso.com", x509.ExtKeyUsageClientAuth))
	yaml = strings.ReplaceAll(yaml, certDir, filepath.ToSlash(dir))

	c, err := config.Parse([]byte(yaml), vtDoc+" (via-tenant example)")
	if err != nil {
		t.Fatal(err)
	}
	secret := "base64:" + strings.Repeat("QUFB", 11)
	c.ApplyEnv(func(k string) (string, bool) {
		return secret, k == "RECALLRELAY_REF_SECRET_K1"
	})
	if err := c.Validate(); err != nil {
		t.Fatalf("the via-tenant example does not validate:\n%v", err)
	}
	return c
}
