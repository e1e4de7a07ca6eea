package e2e

// Mail-flow rules in the running relay: the rule engine decides on the
// tenant leg, over real SMTP, which vendors a message goes through (none,
// one, or a chain), and the recall identity survives every route.

import (
	"bytes"
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/rules"
	"github.com/recallrelay/recallrelay/store"
)

// loopMarkerName is the relay's default loop marker, which the rules must
// know about to count it as "already processed".
const loopMarkerName = "X-RecallRelay-Processed"

// vendorSpec is one fake vendor of a rulesLoop.
type vendorSpec struct{ name, behaviors string }

// rulesLoop is tenant → relay (routing by rules) → vendors → relay → tenant.
type rulesLoop struct {
	tenant  *relaytest.Tenant
	relay   *relay.Relay
	engine  *rules.Engine
	vendors map[string]*relaytest.Vendor
	sender  relaytest.Sender
}

// newRulesLoop starts a tenant, a relay on st routing by set, and one fake
// vendor per spec, known to the relay by its name.
func newRulesLoop(t *testing.T, st store.Store, set *rules.Set, specs ...vendorSpec) *rulesLoop {
	t.Helper()
	l := &rulesLoop{vendors: map[string]*relaytest.Vendor{}, tenant: startTenant(t)}
	var err error

	var names []string
	var hops []relay.NextHop
	lns := map[string]net.Listener{}
	for _, s := range specs {
		lns[s.name] = reserve(t)
		names = append(names, s.name)
		hops = append(hops, hop(s.name, lns[s.name].Addr().String()))
	}
	l.engine, err = set.Compile(rules.CompileOptions{Vendors: names, LoopMarker: loopMarkerName})
	if err != nil {
		t.Fatal(err)
	}
	cfg := looptest.Config(t, l.tenant.Addr(), hops...)
	cfg.Store, cfg.Router, cfg.SpoolDir = st, relay.NewRulesRouter(l.engine), t.TempDir()
	l.relay = startRelay(t, cfg)
	for _, s := range specs {
		l.vendors[s.name] = startVendor(t, relaytest.VendorConfig{
			Name: s.name, Listener: lns[s.name], ReturnAddr: l.relay.ReturnAddr(),
			Behaviors: relaytest.MustParseBehaviors(s.behaviors), Backoff: 50 * time.Millisecond,
		})
	}
	l.sender = relaytest.Sender{Addr: l.relay.TenantAddr(), Backoff: 50 * time.Millisecond}
	return l
}

// send submits every message on the tenant leg and waits until the tenant
// has n deliveries and every vendor is idle; it then checks that nothing
// more arrived.
func (l *rulesLoop) send(t *testing.T, n int, msgs ...relaytest.Message) []relaytest.Delivery {
	t.Helper()
	for _, m := range msgs {
		if res := l.sender.Send(context.Background(), m); !res.Accepted {
			t.Fatalf("%s: not accepted on the tenant leg: %v %q", m.Name, res.Err, res.Replies)
		}
	}
	if _, err := l.tenant.WaitDeliveries(n, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	for name, v := range l.vendors {
		if err := v.WaitIdle(10 * time.Second); err != nil {
			t.Fatalf("vendor %s: %v", name, err)
		}
	}
	d := l.tenant.Deliveries()
	if len(d) != n {
		t.Fatalf("tenant got %d deliveries, want %d", len(d), n)
	}
	return d
}

// byMessageID picks the deliveries whose Message-ID field is id.
func byMessageID(t *testing.T, ds []relaytest.Delivery, id string) []relaytest.Delivery {
	t.Helper()
	var out []relaytest.Delivery
	for _, d := range ds {
		if messageID(t, d.Data) == id {
			out = append(out, d)
		}
	}
	return out
}

// deliveredOnceIntact returns m's delivery among delivered, reporting
// (under name) a message delivered other than once or with its recall
// identity damaged; ok is false when there is no single delivery.
func deliveredOnceIntact(t *testing.T, name string, m relaytest.Message, delivered []relaytest.Delivery) (relaytest.Delivery, bool) {
	t.Helper()
	ds := byMessageID(t, delivered, messageID(t, m.Data))
	if len(ds) != 1 {
		t.Errorf("%s: delivered %d times", name, len(ds))
		return relaytest.Delivery{}, false
	}
	if r := relaytest.CompareIdentity(m.Data, ds[0].Data); !r.Intact {
		t.Errorf("%s: recall identity damaged: %s", name, r)
	}
	return ds[0], true
}

// generated returns the message of the given kind from Generate(seed).
func generated(t *testing.T, seed int64, kind string) relaytest.Message {
	t.Helper()
	for _, m := range relaytest.Generate(relaytest.GenerateOptions{Seed: seed}) {
		if m.Kind == kind {
			return m
		}
	}
	t.Fatalf("Generate has no %q message", kind)
	return relaytest.Message{}
}

// splitHeader returns the fields of data's top-level header and its body.
func splitHeader(t *testing.T, data []byte) ([]headers.Field, []byte) {
	t.Helper()
	h, body, err := headers.ReadHeader(bytes.NewReader(data), maxHeaderBytes)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return h.Fields(), b
}

// withoutFields returns data with every top-level field of one of the names
// removed, all else byte for byte.
func withoutFields(t *testing.T, data []byte, names ...string) []byte {
	t.Helper()
	fields, body := splitHeader(t, data)
	var b bytes.Buffer
	for _, f := range fields {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, f.Name) }) {
			b.Write(f.Raw)
		}
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// bodyOf returns what follows data's header block.
func bodyOf(t *testing.T, data []byte) []byte {
	t.Helper()
	_, body := splitHeader(t, data)
	return body
}

// hasFieldPrefix reports whether data's top-level header has a field whose
// name starts with prefix, ignoring case.
func hasFieldPrefix(t *testing.T, data []byte, prefix string) bool {
	t.Helper()
	fields, _ := splitHeader(t, data)
	for _, f := range fields {
		if hasPrefixFold(f.Name, prefix) {
			return true
		}
	}
	return false
}

// checkBypassed checks that delivered is sent exactly, minus a loop marker
// sent may have carried, under the two fields the relay adds to a message
// it bypasses: its Received field on top, then its loop marker.
func checkBypassed(t *testing.T, name string, sent, delivered []byte) {
	t.Helper()
	fields, _ := splitHeader(t, delivered)
	if len(fields) < 2 || !strings.EqualFold(fields[0].Name, "Received") ||
		!bytes.Contains(fields[0].Raw, []byte(" by relay.e2e.test ")) ||
		string(fields[1].Raw) != loopMarkerName+": true\r\n" {
		t.Errorf("%s: delivered without the relay's Received field and loop marker on top:\n%.600s", name, delivered)
		return
	}
	rest := delivered[len(fields[0].Raw)+len(fields[1].Raw):]
	if want := withoutFields(t, sent, loopMarkerName); !bytes.Equal(rest, want) {
		t.Errorf("%s: bypassed message changed beyond the relay's two fields:\n--- sent\n%.1500s\n--- delivered (after the relay's fields)\n%.1500s", name, want, rest)
	}
}

// tnefClassOnlyRecall returns a legacy Outlook recall that only the message
// class of its winmail.dat (IPM.Outlook.Recall) identifies: the generated
// TNEF recall without its X-MS-Exchange-RecallReport* fields and with a
// traffic-type diagnostic that does not say recall. It checks, with the
// engine, that the header alone no longer identifies it.
func tnefClassOnlyRecall(t *testing.T, e *rules.Engine, seed int64) relaytest.Message {
	t.Helper()
	m := generated(t, seed, relaytest.KindTNEFRecall)
	m.Name += "-class-only"
	data := withoutFields(t, m.Data, "X-MS-Exchange-RecallReportGenerated", "X-MS-Exchange-RecallReportCfmGenerated")
	hdrLen := bytes.Index(data, []byte("\r\n\r\n"))
	if n := bytes.Count(data[:hdrLen], []byte(":EE_LegacyOutlookRecall\r\n")); n != 1 {
		t.Fatalf("generated TNEF recall has %d EE_LegacyOutlookRecall diagnostics, want 1", n)
	}
	data = bytes.Replace(data, []byte(":EE_LegacyOutlookRecall\r\n"), []byte(":EE_\r\n"), 1)
	if !bytes.Contains(data, []byte("application/ms-tnef")) || bytes.Contains(bytes.ToLower(data[:hdrLen]), []byte("recallreport")) {
		t.Fatalf("class-only recall is not what it should be:\n%.3000s", data)
	}
	m.Data = data

	h, body, err := headers.ReadHeader(bytes.NewReader(data), maxHeaderBytes)
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(&rules.Message{From: m.From, Rcpts: m.To, Size: int64(len(data)), Header: h}); d.Action != rules.Route {
		t.Fatalf("class-only recall: the header alone decides %s; the test would not prove the TNEF class is read", d)
	}
	info, err := rules.ScanBody(h, body, rules.ScanLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(&rules.Message{From: m.From, Rcpts: m.To, Size: int64(len(data)), Header: h, Body: info}); d.Action != rules.Bypass {
		t.Fatalf("class-only recall: the engine decides %s on the whole message, want bypass", d)
	}
	return m
}

// With the default rules, recall traffic (a recall request, a legacy TNEF
// recall with and without its recall fields, a recall report), calendar
// items and mail another service or this relay already processed go
// straight back to the tenant: the vendor never sees them, and the tenant
// gets each once, byte for byte as sent under the relay's Received field
// and loop marker. An ordinary message sent alongside does go through the
// vendor.
func TestRecallTrafficBypassesVendors(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, st store.Store) {
		l := newRulesLoop(t, st, rules.Default("vendor"),
			vendorSpec{"vendor", "strip-ms-headers,rewrite-message-id,footer-text"})
		v := l.vendors["vendor"]

		codeTwo := generated(t, 1, relaytest.KindHTML)
		codeTwo.Name += "-codetwo-processed"
		codeTwo.Data = append([]byte("X-CodeTwoProcessed: true\r\n"), codeTwo.Data...)
		looped := generated(t, 1, relaytest.KindRelated)
		looped.Name += "-relay-processed"
		looped.Data = append([]byte(loopMarkerName+": true\r\n"), looped.Data...)

		bypass := []relaytest.Message{
			generated(t, 1, relaytest.KindRecallRequest),
			generated(t, 1, relaytest.KindTNEFRecall),
			tnefClassOnlyRecall(t, l.engine, 2), // seed 2: another Message-ID
			generated(t, 1, relaytest.KindRecallReport),
			generated(t, 1, relaytest.KindCalendar),
			codeTwo,
			looped,
		}
		ordinary := generated(t, 1, relaytest.KindPlain)

		ids := map[string]string{}
		for _, m := range append(slices.Clone(bypass), ordinary) {
			id := messageID(t, m.Data)
			if prev, ok := ids[id]; ok {
				t.Fatalf("%s and %s share Message-ID %s", prev, m.Name, id)
			}
			ids[id] = m.Name
		}

		delivered := l.send(t, len(bypass)+1, append(slices.Clone(bypass), ordinary)...)

		for _, m := range bypass {
			id := messageID(t, m.Data)
			if got := byMessageID(t, v.Received(), id); len(got) != 0 {
				t.Errorf("%s: the vendor received it %d times", m.Name, len(got))
			}
			d, ok := deliveredOnceIntact(t, m.Name, m, delivered)
			if !ok {
				continue
			}
			if d.MailFrom != m.From || strings.Join(d.Rcpts, ",") != strings.Join(m.To, ",") {
				t.Errorf("%s: envelope %s→%v, want %s→%v", m.Name, d.MailFrom, d.Rcpts, m.From, m.To)
			}
			checkBypassed(t, m.Name, m.Data, d.Data)
			if bytes.Contains(d.Data, []byte("X-RecallRelay-Ref:")) {
				t.Errorf("%s: a bypassed message carries a reference", m.Name)
			}
		}

		// The ordinary message went through the vendor, came back changed
		// and was restored.
		id := messageID(t, ordinary.Data)
		if got := byMessageID(t, v.Received(), id); len(got) != 1 {
			t.Fatalf("%s: the vendor received it %d times, want once", ordinary.Name, len(got))
		}
		if n := len(v.Received()); n != 1 {
			t.Errorf("the vendor received %d messages, want only %s", n, ordinary.Name)
		}
		d, ok := deliveredOnceIntact(t, ordinary.Name, ordinary, delivered)
		if ok && !bytes.Contains(d.Data, []byte("This message was processed by fakemta.")) {
			t.Errorf("%s: delivered without the vendor's footer", ordinary.Name)
		}
	})
}

const (
	signatureBehaviors = "footer-html,strip-ms-headers"
	scannerBehaviors   = "stamp-marker,rewrite-message-id"
)

// chainRules sends mail from the organization through the signature
// service and then the scanner, and everything else to the signature
// service only.
const chainRules = `organization:
  accepted_domains: [contoso.com]
default_route: [signature]
rules:
  - name: sign-then-scan
    when: {sender_in_organization: true}
    actions:
      route: [signature, scanner]
`

// A message the rules route to [signature, scanner] goes to the signature
// service, then, as the signature service sent it back, to the scanner, and
// reaches the tenant once, after the scanner, with the signature's changes
// and its recall identity restored byte for byte. A message from outside
// the organization goes to the signature service only.
func TestVendorChain(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, st store.Store) {
		set, err := rules.Parse([]byte(chainRules), "chain.yaml")
		if err != nil {
			t.Fatal(err)
		}
		l := newRulesLoop(t, st, set,
			vendorSpec{"signature", signatureBehaviors}, vendorSpec{"scanner", scannerBehaviors})
		sig, scan := l.vendors["signature"], l.vendors["scanner"]

		chained := []relaytest.Message{
			generated(t, 1, relaytest.KindPlain),
			generated(t, 1, relaytest.KindHTML),
			generated(t, 1, relaytest.KindAttachment),
			generated(t, 1, relaytest.KindTNEF),
		}
		external := generated(t, 1, relaytest.KindRelated)
		external.Name += "-external-sender"
		external.From = "kari.hensien@fabrikam.com"

		delivered := l.send(t, len(chained)+1, append(slices.Clone(chained), external)...)

		for _, m := range chained {
			id := messageID(t, m.Data)
			atSig := byMessageID(t, sig.Received(), id)
			atScan := byMessageID(t, scan.Received(), id) // the signature service keeps Message-ID
			if len(atSig) != 1 || len(atScan) != 1 {
				t.Errorf("%s: signature got it %d times, scanner %d times; want once each", m.Name, len(atSig), len(atScan))
				continue
			}
			if !atSig[0].At.Before(atScan[0].At) {
				t.Errorf("%s: the scanner got it (%s) before the signature service (%s)", m.Name, atScan[0].At, atSig[0].At)
			}
			if !hasFieldPrefix(t, atSig[0].Data, "X-MS-Exchange-CrossPremises-") {
				t.Errorf("%s: the signature service got it without its CrossPremises fields", m.Name)
			}
			// The scanner got what the signature service sent back.
			var sigOut []byte
			for _, o := range sig.Returned() {
				if messageID(t, o.Delivery.Data) == id {
					sigOut = o.Delivery.Data
				}
			}
			if sigOut == nil {
				t.Errorf("%s: the signature service sent nothing back", m.Name)
				continue
			}
			if !bytes.Equal(bodyOf(t, atScan[0].Data), bodyOf(t, sigOut)) {
				t.Errorf("%s: the scanner's body is not what the signature service sent back", m.Name)
			}
			if hasFieldPrefix(t, atScan[0].Data, "X-MS-") {
				t.Errorf("%s: the scanner's copy carries X-MS- fields the signature service stripped:\n%.1500s", m.Name, atScan[0].Data)
			}
			if m.Kind != relaytest.KindTNEF && bytes.Equal(bodyOf(t, atScan[0].Data), bodyOf(t, m.Data)) {
				t.Errorf("%s: the scanner's copy lacks the signature service's footer", m.Name)
			}

			d, ok := deliveredOnceIntact(t, m.Name, m, delivered)
			if !ok {
				continue
			}
			var scanOut []byte
			for _, o := range scan.Returned() {
				if bytes.Equal(bodyOf(t, o.Delivery.Data), bodyOf(t, d.Data)) {
					scanOut = o.Delivery.Data
				}
			}
			if scanOut == nil {
				t.Errorf("%s: the tenant's body is not what the scanner sent back", m.Name)
			} else if r := relaytest.CompareIdentity(m.Data, scanOut); r.Intact {
				t.Errorf("%s: the vendors damaged nothing: the test proves nothing", m.Name)
			}
			if !bytes.Contains(d.Data, []byte("X-CodeTwoProcessed: true\r\n")) {
				t.Errorf("%s: delivered without the scanner's marker", m.Name)
			}
			if d.MailFrom != m.From || strings.Join(d.Rcpts, ",") != strings.Join(m.To, ",") {
				t.Errorf("%s: envelope %s→%v, want %s→%v", m.Name, d.MailFrom, d.Rcpts, m.From, m.To)
			}
		}

		id := messageID(t, external.Data)
		if a, b := len(byMessageID(t, sig.Received(), id)), len(byMessageID(t, scan.Received(), id)); a != 1 || b != 0 {
			t.Errorf("%s: signature got it %d times, scanner %d times; want 1 and 0", external.Name, a, b)
		}
		deliveredOnceIntact(t, external.Name, external, delivered)
		if n, want := len(sig.Received()), len(chained)+1; n != want {
			t.Errorf("signature service got %d messages, want %d", n, want)
		}
		if n, want := len(scan.Received()), len(chained); n != want {
			t.Errorf("scanner got %d messages, want %d", n, want)
		}
	})
}

// senderRules sends the legal department's mail to the scanner only and
// everything else to the signature service.
const senderRules = `default_route: [signature]
rules:
  - name: legal-to-scanner
    when:
      sender: {domains: [legal.contoso.com]}
    actions:
      route: [scanner]
`

// The envelope sender decides the vendor: mail from legal.contoso.com
// (the domain compared without regard to case) goes to the scanner only,
// everything else, subdomains and look-alikes included, to the signature
// service only; each message reaches the tenant once, intact.
func TestSenderDomainRouting(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, st store.Store) {
		set, err := rules.Parse([]byte(senderRules), "sender.yaml")
		if err != nil {
			t.Fatal(err)
		}
		l := newRulesLoop(t, st, set,
			vendorSpec{"signature", signatureBehaviors}, vendorSpec{"scanner", scannerBehaviors})

		cases := []struct {
			name, kind, from, vendor string
		}{
			{"legal", relaytest.KindPlain, "AdeleV@legal.contoso.com", "scanner"},
			{"legal, upper case", relaytest.KindHTML, "AlexW@LEGAL.Contoso.COM", "scanner"},
			{"legal, winmail.dat", relaytest.KindTNEF, "MeganB@legal.contoso.com", "scanner"},
			{"organization", relaytest.KindAttachment, "LeeG@contoso.com", "signature"},
			{"legal subdomain", relaytest.KindRelated, "NestorW@eu.legal.contoso.com", "signature"},
			{"look-alike", relaytest.KindEightBit, "IsaiahL@legal.contoso.com.fabrikam.example", "signature"},
			{"multi-recipient", relaytest.KindMultiRcpt, "DiegoS@contoso.com", "signature"},
		}
		var msgs []relaytest.Message
		for _, c := range cases {
			m := generated(t, 1, c.kind)
			m.Name, m.From = c.name, c.from
			msgs = append(msgs, m)
		}
		delivered := l.send(t, len(msgs), msgs...)

		want := map[string]int{}
		for i, c := range cases {
			m := msgs[i]
			want[c.vendor]++
			id := messageID(t, m.Data)
			for name, v := range l.vendors {
				n := len(byMessageID(t, v.Received(), id))
				if name == c.vendor && n != 1 {
					t.Errorf("%s (%s): %s got it %d times, want once", c.name, c.from, name, n)
				}
				if name != c.vendor && n != 0 {
					t.Errorf("%s (%s): %s got it %d times, want never", c.name, c.from, name, n)
				}
			}
			d, ok := deliveredOnceIntact(t, c.name, m, delivered)
			if ok && (d.MailFrom != m.From || strings.Join(d.Rcpts, ",") != strings.Join(m.To, ",")) {
				t.Errorf("%s: envelope %s→%v, want %s→%v", c.name, d.MailFrom, d.Rcpts, m.From, m.To)
			}
		}
		for name, v := range l.vendors {
			if n := len(v.Received()); n != want[name] {
				t.Errorf("%s got %d messages, want %d", name, n, want[name])
			}
		}
	})
}
