package relaytest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// named returns a copy of m with a TestNameHeader field on top.
func named(m Message, name string) Message {
	m.Data = append([]byte(TestNameHeader+": "+name+"\r\n"), m.Data...)
	return m
}

func TestHeaderLookups(t *testing.T) {
	t.Parallel()
	tests := []struct {
		data     string
		name, id string
	}{
		{"X-Relaytest-Name: t1\r\nMessage-ID: <a@b>\r\n\r\nbody\r\n", "t1", "a@b"},
		{"x-relaytest-name:  spaced \r\nmessage-id:\r\n <folded@b>\r\n\r\n", "spaced", "folded@b"},
		{"Message-ID: bare@b\r\nX-Relaytest-Name: first\r\nX-Relaytest-Name: second\r\n\r\n", "first", "bare@b"},
		{"Subject: none\r\n\r\nX-Relaytest-Name: in the body\r\nMessage-ID: <body@b>\r\n", "", ""},
		{"", "", ""},
	}
	for _, tc := range tests {
		d := Delivery{Data: []byte(tc.data)}
		if got := TestName(d.Data); got != tc.name || d.TestName() != tc.name {
			t.Errorf("TestName(%q) = %q, want %q", tc.data, got, tc.name)
		}
		if got := MessageID(d.Data); got != tc.id || d.MessageID() != tc.id {
			t.Errorf("MessageID(%q) = %q, want %q", tc.data, got, tc.id)
		}
	}
	if !MatchMessageID("<a@b>")(Delivery{Data: []byte(tests[0].data)}) || !MatchMessageID(" a@b ")(Delivery{Data: []byte(tests[0].data)}) {
		t.Error("MatchMessageID does not ignore angle brackets and blanks")
	}
}

func TestSeqFromReply(t *testing.T) {
	t.Parallel()
	const addr = "127.0.0.1:2525"
	tests := []struct {
		reply string
		seq   int
		ok    bool
	}{
		{"250 2.0.0 OK: queued as 7@127.0.0.1:2525", 7, true},
		{"250 2.0.0 relay says: OK: queued as 12@127.0.0.1:2525 (proxied)", 12, true},
		{"250 2.0.0 OK: queued as 7@127.0.0.1:2526", 0, false},
		{"250 2.0.0 OK: queued", 0, false},
		{"250 2.0.0 OK: queued as x@127.0.0.1:2525", 0, false},
		{"250 2.0.0 OK: queued as 0@127.0.0.1:2525", 0, false},
	}
	for _, tc := range tests {
		seq, ok := seqFromReply(tc.reply, addr)
		if seq != tc.seq || ok != tc.ok {
			t.Errorf("seqFromReply(%q) = %d, %v; want %d, %v", tc.reply, seq, ok, tc.seq, tc.ok)
		}
	}
}

// TestWaitForFindsTheRightDelivery sends several messages of the same
// subject to the same recipient through a vendor that rewrites Message-ID
// and finds each by its test name.
func TestWaitForFindsTheRightDelivery(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	v := startVendor(t, VendorConfig{ReturnAddr: tn.Addr(), Behaviors: MustParseBehaviors("rewrite-message-id,footer-text")})
	base := genKind(t, KindPlain)
	ctx := testContext(t)

	// A waiter started before anything arrives sees the delivery when it
	// comes.
	got := make(chan Delivery, 1)
	errc := make(chan error, 1)
	go func() {
		d, err := tn.WaitFor(ctx, MatchTestName("case-3"))
		got <- d
		errc <- err
	}()
	s := fastSender(v.Addr())
	for i := 1; i <= 4; i++ {
		if res := s.Send(ctx, named(base, fmt.Sprintf("case-%d", i))); !res.Accepted {
			t.Fatal(res.Err)
		}
	}
	d, err := <-got, <-errc
	if err != nil || d.TestName() != "case-3" {
		t.Fatalf("WaitFor(case-3) = %q, %v", d.TestName(), err)
	}
	if d.MessageID() == MessageID(base.Data) {
		t.Error("the vendor did not rewrite Message-ID: the test proves nothing")
	}
	// Deliveries recorded before the call count too.
	if err := v.WaitIdle(waitTimeout); err != nil {
		t.Fatal(err)
	}
	d1, err := tn.WaitForTimeout(MatchTestName("case-1"), waitTimeout)
	if err != nil || d1.TestName() != "case-1" || d1.Seq == 0 {
		t.Fatalf("WaitForTimeout(case-1) = %+v, %v", d1, err)
	}
	if ds := tn.ByTestName("case-2"); len(ds) != 1 || !strings.Contains(string(ds[0].Data), "processed by fakemta") {
		t.Errorf("ByTestName(case-2) = %d deliveries", len(ds))
	}
	if ds := tn.ByMessageID("<" + d.MessageID() + ">"); len(ds) != 1 || ds[0].Seq != d.Seq {
		t.Errorf("ByMessageID(rewritten id) = %+v", ds)
	}
	if ds := tn.ByMessageID(MessageID(base.Data)); len(ds) != 0 {
		t.Errorf("ByMessageID(original id) = %d deliveries after a rewrite", len(ds))
	}
	// At the vendor the original Message-ID is still there, once per message.
	if ds := v.ByMessageID(MessageID(base.Data)); len(ds) != 4 {
		t.Errorf("vendor ByMessageID(original) = %d messages, want 4", len(ds))
	}
	if rd, err := v.WaitFor(ctx, MatchTestName("case-4")); err != nil || rd.MessageID() != MessageID(base.Data) {
		t.Errorf("vendor WaitFor(case-4) = %q, %v", rd.MessageID(), err)
	}
}

func TestWaitForFailureListsWhatArrived(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	m := named(genKind(t, KindHTML), "the-one-that-came")
	if res := fastSender(tn.Addr()).Send(testContext(t), m); !res.Accepted {
		t.Fatal(res.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := tn.WaitFor(ctx, MatchTestName("never-sent"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor with a cancelled context = %v", err)
	}
	for _, want := range []string{"1 recorded", "#1", `name="the-one-that-came"`, "message-id=<" + MessageID(m.Data) + ">", "from=<" + m.From + ">", "subject="} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	_, err = tn.WaitForTimeout(MatchTestName("never-sent"), time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "after 1ms") {
		t.Errorf("WaitForTimeout error: %v", err)
	}
	if _, err := tn.WaitDeliveriesContext(ctx, 2); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "1 of 2") {
		t.Errorf("WaitDeliveriesContext error: %v", err)
	}
}

func TestExpectNoMore(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	m := Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: q\r\n\r\nx\r\n")}
	if res := fastSender(tn.Addr()).Send(testContext(t), named(m, "expected")); !res.Accepted {
		t.Fatal(res.Err)
	}

	// Quiet: nothing after the first delivery.
	if err := tn.ExpectNoMore(testContext(t), 1, 20*time.Millisecond); err != nil {
		t.Errorf("quiet tenant: %v", err)
	}
	// What is already there counts.
	if err := tn.ExpectNoMore(testContext(t), 0, time.Hour); err == nil || !strings.Contains(err.Error(), `name="expected"`) {
		t.Errorf("ExpectNoMore(after 0) = %v, want the first delivery named", err)
	}
	// A delivery arriving during the wait ends it at once with an error
	// naming it (an hour-long wait would otherwise end in the context's
	// error instead).
	errc := make(chan error, 1)
	go func() { errc <- tn.ExpectNoMore(testContext(t), 1, time.Hour) }()
	if res := fastSender(tn.Addr()).Send(testContext(t), named(m, "unexpected")); !res.Accepted {
		t.Fatal(res.Err)
	}
	err := <-errc
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `#2`) ||
		!strings.Contains(err.Error(), `name="unexpected"`) || strings.Contains(err.Error(), `name="expected"`) {
		t.Errorf("ExpectNoMore while a delivery arrives = %v", err)
	}
	// A context that ends early is an error: the quiet period was not seen.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tn.ExpectNoMore(ctx, 2, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("ExpectNoMore with a cancelled context = %v", err)
	}
}
