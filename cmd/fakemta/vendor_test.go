package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relaytest"
)

// The vendor prints the 451 of tempfail-first and the attempt that
// drop-mid-data cut off, which the client and the return side otherwise
// only see as a retry.
func TestVendorReportsRefusalsAndFailedAttempts(t *testing.T) {
	t.Parallel()
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
	v := startServer(t, "vendor", "--return", tn.Addr(), "--behaviors", "tempfail-first,drop-mid-data,footer-text", "--backoff", "5ms")

	m := relaytest.Message{From: "a@contoso.com", To: []string{"b@contoso.com"},
		Data: []byte("Message-ID: <r1@contoso.com>\r\nSubject: x\r\n\r\nbody\r\n")}
	if res := sendOne(t, v.addr, m); res.Accepted || len(res.Replies) != 1 || !strings.HasPrefix(res.Replies[0], "451 4.7.1") {
		t.Fatalf("first attempt: %+v", res)
	}
	if res := sendOne(t, v.addr, m); !res.Accepted {
		t.Fatalf("second attempt: %+v", res)
	}
	v.waitOutput(t, "returned from=")
	out := v.out.String()
	for _, want := range []string{
		fmt.Sprintf(`refused from=<a@contoso.com> rcpts=b@contoso.com size=%d message-id=<r1@contoso.com> by=tempfail-first reply="451 4.7.1 Temporary failure, please retry (fakemta tempfail-first)"`+"\n", len(m.Data)),
		fmt.Sprintf("received from=<a@contoso.com> rcpts=b@contoso.com size=%d message-id=<r1@contoso.com>\n", len(m.Data)),
		"returned from=<a@contoso.com> rcpts=b@contoso.com",
		" attempts=2 reply=\"250 ",
		"\n  attempt 1 failed: connection closed in the middle of DATA",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "refused from=") != 1 || strings.Count(out, "attempt 2 failed") != 0 {
		t.Errorf("output:\n%s", out)
	}
	if ds := tn.Deliveries(); len(ds) != 1 || !bytes.Contains(ds[0].Data, []byte("processed by fakemta")) {
		t.Errorf("tenant got %d deliveries", len(ds))
	}
}

// allRoles is a behaviour that is a ReceiveFilter, an EnvelopeTransformer
// (and a Transformer, which a vendor ignores in its favour) and a
// ReturnPlanner at once.
type allRoles struct{}

func (allRoles) Name() string { return "all-roles" }

func (allRoles) Receive(d *relaytest.Delivery) *smtp.SMTPError {
	if bytes.Contains(d.Data, []byte("refuse-me")) {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"}
	}
	return nil
}

func (allRoles) Transform(data []byte) ([]byte, error) {
	return append([]byte("X-All-Roles: no envelope\r\n"), data...), nil
}

func (allRoles) TransformEnvelope(env relaytest.Envelope, data []byte) ([]byte, error) {
	return append([]byte("X-All-Roles: "+env.From+"\r\n"), data...), nil
}

func (allRoles) Plan(p *relaytest.ReturnPlan) {
	p.Transactions = append(p.Transactions, p.Transactions[0])
}

// fakemta vendor keeps every role of a behaviour while it reports its
// refusals: the filter refuses (and is printed), the envelope transform and
// the plan still apply.
func TestVendorKeepsBehaviorRoles(t *testing.T) {
	t.Parallel()
	reg := relaytest.NewRegistry()
	if err := reg.Register("all-roles", "every role", func(string) (relaytest.Behavior, error) { return allRoles{}, nil }); err != nil {
		t.Fatal(err)
	}
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
	v := startServerWith(t, reg, "vendor", "--return", tn.Addr(), "--behaviors", "all-roles,passthrough")

	refused := relaytest.Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: refuse-me\r\n\r\nx\r\n")}
	if res := sendOne(t, v.addr, refused); res.Accepted {
		t.Fatal("the filter did not refuse")
	}
	if res := sendOne(t, v.addr, relaytest.Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: ok\r\n\r\nx\r\n")}); !res.Accepted {
		t.Fatal(res.Err)
	}
	ds, err := tn.WaitDeliveries(2, 20*time.Second) // the plan doubles the transaction
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if !bytes.HasPrefix(d.Data, []byte("X-All-Roles: a@contoso.com\r\nSubject: ok")) {
			t.Errorf("delivered %q", d.Data)
		}
	}
	want := fmt.Sprintf(`refused from=<a@contoso.com> rcpts=b@contoso.com size=%d message-id=- by=all-roles reply="554 5.7.1 no"`+"\n", len(refused.Data))
	// The line is printed before the refusal is answered.
	if out := v.out.String(); !strings.Contains(out, want) || strings.Count(out, "refused from=") != 1 {
		t.Errorf("output lacks %q once:\n%s", want, out)
	}
}

// A vendor stopped while messages wait in its queue prints a "dropped"
// line for each and exits with status 1, saying how many.
func TestVendorInterruptReportsDropped(t *testing.T) {
	t.Parallel()
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
	v := startServer(t, "vendor", "--return", tn.Addr(), "--behaviors", "delay=1h")
	msgs := relaytest.Generate(relaytest.GenerateOptions{Seed: 2, Kinds: []string{relaytest.KindPlain, relaytest.KindHTML}, TestNames: true})
	for _, m := range msgs {
		if res := sendOne(t, v.addr, m); !res.Accepted {
			t.Fatalf("%s: %v", m.Name, res.Err)
		}
	}
	v.cancel()
	if code := v.wait(t); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	out := v.out.String()
	for _, m := range msgs {
		want := fmt.Sprintf("dropped from=<%s> rcpts=%s size=%d message-id=<%s> test-name=%s\n",
			m.From, strings.Join(m.To, ","), len(m.Data), relaytest.MessageID(m.Data), m.Name)
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if want := "fakemta vendor: interrupted with 2 accepted messages not sent back"; !strings.Contains(v.err.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, v.err.String())
	}
	if n := len(tn.Deliveries()); n != 0 {
		t.Errorf("%d messages sent back", n)
	}
}

// The app's behaviour registry serves "behaviors" and "vendor --behaviors":
// a behaviour registered by a program wrapping fakemta is listed and used.
func TestVendorCustomRegistry(t *testing.T) {
	t.Parallel()
	reg := relaytest.NewRegistry()
	err := reg.Register("x-tag", "add an X-Tag field", func(arg string) (relaytest.Behavior, error) {
		return relaytest.EnvelopeTransformerFunc("x-tag", func(env relaytest.Envelope, data []byte) ([]byte, error) {
			return append([]byte("X-Tag: "+env.From+"\r\n"), data...), nil
		}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	if code := (&app{stdout: &out, stderr: &out, registry: reg}).run(context.Background(), []string{"behaviors"}); code != exitOK ||
		!regexpMatch(`(?m)^x-tag\s+add an X-Tag field$`, out.String()) || !strings.Contains(out.String(), "signature-service") {
		t.Errorf("behaviors: exit %d\n%s", code, out.String())
	}
	if code, _, stderr := runApp(t, context.Background(), "vendor", "--return", "127.0.0.1:1", "--behaviors", "x-tag"); code != exitUsage ||
		!strings.Contains(stderr, `unknown behaviour "x-tag"`) {
		t.Errorf("the built-in registry knows x-tag: exit %d %s", code, stderr)
	}

	tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
	v := startServerWith(t, reg, "vendor", "--return", tn.Addr(), "--behaviors", "x-tag,stamp-marker")
	m := relaytest.Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: x\r\n\r\nbody\r\n")}
	if res := sendOne(t, v.addr, m); !res.Accepted {
		t.Fatal(res.Err)
	}
	ds, err := tn.WaitDeliveries(1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(ds[0].Data, []byte("X-Tag: a@contoso.com\r\n")) || !bytes.Contains(ds[0].Data, []byte(relaytest.DefaultMarker+"\r\n")) {
		t.Errorf("delivered %q", ds[0].Data)
	}
}
