package relaytest

import (
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestTenantRecordsDeliveryExactly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  Message
	}{
		{"dot lines", Message{
			Name: "dots", From: "a@contoso.com", To: []string{"b@contoso.com"},
			Data: []byte("Subject: dots\r\n\r\n.\r\n..two\r\n.x\r\nlast line\r\n"),
		}},
		{"8bit body", Message{
			Name: "8bit", From: "a@contoso.com", To: []string{"b@contoso.com", "c@fabrikam.com"},
			Data: []byte("Subject: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße \xe2\x82\xac\r\n"),
		}},
		{"utf8 envelope", Message{
			Name: "utf8", From: "josé@contoso.com", To: []string{"zoë@contoso.com"}, UTF8: true,
			Data: []byte("From: josé@contoso.com\r\nSubject: é\r\n\r\nhi\r\n"),
		}},
		{"empty body", Message{
			Name: "empty", From: "", To: []string{"b@contoso.com"},
			Data: []byte("Subject: bounce\r\n\r\n"),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tn := startTenant(t, TenantConfig{})
			before := time.Now()
			res := fastSender(tn.Addr()).Send(testContext(t), tc.msg)
			if !res.Accepted || res.Attempts != 1 {
				t.Fatalf("send: %+v", res)
			}
			ds := tn.Deliveries()
			if len(ds) != 1 {
				t.Fatalf("got %d deliveries, want 1", len(ds))
			}
			d := ds[0]
			if !bytes.Equal(d.Data, tc.msg.Data) {
				t.Errorf("data differs:\ngot  %q\nwant %q", d.Data, tc.msg.Data)
			}
			if d.MailFrom != tc.msg.From || fmt.Sprint(d.Rcpts) != fmt.Sprint(tc.msg.To) || d.UTF8 != tc.msg.UTF8 {
				t.Errorf("envelope = %q %q utf8=%v, want %q %q utf8=%v", d.MailFrom, d.Rcpts, d.UTF8, tc.msg.From, tc.msg.To, tc.msg.UTF8)
			}
			if d.Size != int64(len(tc.msg.Data)) || d.Body != "8BITMIME" || d.TLS {
				t.Errorf("size=%d body=%q tls=%v", d.Size, d.Body, d.TLS)
			}
			if !strings.HasPrefix(d.Remote, "127.0.0.1:") || d.At.Before(before) {
				t.Errorf("remote=%q at=%v", d.Remote, d.At)
			}
			if got := tn.DeliveriesTo(strings.ToUpper(tc.msg.To[0])); len(got) != 1 {
				t.Errorf("DeliveriesTo(%q) = %d deliveries", tc.msg.To[0], len(got))
			}
			if got := tn.DeliveriesTo("nobody@contoso.com"); len(got) != 0 {
				t.Errorf("DeliveriesTo(nobody) = %d deliveries", len(got))
			}
			tn.Reset()
			if n := len(tn.Deliveries()); n != 0 {
				t.Errorf("after Reset: %d deliveries", n)
			}
		})
	}
}

func TestTenantReturnsCopies(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	m := Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: x\r\n\r\nx\r\n")}
	if res := fastSender(tn.Addr()).Send(testContext(t), m); !res.Accepted {
		t.Fatal(res.Err)
	}
	ds := tn.Deliveries()
	ds[0].Rcpts[0] = "changed@contoso.com"
	if got := tn.Deliveries()[0].Rcpts[0]; got != "b@contoso.com" {
		t.Errorf("modifying a returned delivery changed the tenant's record: %q", got)
	}
}

func TestTenantWaitDeliveries(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	start := time.Now()
	got, err := tn.WaitDeliveries(1, 50*time.Millisecond)
	if err == nil || len(got) != 0 || !strings.Contains(err.Error(), "0 of 1") {
		t.Fatalf("WaitDeliveries on an idle tenant = %d, %v", len(got), err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("timeout of 50ms took %v", time.Since(start))
	}

	m := Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: x\r\n\r\nx\r\n")}
	done := make(chan Result, 3)
	for i := 0; i < 3; i++ {
		go func() { done <- fastSender(tn.Addr()).Send(testContext(t), m) }()
	}
	got, err = tn.WaitDeliveries(3, waitTimeout)
	if err != nil || len(got) != 3 {
		t.Fatalf("WaitDeliveries(3) = %d, %v", len(got), err)
	}
	for i := 0; i < 3; i++ {
		if r := <-done; !r.Accepted {
			t.Error(r.Err)
		}
	}
}

func TestTenantTLS(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := selfSignedTLS(t)
	tn := startTenant(t, TenantConfig{TLSConfig: serverTLS, RequireTLS: true})
	m := Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: tls\r\n\r\nx\r\n")}

	plain := fastSender(tn.Addr())
	res := plain.Send(testContext(t), m)
	if res.Accepted || res.Attempts != 1 || len(res.Replies) != 1 || !strings.HasPrefix(res.Replies[0], "530 5.7.0") {
		t.Errorf("plain text to a RequireTLS tenant: %+v", res)
	}

	secure := fastSender(tn.Addr())
	secure.TLSConfig = clientTLS
	if res := secure.Send(testContext(t), m); !res.Accepted {
		t.Fatalf("STARTTLS send: %+v", res)
	}
	ds := tn.Deliveries()
	if len(ds) != 1 || !ds[0].TLS || !bytes.Equal(ds[0].Data, m.Data) {
		t.Fatalf("deliveries = %+v", ds)
	}

	if _, err := NewTenant(TenantConfig{RequireTLS: true}); err == nil {
		t.Error("RequireTLS without TLSConfig accepted")
	}
}

func TestTenantDataHookConcurrentSafe(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	var mu sync.Mutex
	seen := 0
	tn.SetDataHook(func(d *Delivery) *smtp.SMTPError {
		mu.Lock()
		defer mu.Unlock()
		seen++
		if bytes.Contains(d.Data, []byte("reject-me")) {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content refused"}
		}
		return nil
	})
	const n = 12
	var wg sync.WaitGroup
	results := make([]Result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf("message %d", i)
			if i%4 == 0 {
				body += " reject-me"
			}
			m := Message{From: "a@contoso.com", To: []string{fmt.Sprintf("r%d@contoso.com", i)},
				Data: []byte("Subject: c\r\n\r\n" + body + "\r\n")}
			results[i] = fastSender(tn.Addr()).Send(testContext(t), m)
		}()
		// Hooks are changed while traffic flows.
		tn.RejectRcpt("nobody@contoso.com", &smtp.SMTPError{Code: 550, Message: "no"})
	}
	wg.Wait()
	for i, r := range results {
		want := i%4 != 0
		if r.Accepted != want {
			t.Errorf("message %d accepted=%v, want %v (%v)", i, r.Accepted, want, r.Err)
		}
	}
	if got := len(tn.Deliveries()); got != n-n/4 {
		t.Errorf("%d deliveries, want %d", got, n-n/4)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen != n {
		t.Errorf("hook saw %d messages, want %d", seen, n)
	}
}

func TestTenantCloseStopsEverything(t *testing.T) {
	base := runtimeGoroutines()
	tn, err := NewTenant(TenantConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(); err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	addr := tn.Addr()
	// A client that connects and then idles must not keep Close waiting.
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("idle.example"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tn.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close hangs with an idle client connected")
	}
	if err := tn.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	c.Close()
	waitGoroutines(t, base)
	if res := (&Sender{Addr: addr, MaxAttempts: 1, Timeout: time.Second}).Send(testContext(t),
		Message{From: "a@b", To: []string{"c@d"}, Data: []byte("x\r\n")}); res.Accepted {
		t.Error("a closed tenant accepted mail")
	}
}

// TestTenantAcceptsBDAT speaks CHUNKING by hand (go-smtp's client has no
// BDAT), as Exchange Online does towards servers that offer it.
func TestTenantAcceptsBDAT(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	conn, err := net.DialTimeout("tcp", tn.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	tp := textproto.NewConn(conn)
	expect := func(code int) string {
		t.Helper()
		_, msg, err := tp.ReadResponse(code)
		if err != nil {
			t.Fatalf("want %d: %v", code, err)
		}
		return msg
	}
	expect(220)
	if err := tp.PrintfLine("EHLO exchange.example"); err != nil {
		t.Fatal(err)
	}
	if ehlo := expect(250); !strings.Contains(ehlo, "CHUNKING") || !strings.Contains(ehlo, "SMTPUTF8") || !strings.Contains(ehlo, "8BITMIME") {
		t.Fatalf("EHLO reply lacks extensions: %q", ehlo)
	}
	// Chunks split inside a CRLF and a line starting with a dot: BDAT data
	// is taken literally, without dot-stuffing.
	data := []byte("Subject: bdat\r\n\r\n.leading dot\r\nline two\r\n")
	chunks := [][]byte{data[:16], data[16:]}
	tp.PrintfLine("MAIL FROM:<a@contoso.com> BODY=8BITMIME")
	expect(250)
	tp.PrintfLine("RCPT TO:<b@contoso.com>")
	expect(250)
	for i, c := range chunks {
		last := ""
		if i == len(chunks)-1 {
			last = " LAST"
		}
		fmt.Fprintf(tp.W, "BDAT %d%s\r\n", len(c), last)
		tp.W.Write(c)
		if err := tp.W.Flush(); err != nil {
			t.Fatal(err)
		}
		expect(250)
	}
	tp.PrintfLine("QUIT")
	ds := tn.Deliveries()
	if len(ds) != 1 || !bytes.Equal(ds[0].Data, data) || ds[0].Body != "8BITMIME" {
		t.Fatalf("deliveries %+v", ds)
	}
}
