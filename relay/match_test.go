package relay

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// matchFixture is an embedded store holding records made the way the
// tenant leg makes them, and a signer for their references. No SMTP.
type matchFixture struct {
	t      *testing.T
	store  Store
	signer *headers.Signer
	now    time.Time
}

func newMatchFixture(t *testing.T) *matchFixture {
	t.Helper()
	signer, err := headers.NewSigner(headers.SignerConfig{SigningKey: "k1",
		Keys: []headers.Key{{ID: "k1", Secret: bytes.Repeat([]byte("s"), 32)}}})
	if err != nil {
		t.Fatal(err)
	}
	return &matchFixture{t: t, store: storetest.Bolt(t), signer: signer, now: time.Now()}
}

// ref is the reference named name stands for.
func (f *matchFixture) ref(name string) string { return f.signer.DeriveRef([]byte(name)) }

// record stores the origin record of a message with this header block,
// under the reference named name.
func (f *matchFixture) record(name, hdr string, route ...string) *headers.Record {
	f.t.Helper()
	ref := f.ref(name)
	h := parseHeader(f.t, hdr)
	if len(route) == 0 {
		route = []string{"vendor"}
	}
	rec := &headers.Record{Ref: ref, MailFrom: "ann@contoso.com", Rcpts: []string{"bob@fabrikam.example", "eve@fabrikam.example"},
		ReceivedAt: f.now, MessageID: h.MessageID(), Fingerprint: h.Fingerprint(),
		Fields: h.Capture(headers.MustMatcher(headers.DefaultCapture...)), Route: route}
	if err := f.store.Put(context.Background(), rec, time.Hour); err != nil {
		f.t.Fatal(err)
	}
	return rec
}

func (f *matchFixture) stamp(name string, issued time.Time) string {
	return "X-RecallRelay-Ref: " + f.signer.Stamp(f.ref(name), 0, issued) + "\r\n"
}

func (f *matchFixture) matcher(fallback bool) *recordMatcher {
	return &recordMatcher{store: f.store, signer: f.signer, refHeader: headers.DefaultRefHeader,
		ttl: time.Hour, now: func() time.Time { return f.now }, fallback: fallback,
		warn: func(string, string, string) {}}
}

// forge changes one character of a reference's signature.
func forge(field string) string {
	i := strings.Index(field, "s=") + 2
	c := byte('A')
	if field[i] == 'A' {
		c = 'B'
	}
	return field[:i] + string(c) + field[i+1:]
}

func parseHeader(t *testing.T, hdr string) *headers.Header {
	t.Helper()
	h, _, err := headers.ReadHeader(strings.NewReader(hdr+"\r\n"), 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const (
	matchHeader = "From: ann@contoso.com\r\nTo: bob@fabrikam.example\r\nSubject: figures\r\n" +
		"Date: Mon, 2 Jan 2023 10:00:00 +0000\r\nMessage-ID: <m1@contoso.com>\r\n" +
		"X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n"
	otherHeader = "From: ann@contoso.com\r\nTo: bob@fabrikam.example\r\nSubject: other\r\n" +
		"Date: Mon, 2 Jan 2023 11:00:00 +0000\r\nMessage-ID: <m2@contoso.com>\r\n"
)

// The record matcher: a reference must verify, be fresh and name a record
// whose envelope agrees; without a reference, fallback matching (when
// allowed) by Message-ID, then fingerprint, must be unique and agree too.
func TestRecordMatcher(t *testing.T) {
	f := newMatchFixture(t)
	f.record("ref1", matchHeader)
	f.record("ref2", otherHeader)
	f.record("chain", strings.Replace(strings.Replace(matchHeader, "<m1@", "<m3@", 1), "figures", "chained", 1), "signatures", "scanner")
	// Two records of one Message-ID whose captured fields differ: a
	// fallback match cannot tell them apart.
	twin := strings.Replace(strings.Replace(matchHeader, "<m1@", "<twin@", 1), "10:00:00", "12:00:00", 1)
	f.record("twinA", twin+"Thread-Topic: a\r\n")
	f.record("twinB", twin+"Thread-Topic: b\r\n")

	ann := envelope{from: "ann@contoso.com", rcpts: []string{"bob@fabrikam.example"}}
	tests := []struct {
		name     string
		hdr      string
		env      envelope
		fallback bool
		wantRef  string
		wantHow  string
		wantCode int // 0: no refusal
		wantText string
	}{
		{"reference", f.stamp("ref1", f.now) + "Subject: anything\r\n", ann, false, "ref1", "reference", 0, ""},
		{"reference beats a Message-ID of another record", f.stamp("ref1", f.now) + "Message-ID: <m2@contoso.com>\r\n", ann, true, "ref1", "reference", 0, ""},
		{"forged signature", forge(f.stamp("ref1", f.now)), ann, true, "", "reference", 550, "signature invalid"},
		{"malformed reference", "X-RecallRelay-Ref: nonsense\r\n", ann, true, "", "reference", 550, "malformed"},
		{"expired reference", f.stamp("ref1", f.now.Add(-2*time.Hour)), ann, true, "", "reference", 550, "expired"},
		{"reference to no record", f.stamp("gone", f.now), ann, true, "", "none", 0, ""},
		{"references to two records", f.stamp("ref1", f.now) + f.stamp("ref2", f.now), ann, true, "", "reference", 550, "different records"},
		{"other sender", f.stamp("ref1", f.now), envelope{from: "mallory@evil.example", rcpts: ann.rcpts}, true, "", "reference", 550, "MAIL FROM differs"},
		{"recipient not recorded", f.stamp("ref1", f.now), envelope{from: ann.from, rcpts: []string{"carol@fabrikam.example"}}, true, "", "reference", 550, "carol@fabrikam.example was not a recipient"},
		{"by Message-ID", matchHeader, ann, true, "ref1", "message-id", 0, ""},
		{"by fingerprint", strings.Replace(matchHeader, "<m1@contoso.com>", "<rewritten@vendor.example>", 1), ann, true, "ref1", "fingerprint", 0, ""},
		{"fallback not allowed", matchHeader, ann, false, "", "none", 0, ""},
		{"fallback, other sender", matchHeader, envelope{from: "mallory@evil.example", rcpts: ann.rcpts}, true, "", "none", 0, ""},
		{"fallback ambiguous", twin, ann, true, "", "none", 0, ""},
		{"chain without reference", strings.Replace(strings.Replace(matchHeader, "<m1@", "<m3@", 1), "figures", "chained", 1), ann, true, "", "message-id", 550, "chain of vendors"},
		{"nothing to go by", "Subject: unknown\r\n", ann, true, "", "none", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := f.matcher(tt.fallback).find(context.Background(), parseHeader(t, tt.hdr), tt.env)
			if m.how != tt.wantHow {
				t.Errorf("how %q, want %q", m.how, tt.wantHow)
			}
			var se *smtp.SMTPError
			switch {
			case tt.wantCode == 0 && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantCode != 0 && (!errors.As(err, &se) || se.Code != tt.wantCode || !strings.Contains(se.Message, tt.wantText)):
				t.Fatalf("error %v, want %d …%s…", err, tt.wantCode, tt.wantText)
			}
			got, want := "", ""
			if m.rec != nil {
				got = m.rec.Ref
			}
			if tt.wantRef != "" {
				want = f.ref(tt.wantRef)
			}
			if got != want {
				t.Errorf("record %q, want %q (%s)", got, want, tt.wantRef)
			}
		})
	}

	t.Run("store failure is a storeError", func(t *testing.T) {
		broken := newMatchFixture(t)
		broken.store.(interface{ Close() error }).Close()
		_, err := broken.matcher(true).find(context.Background(), parseHeader(t, matchHeader), ann)
		var ste *storeError
		if !errors.As(err, &ste) {
			t.Fatalf("error %v (%T), want a *storeError", err, err)
		}
	})
}

// The delivery claim: each recipient gets a record's message once; a
// claim is released only when the tenant certainly does not have the
// message.
func TestDeliveryClaim(t *testing.T) {
	f := newMatchFixture(t)
	bob, eve := "bob@fabrikam.example", "eve@fabrikam.example"
	newClaim := func(rec *headers.Record) *deliveryClaim {
		return &deliveryClaim{store: f.store, rec: rec, lease: time.Hour, timeout: 5 * time.Second, maxReturns: 2,
			warn: func(string, error) {}}
	}
	take := func(t *testing.T, rec *headers.Record, rcpts ...string) (*deliveryClaim, bool, error) {
		t.Helper()
		c := newClaim(rec)
		skip, err := c.take(context.Background(), rcpts)
		return c, skip, err
	}
	code := func(err error) int {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se.Code
		}
		return 0
	}

	t.Run("delivered, then suppressed, then refused past the bound", func(t *testing.T) {
		rec := f.record("c1", matchHeader)
		c, skip, err := take(t, rec, bob, eve)
		if err != nil || skip || len(c.claimed) != 2 {
			t.Fatalf("first: claimed %v skip %v err %v", c.claimed, skip, err)
		}
		c.settle(delivered)
		for i := 0; i < 2; i++ {
			c, skip, err = take(t, rec, bob, eve)
			if err != nil || !skip || len(c.suppressed) != 2 {
				t.Fatalf("copy %d: suppressed %v skip %v err %v", i+1, c.suppressed, skip, err)
			}
		}
		if _, _, err = take(t, rec, bob); code(err) != 550 {
			t.Fatalf("copy past the bound: %v, want 550", err)
		}
	})
	t.Run("refused by the tenant: released", func(t *testing.T) {
		rec := f.record("c2", matchHeader)
		c, _, _ := take(t, rec, bob)
		c.settle(notDelivered)
		if c, skip, err := take(t, rec, bob); err != nil || skip || len(c.claimed) != 1 {
			t.Fatalf("after release: claimed %v skip %v err %v", c.claimed, skip, err)
		}
	})
	t.Run("verdict unknown: kept", func(t *testing.T) {
		rec := f.record("c3", matchHeader)
		c, _, _ := take(t, rec, bob)
		c.settle(unknown)
		if _, _, err := take(t, rec, bob); code(err) != 451 {
			t.Fatalf("a copy while the verdict is unknown: %v, want 451", err)
		}
	})
	t.Run("some recipients have it already", func(t *testing.T) {
		rec := f.record("c4", matchHeader)
		c, _, _ := take(t, rec, bob)
		c.settle(delivered)
		c, skip, err := take(t, rec, bob, eve)
		if err != nil || skip || strings.Join(c.claimed, ",") != eve || strings.Join(c.suppressed, ",") != bob {
			t.Fatalf("claimed %v suppressed %v skip %v err %v", c.claimed, c.suppressed, skip, err)
		}
	})
	t.Run("a copy in delivery: 451, and nothing stays claimed", func(t *testing.T) {
		rec := f.record("c5", matchHeader)
		first, _, _ := take(t, rec, eve)
		if _, _, err := take(t, rec, bob, eve); code(err) != 451 {
			t.Fatalf("concurrent copy: %v, want 451", err)
		}
		first.settle(delivered)
		// bob was claimed by the refused copy and must have been released.
		if c, _, err := take(t, rec, bob); err != nil || len(c.claimed) != 1 {
			t.Fatalf("bob after the refused copy: claimed %v err %v", c.claimed, err)
		}
	})
}
