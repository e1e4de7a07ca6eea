package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
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
	tn, err := relaytest.NewTenant(relaytest.TenantConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(); err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
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

// allRoles is a behaviour that is a ReceiveFilter, a Transformer and a
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
	return append([]byte("X-All-Roles: yes\r\n"), data...), nil
}

func (allRoles) Plan(p *relaytest.ReturnPlan) {
	p.Transactions = append(p.Transactions, p.Transactions[0])
}

type refusals struct {
	mu  sync.Mutex
	got []string
}

func (r *refusals) refused(d relaytest.Delivery, by string, err *smtp.SMTPError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, by+" "+smtpReply(err)+" "+string(d.Data))
}

// observeRefusals keeps every role of a behaviour: the filter refuses (and
// is observed), the transform and the plan still apply.
func TestObserveRefusalsKeepsRoles(t *testing.T) {
	t.Parallel()
	tn, err := relaytest.NewTenant(relaytest.TenantConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(); err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	obs := &refusals{}
	v, err := relaytest.NewVendor(relaytest.VendorConfig{ReturnAddr: tn.Addr(),
		Behaviors: observeRefusals([]relaytest.Behavior{allRoles{}, relaytest.MustParseBehaviors("passthrough")[0]}, obs)})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	refused := sendOne(t, v.Addr(), relaytest.Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: refuse-me\r\n\r\nx\r\n")})
	if refused.Accepted {
		t.Fatal("the filter did not refuse")
	}
	if res := sendOne(t, v.Addr(), relaytest.Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: ok\r\n\r\nx\r\n")}); !res.Accepted {
		t.Fatal(res.Err)
	}
	ds, err := tn.WaitDeliveries(2, 20*time.Second) // the plan doubles the transaction
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if !bytes.HasPrefix(d.Data, []byte("X-All-Roles: yes\r\nSubject: ok")) {
			t.Errorf("delivered %q", d.Data)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.got) != 1 || obs.got[0] != "all-roles 554 5.7.1 no Subject: refuse-me\r\n\r\nx\r\n" {
		t.Errorf("observed %q", obs.got)
	}
}
