package relaytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// roundTrip sends msgs through a vendor with the given behaviours into a
// tenant and returns both once the vendor is idle.
func roundTrip(t *testing.T, behaviors string, msgs []Message) (*Vendor, *Tenant) {
	t.Helper()
	tn := startTenant(t, TenantConfig{})
	v := startVendor(t, VendorConfig{Name: "test", ReturnAddr: tn.Addr(), Behaviors: MustParseBehaviors(behaviors)})
	s := fastSender(v.Addr())
	for _, m := range msgs {
		if res := s.Send(testContext(t), m); !res.Accepted {
			t.Fatalf("send %s to vendor: %+v", m.Name, res)
		}
	}
	if err := v.WaitIdle(waitTimeout); err != nil {
		t.Fatal(err)
	}
	for _, r := range v.Returned() {
		if !r.Result.Accepted {
			t.Errorf("vendor could not send back: %+v", r.Result)
		}
		if len(r.TransformErrors) > 0 {
			t.Errorf("transform errors: %v", r.TransformErrors)
		}
	}
	return v, tn
}

// assertExactlyOnce checks that every message arrived at the tenant
// byte-identical, exactly once, with its envelope.
func assertExactlyOnce(t *testing.T, msgs []Message, ds []Delivery) {
	t.Helper()
	if len(ds) != len(msgs) {
		t.Errorf("%d deliveries for %d messages", len(ds), len(msgs))
	}
	for _, m := range msgs {
		var found []Delivery
		for _, d := range ds {
			if bytes.Equal(d.Data, m.Data) {
				found = append(found, d)
			}
		}
		if len(found) != 1 {
			t.Errorf("%s: delivered byte-identical %d times, want 1", m.Name, len(found))
			continue
		}
		d := found[0]
		if d.MailFrom != m.From || fmt.Sprint(d.Rcpts) != fmt.Sprint(m.To) || d.UTF8 != m.UTF8 {
			t.Errorf("%s: envelope %q %q utf8=%v, want %q %q utf8=%v", m.Name, d.MailFrom, d.Rcpts, d.UTF8, m.From, m.To, m.UTF8)
		}
	}
}

func TestVendorPassthroughKeepsMailIntact(t *testing.T) {
	t.Parallel()
	sources := []struct {
		name string
		msgs func(t *testing.T) []Message
	}{
		{"generated", func(*testing.T) []Message { return Generate(GenerateOptions{Seed: 11, BigAttachmentBytes: 2 << 20}) }},
		{"corpus", func(t *testing.T) []Message { return loadCorpus(t) }},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			msgs := src.msgs(t)
			for _, list := range []string{"passthrough", ""} {
				v, tn := roundTrip(t, list, msgs)
				assertExactlyOnce(t, msgs, tn.Deliveries())
				assertExactlyOnce(t, msgs, v.Received())
				for _, m := range msgs {
					if r := CompareIdentity(m.Data, m.Data); !r.Intact {
						t.Errorf("%s: identity of a message with itself: %v", m.Name, r)
					}
				}
			}
		})
	}
}

// byName returns the generated message of a kind.
func genKind(t *testing.T, kind string) Message {
	t.Helper()
	for _, m := range Generate(GenerateOptions{Seed: 5}) {
		if m.Kind == kind {
			return m
		}
	}
	t.Fatalf("no generated message of kind %q", kind)
	return Message{}
}

func TestVendorBehaviorsOverSMTP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		behaviors string
		kinds     []string
		check     func(t *testing.T, m Message, ds []Delivery, v *Vendor)
	}{
		{"split-recipients", []string{KindMultiRcpt, KindPlain}, func(t *testing.T, m Message, ds []Delivery, _ *Vendor) {
			var rcpts []string
			for _, d := range ds {
				if len(d.Rcpts) != 1 || !bytes.Equal(d.Data, m.Data) || d.MailFrom != m.From {
					t.Errorf("%s: delivery %q data ok=%v", m.Name, d.Rcpts, bytes.Equal(d.Data, m.Data))
				}
				rcpts = append(rcpts, d.Rcpts...)
			}
			want := append([]string(nil), m.To...)
			sort.Strings(rcpts)
			sort.Strings(want)
			if len(ds) != len(m.To) || fmt.Sprint(rcpts) != fmt.Sprint(want) {
				t.Errorf("%s: %d transactions to %v, want one per recipient of %v", m.Name, len(ds), rcpts, want)
			}
		}},
		{"duplicate", []string{KindMultiRcpt}, func(t *testing.T, m Message, ds []Delivery, _ *Vendor) {
			if len(ds) != 2 {
				t.Fatalf("%d deliveries, want 2", len(ds))
			}
			for _, d := range ds {
				if !bytes.Equal(d.Data, m.Data) || fmt.Sprint(d.Rcpts) != fmt.Sprint(m.To) {
					t.Errorf("duplicate differs: %q", d.Rcpts)
				}
			}
		}},
		{"split-recipients,duplicate", []string{KindMultiRcpt}, func(t *testing.T, m Message, ds []Delivery, _ *Vendor) {
			if len(ds) != 2*len(m.To) {
				t.Errorf("%d deliveries, want %d", len(ds), 2*len(m.To))
			}
		}},
		{"drop-mid-data", []string{KindPlain, KindAttachment, KindTNEF}, func(t *testing.T, m Message, ds []Delivery, v *Vendor) {
			if len(ds) != 1 || !bytes.Equal(ds[0].Data, m.Data) {
				t.Fatalf("%s: %d deliveries, want the whole message exactly once", m.Name, len(ds))
			}
			for _, r := range v.Returned() {
				if r.Result.Attempts != 2 || !strings.Contains(r.Result.Replies[0], "fault injection") {
					t.Errorf("%s: send-back %+v, want a cut first attempt and a retry", m.Name, r.Result)
				}
			}
		}},
		{"stamp-marker", []string{KindPlain}, func(t *testing.T, m Message, ds []Delivery, _ *Vendor) {
			want := append([]byte(DefaultMarker+"\r\n"), m.Data...)
			if len(ds) != 1 || !bytes.Equal(ds[0].Data, want) {
				t.Errorf("stamped message is not marker + original")
			}
		}},
		{"flatten-tnef", []string{KindTNEF, KindTNEFRecall, KindPlain}, func(t *testing.T, m Message, ds []Delivery, _ *Vendor) {
			if len(ds) != 1 {
				t.Fatalf("%d deliveries", len(ds))
			}
			r := CompareIdentity(m.Data, ds[0].Data)
			if m.Kind == KindPlain {
				if !bytes.Equal(ds[0].Data, m.Data) {
					t.Error("a message without TNEF was changed")
				}
				return
			}
			if !r.TNEFLost || len(tnefParts(ds[0].Data)) != 0 {
				t.Errorf("%s: TNEF part not removed: %v", m.Name, r)
			}
		}},
		{"delay=300ms", []string{KindPlain}, func(t *testing.T, m Message, ds []Delivery, v *Vendor) {
			rcv := v.Received()
			if len(ds) != 1 || len(rcv) != 1 {
				t.Fatalf("%d deliveries, %d received", len(ds), len(rcv))
			}
			if d := ds[0].At.Sub(rcv[0].At); d < 300*time.Millisecond {
				t.Errorf("sent back after %v, want at least 300ms", d)
			}
		}},
		{"signature-service", []string{KindPlain, KindHTML, KindTNEF, KindEightBit}, func(t *testing.T, m Message, ds []Delivery, _ *Vendor) {
			if len(ds) != 1 {
				t.Fatalf("%d deliveries", len(ds))
			}
			out := ds[0].Data
			assertParses(t, out)
			if !bytes.HasPrefix(out, []byte(DefaultMarker+"\r\n")) {
				t.Error("no loop marker")
			}
			if m.Kind == KindTNEF {
				// No HTML part and not a single text part: no footer.
				if htmlPartsContain(t, out, DefaultFooterHTML) {
					t.Error("HTML footer in a message without HTML")
				}
			} else if !htmlPartsContain(t, out, DefaultFooterHTML) {
				t.Error("no HTML footer")
			}
			for _, f := range exactFields(out) {
				if !isStandardField(f.Name) && !strings.EqualFold(f.Name, "X-CodeTwoProcessed") {
					t.Errorf("field %q survived strip-unknown-headers", f.Name)
				}
			}
			if r := CompareIdentity(m.Data, out); r.Intact || len(r.Missing) == 0 {
				t.Errorf("identity after signature-service: %v", r)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.behaviors, func(t *testing.T) {
			for _, kind := range tc.kinds {
				m := genKind(t, kind)
				v, tn := roundTrip(t, tc.behaviors, []Message{m})
				tc.check(t, m, tn.Deliveries(), v)
			}
		})
	}
}

func TestVendorTempfailFirst(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	v := startVendor(t, VendorConfig{ReturnAddr: tn.Addr(), Behaviors: MustParseBehaviors("tempfail-first")})
	s := fastSender(v.Addr())
	m1, m2 := genKind(t, KindPlain), genKind(t, KindHTML)
	for _, m := range []Message{m1, m2} {
		res := s.Send(testContext(t), m)
		if !res.Accepted || res.Attempts != 2 || !strings.HasPrefix(res.Replies[0], "451 4.7.1") {
			t.Errorf("%s: %+v, want a 451 4.7.1 and an accepted retry", m.Name, res)
		}
	}
	// The same message again is known and accepted at once.
	if res := s.Send(testContext(t), m1); !res.Accepted || res.Attempts != 1 {
		t.Errorf("resend: %+v", res)
	}
	if err := v.WaitIdle(waitTimeout); err != nil {
		t.Fatal(err)
	}
	if n := len(v.Received()); n != 3 {
		t.Errorf("vendor stored %d messages, want 3 (refused attempts are not stored)", n)
	}
	ds := tn.Deliveries()
	if len(ds) != 3 {
		t.Fatalf("%d deliveries, want 3", len(ds))
	}
	for _, d := range ds {
		if !bytes.Equal(d.Data, m1.Data) && !bytes.Equal(d.Data, m2.Data) {
			t.Error("a delivery matches no message sent")
		}
	}
}

// OnRefuse reports the refusal of a receive filter: the message refused,
// the behaviour's name and the reply the client got.
func TestVendorOnRefuse(t *testing.T) {
	t.Parallel()
	type refusal struct {
		d        Delivery
		behavior string
		reply    smtp.SMTPError
	}
	var (
		mu  sync.Mutex
		got []refusal
	)
	tn := startTenant(t, TenantConfig{})
	v := startVendor(t, VendorConfig{ReturnAddr: tn.Addr(), Behaviors: MustParseBehaviors("passthrough,tempfail-first"),
		OnRefuse: func(d Delivery, behavior string, reply *smtp.SMTPError) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, refusal{d, behavior, *reply})
		}})
	m := genKind(t, KindPlain)
	res := fastSender(v.Addr()).Send(testContext(t), m)
	if !res.Accepted || res.Attempts != 2 {
		t.Fatalf("%+v, want a refusal and an accepted retry", res)
	}
	if err := v.WaitIdle(waitTimeout); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("OnRefuse called %d times, want 1 (for the first attempt only)", len(got))
	}
	r := got[0]
	if r.behavior != "tempfail-first" {
		t.Errorf("behaviour %q, want tempfail-first", r.behavior)
	}
	if r.reply.Code != 451 || r.reply.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) || !strings.HasPrefix(res.Replies[0], "451 4.7.1 "+r.reply.Message) {
		t.Errorf("reply %+v, client saw %q", r.reply, res.Replies[0])
	}
	if r.d.MailFrom != m.From || fmt.Sprint(r.d.Rcpts) != fmt.Sprint(m.To) || !bytes.Equal(r.d.Data, m.Data) || r.d.Seq != 0 {
		t.Errorf("refused delivery %q %q seq=%d, data equal %v", r.d.MailFrom, r.d.Rcpts, r.d.Seq, bytes.Equal(r.d.Data, m.Data))
	}
}

func TestVendorRetriesTenantFailures(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	tn.RejectNextData(2, smtpErr(451, [3]int{4, 3, 2}, "queue full"))
	v := startVendor(t, VendorConfig{ReturnAddr: tn.Addr()})
	m := genKind(t, KindAttachment)
	if res := fastSender(v.Addr()).Send(testContext(t), m); !res.Accepted {
		t.Fatal(res.Err)
	}
	if err := v.WaitIdle(waitTimeout); err != nil {
		t.Fatal(err)
	}
	rs := v.Returned()
	if len(rs) != 1 || !rs[0].Result.Accepted || rs[0].Result.Attempts != 3 {
		t.Fatalf("returned %+v", rs)
	}
	if r := rs[0].Delivery; !bytes.Equal(r.Data, m.Data) || r.MailFrom != m.From || r.Size != int64(len(m.Data)) {
		t.Errorf("outcome does not describe what was sent back")
	}
	assertExactlyOnce(t, []Message{m}, tn.Deliveries())
}

func TestVendorCloseStopsQueue(t *testing.T) {
	base := runtimeGoroutines()
	tn, err := NewTenant(TenantConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(); err != nil {
		t.Fatal(err)
	}
	v, err := NewVendor(VendorConfig{ReturnAddr: tn.Addr(), Behaviors: MustParseBehaviors("delay=1h")})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	m := genKind(t, KindPlain)
	if res := fastSender(v.Addr()).Send(testContext(t), m); !res.Accepted {
		t.Fatal(res.Err)
	}
	if err := v.WaitIdle(50 * time.Millisecond); err == nil {
		t.Error("WaitIdle succeeded with a message delayed by an hour")
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.WaitIdleContext(cancelled); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "1 messages still queued") {
		t.Errorf("WaitIdleContext with a cancelled context = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- v.Close() }()
	select {
	case err := <-done:
		var dropped *DroppedError
		if !errors.As(err, &dropped) || len(dropped.Messages) != 1 || dropped.Messages[0].MessageID() != MessageID(m.Data) {
			t.Fatalf("Close with a queued message = %v, want a DroppedError naming it", err)
		}
		if !strings.Contains(err.Error(), "1 accepted messages not sent back") {
			t.Errorf("DroppedError text: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("vendor Close hangs")
	}
	if err := v.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if d := v.Dropped(); len(d) != 1 || d[0].Seq != 1 {
		t.Errorf("Dropped() = %+v", d)
	}
	if err := v.WaitIdle(time.Second); err != nil {
		t.Errorf("after Close: %v", err)
	}
	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base)
	if len(tn.Deliveries()) != 0 {
		t.Error("a message delayed by an hour was delivered")
	}
	if err := v.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	if a := v.Addr(); a != "" {
		t.Errorf("Addr after Close = %q", a)
	}
}

func TestNewVendorValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewVendor(VendorConfig{}); err == nil {
		t.Error("missing ReturnAddr accepted")
	}
	if _, err := NewVendor(VendorConfig{ReturnAddr: "127.0.0.1:1", Behaviors: []Behavior{nameOnly{}}}); err == nil {
		t.Error("behaviour without effect accepted")
	}
}

type nameOnly struct{}

func (nameOnly) Name() string { return "name-only" }

// TestReturnOutcomeLinks follows one message through a vendor that splits
// and duplicates it: every outcome names the received message it came from
// and leads to its own delivery at the tenant.
func TestReturnOutcomeLinks(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	v := startVendor(t, VendorConfig{Name: "links", ReturnAddr: tn.Addr(),
		Behaviors: MustParseBehaviors("rewrite-message-id,split-recipients,duplicate")})
	other := startTenant(t, TenantConfig{})
	m := named(genKind(t, KindMultiRcpt), "links")
	if res := fastSender(v.Addr()).Send(testContext(t), m); !res.Accepted {
		t.Fatal(res.Err)
	}
	if err := v.WaitIdle(waitTimeout); err != nil {
		t.Fatal(err)
	}
	rcv := v.ByTestName("links")
	if len(rcv) != 1 {
		t.Fatalf("vendor received %d messages named links", len(rcv))
	}
	outs := v.ReturnedFor(rcv[0])
	if want := 2 * len(m.To); len(outs) != want || len(v.Returned()) != want {
		t.Fatalf("%d outcomes for the message, want %d", len(outs), want)
	}
	seen := make(map[int]bool)
	transactions := make(map[int]bool)
	for _, o := range outs {
		if o.Received != rcv[0].Seq || o.TestName != "links" || o.OriginalMessageID != MessageID(m.Data) ||
			o.MessageID == o.OriginalMessageID || o.MessageID != MessageID(o.Delivery.Data) {
			t.Errorf("outcome links: received=%d name=%q original=%q id=%q", o.Received, o.TestName, o.OriginalMessageID, o.MessageID)
		}
		transactions[o.Transaction] = true
		d, ok := tn.DeliveryFor(o)
		if !ok {
			t.Errorf("no tenant delivery for outcome %d (replies %q)", o.Transaction, o.Result.Replies)
			continue
		}
		if seen[d.Seq] {
			t.Errorf("two outcomes lead to delivery #%d", d.Seq)
		}
		seen[d.Seq] = true
		if !bytes.Equal(d.Data, o.Delivery.Data) || fmt.Sprint(d.Rcpts) != fmt.Sprint(o.Delivery.Rcpts) || d.Helo != o.Delivery.Helo {
			t.Errorf("outcome %d leads to a delivery that is not what it sent", o.Transaction)
		}
		if _, ok := other.DeliveryFor(o); ok {
			t.Error("another tenant claims the delivery")
		}
		if _, ok := v.DeliveryFor(o); ok {
			t.Error("the vendor claims a delivery it sent itself")
		}
	}
	if len(transactions) != len(outs) {
		t.Errorf("transaction numbers %v are not distinct", transactions)
	}
	if _, ok := tn.DeliveryFor(ReturnOutcome{}); ok {
		t.Error("DeliveryFor(zero outcome) found something")
	}
}

// TestVendorAuth: the vendor's listener checks logins and records the
// user; its send-back logs in to a next hop that requires it.
func TestVendorAuth(t *testing.T) {
	t.Parallel()
	m := named(genKind(t, KindPlain), "vendor-auth")
	tests := []struct {
		name       string
		returnAuth *Credentials
		accepted   bool
		reply      string // prefix of the outcome's last reply
	}{
		{"right credentials", &Credentials{Username: "vendor", Password: "pw"}, true, "250 "},
		{"wrong password", &Credentials{Username: "vendor", Password: "nope"}, false, "535 5.7.8"},
		{"no credentials", nil, false, "530 5.7.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := startTenant(t, TenantConfig{Auth: PasswordAuth("vendor", "pw"), RequireAuth: true})
			v := startVendor(t, VendorConfig{ReturnAddr: tn.Addr(), ReturnAuth: tc.returnAuth,
				Auth: PasswordAuth("relay", "relay-pw"), RequireAuth: true})

			s := fastSender(v.Addr())
			if res := s.Send(testContext(t), m); res.Accepted || !strings.HasPrefix(res.Replies[0], "530 5.7.0") {
				t.Fatalf("unauthenticated send to the vendor: %+v", res)
			}
			s.Auth = &Credentials{Username: "relay", Password: "relay-pw"}
			if res := s.Send(testContext(t), m); !res.Accepted {
				t.Fatal(res.Err)
			}
			if err := v.WaitIdle(waitTimeout); err != nil {
				t.Fatal(err)
			}
			if rcv := v.Received(); len(rcv) != 1 || rcv[0].AuthUser != "relay" {
				t.Errorf("vendor received %+v, want one message from user relay", rcv)
			}
			outs := v.Returned()
			if len(outs) != 1 {
				t.Fatalf("%d outcomes", len(outs))
			}
			o := outs[0]
			last := o.Result.Replies[len(o.Result.Replies)-1]
			if o.Result.Accepted != tc.accepted || !strings.HasPrefix(last, tc.reply) || o.Result.Attempts != 1 {
				t.Fatalf("send-back: accepted=%v attempts=%d replies=%q", o.Result.Accepted, o.Result.Attempts, o.Result.Replies)
			}
			ds := tn.Deliveries()
			if !tc.accepted {
				if len(ds) != 0 {
					t.Errorf("%d deliveries", len(ds))
				}
				return
			}
			if len(ds) != 1 || ds[0].AuthUser != "vendor" || o.Delivery.AuthUser != "vendor" {
				t.Errorf("tenant delivery authuser=%q, outcome authuser=%q", ds[0].AuthUser, o.Delivery.AuthUser)
			}
		})
	}
}

// perSender is a behaviour with both transforms: the vendor must call the
// envelope one.
type perSender struct{ footer map[string]string }

func (perSender) Name() string { return "per-sender" }
func (perSender) Transform(data []byte) ([]byte, error) {
	return nil, errors.New("envelope-less Transform called")
}
func (p perSender) TransformEnvelope(env Envelope, data []byte) ([]byte, error) {
	f, ok := p.footer[strings.ToLower(env.From)]
	if !ok {
		return data, nil
	}
	return newFooterText(f).Transform(data)
}

func TestVendorEnvelopeTransformer(t *testing.T) {
	t.Parallel()
	var seen []Envelope
	var mu sync.Mutex
	record := EnvelopeTransformerFunc("record", func(env Envelope, data []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, env)
		env.To[0] = "changed@contoso.com" // must not leak into the vendor
		return data, nil
	})
	tn := startTenant(t, TenantConfig{})
	v := startVendor(t, VendorConfig{ReturnAddr: tn.Addr(), Behaviors: []Behavior{
		record, perSender{footer: map[string]string{"alice@contoso.com": "-- \r\nAlice, Sales"}},
	}})
	base := genKind(t, KindPlain)
	alice, bob := named(base, "alice"), named(base, "bob")
	alice.From, bob.From = "Alice@contoso.com", "bob@contoso.com"
	for _, m := range []Message{alice, bob} {
		if res := fastSender(v.Addr()).Send(testContext(t), m); !res.Accepted {
			t.Fatal(res.Err)
		}
	}
	if err := v.WaitIdle(waitTimeout); err != nil {
		t.Fatal(err)
	}
	for _, o := range v.Returned() {
		if len(o.TransformErrors) > 0 {
			t.Errorf("%s: transform errors %v", o.TestName, o.TransformErrors)
		}
	}
	a, err := tn.WaitFor(testContext(t), MatchTestName("alice"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tn.WaitFor(testContext(t), MatchTestName("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(a.Data, []byte("Alice, Sales")) {
		t.Error("alice's message got no footer")
	}
	if !bytes.Equal(b.Data, bob.Data) {
		t.Error("bob's message was changed")
	}
	if fmt.Sprint(a.Rcpts) != fmt.Sprint(alice.To) {
		t.Errorf("a transform's change to its envelope copy leaked: %v", a.Rcpts)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("record saw %d envelopes", len(seen))
	}
	froms := []string{seen[0].From, seen[1].From}
	sort.Strings(froms)
	if fmt.Sprint(froms) != fmt.Sprint([]string{"Alice@contoso.com", "bob@contoso.com"}) {
		t.Errorf("envelopes seen: %v", froms)
	}
}

func TestVendorMaxLineLength(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	v := startVendor(t, VendorConfig{ReturnAddr: tn.Addr(), MaxLineLength: 100})
	for _, tc := range []struct {
		line   int
		accept bool
	}{{100, true}, {101, false}} {
		data := []byte("Subject: long\r\n\r\n" + strings.Repeat("b", tc.line-2) + "\r\n")
		res := fastSender(v.Addr()).Send(testContext(t), Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: data})
		if res.Accepted != tc.accept || (!tc.accept && !strings.HasPrefix(res.Replies[0], "500 5.5.2 Line longer than 100 bytes")) {
			t.Errorf("line of %d bytes: %+v", tc.line, res)
		}
	}
	if err := v.WaitIdle(waitTimeout); err != nil {
		t.Fatal(err)
	}
	if n := len(v.Received()); n != 1 {
		t.Errorf("vendor received %d messages, want 1", n)
	}
}
