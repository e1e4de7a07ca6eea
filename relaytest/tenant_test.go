package relaytest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
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

// dialText connects to addr for a conversation by hand, bounded by
// waitTimeout, and closes the connection when the test ends.
func dialText(t *testing.T, addr string) *textproto.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	return textproto.NewConn(conn)
}

// TestTenantAcceptsBDAT speaks CHUNKING by hand (go-smtp's client has no
// BDAT), as Exchange Online does towards servers that offer it.
func TestTenantAcceptsBDAT(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	tp := dialText(t, tn.Addr())
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

func TestTenantNumbersDeliveriesAndNamesThemInTheReply(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	m := Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: n\r\n\r\nx\r\n")}
	s := fastSender(tn.Addr())
	s.Helo = "mail.fabrikam.example"
	for i := 1; i <= 2; i++ {
		res := s.Send(testContext(t), m)
		want := fmt.Sprintf("250 2.0.0 OK: queued as %d@%s", i, tn.Addr())
		if !res.Accepted || res.Replies[len(res.Replies)-1] != want {
			t.Fatalf("send %d: replies %q, want %q", i, res.Replies, want)
		}
	}
	ds := tn.Deliveries()
	for i, d := range ds {
		if d.Seq != i+1 || d.Helo != "mail.fabrikam.example" || d.AuthUser != "" {
			t.Errorf("delivery %d: seq=%d helo=%q authuser=%q", i, d.Seq, d.Helo, d.AuthUser)
		}
	}
	if d, ok := tn.BySeq(2); !ok || d.Seq != 2 {
		t.Errorf("BySeq(2) = %+v, %v", d, ok)
	}
	tn.Reset()
	if res := s.Send(testContext(t), m); !res.Accepted {
		t.Fatal(res.Err)
	}
	if ds := tn.Deliveries(); len(ds) != 1 || ds[0].Seq != 3 {
		t.Errorf("after Reset: %+v, want one delivery numbered 3", ds)
	}
	if _, ok := tn.BySeq(1); ok {
		t.Error("BySeq finds a delivery Reset forgot")
	}
}

func TestTenantMaxLineLength(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		limit  int
		line   int // bytes of the long line, CRLF included
		accept bool
		named  int // the limit the refusal names
	}{
		{"default accepts 2000", 0, DefaultMaxLineLength, true, 0},
		{"default refuses 2001", 0, DefaultMaxLineLength + 1, false, 2000},
		{"configured accepts its limit", 100, 100, true, 0},
		{"configured refuses one more", 100, 101, false, 100},
		{"raised limit", 5000, 4000, true, 0},
		{"no limit", -1, 20000, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := startTenant(t, TenantConfig{MaxLineLength: tc.limit})
			data := []byte("Subject: long\r\n\r\n" + strings.Repeat("a", tc.line-2) + "\r\nend\r\n")
			res := fastSender(tn.Addr()).Send(testContext(t), Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: data})
			if res.Accepted != tc.accept || res.Attempts != 1 {
				t.Fatalf("accepted=%v attempts=%d replies=%q, want accepted=%v", res.Accepted, res.Attempts, res.Replies, tc.accept)
			}
			if !tc.accept {
				if !strings.HasPrefix(res.Replies[0], "500 5.5.2") || !strings.Contains(res.Replies[0], fmt.Sprint(tc.named)) {
					t.Errorf("reply %q, want 500 5.5.2 naming the limit", res.Replies[0])
				}
				if n := len(tn.Deliveries()); n != 0 {
					t.Errorf("%d deliveries recorded", n)
				}
				return
			}
			if ds := tn.Deliveries(); len(ds) != 1 || !bytes.Equal(ds[0].Data, data) {
				t.Errorf("long line not delivered intact")
			}
		})
	}
}

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	type server interface {
		Start() error
		Close() error
		Addr() string
	}
	kinds := []struct {
		name string
		make func(t *testing.T) server
	}{
		{"tenant", func(t *testing.T) server {
			tn, err := NewTenant(TenantConfig{})
			if err != nil {
				t.Fatal(err)
			}
			return tn
		}},
		{"vendor", func(t *testing.T) server {
			v, err := NewVendor(VendorConfig{ReturnAddr: "127.0.0.1:1"})
			if err != nil {
				t.Fatal(err)
			}
			return v
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Run("close before start", func(t *testing.T) {
				s := k.make(t)
				if err := s.Close(); err != nil {
					t.Fatalf("Close before Start: %v", err)
				}
				if err := s.Start(); !errors.Is(err, ErrClosed) {
					t.Errorf("Start after Close = %v, want ErrClosed", err)
				}
				if a := s.Addr(); a != "" {
					t.Errorf("Addr = %q", a)
				}
			})
			t.Run("start close start", func(t *testing.T) {
				s := k.make(t)
				if a := s.Addr(); a != "" {
					t.Errorf("Addr before Start = %q", a)
				}
				if err := s.Start(); err != nil {
					t.Fatal(err)
				}
				addr := s.Addr()
				if !strings.HasPrefix(addr, "127.0.0.1:") {
					t.Errorf("Addr = %q", addr)
				}
				if err := s.Start(); err == nil || errors.Is(err, ErrClosed) {
					t.Errorf("second Start = %v, want an already-started error", err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if a := s.Addr(); a != "" {
					t.Errorf("Addr after Close = %q, want empty", a)
				}
				if err := s.Start(); !errors.Is(err, ErrClosed) {
					t.Errorf("Start after Close = %v, want ErrClosed", err)
				}
				if err := s.Close(); err != nil {
					t.Errorf("second Close: %v", err)
				}
			})
		})
	}
}

// A server given a Listener serves on it, at the address it was bound to,
// and closes it on Close: a loop's peers can be told the address first.
func TestServeOnGivenListener(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"tenant", "vendor"} {
		t.Run(kind, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			want := ln.Addr().String()
			var addr string
			var closeFn func() error
			if kind == "tenant" {
				tn := StartTenant(t, TenantConfig{Listener: ln, Listen: "192.0.2.1:25"})
				addr, closeFn = tn.Addr(), tn.Close
				res := NewTestSender(t, want).Send(context.Background(), Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: x\r\n\r\nx\r\n")})
				if !res.Accepted {
					t.Fatalf("send to the given listener: %v %q", res.Err, res.Replies)
				}
				if n := len(tn.Deliveries()); n != 1 {
					t.Fatalf("%d deliveries", n)
				}
			} else {
				v := StartVendor(t, VendorConfig{Listener: ln, ReturnAddr: "127.0.0.1:1"})
				addr, closeFn = v.Addr(), v.Close
				c := dialText(t, want)
				if _, _, err := c.ReadResponse(220); err != nil {
					t.Fatalf("greeting on the given listener: %v", err)
				}
			}
			if addr != want {
				t.Errorf("Addr = %q, want the listener's %q (Listen is ignored)", addr, want)
			}
			if err := closeFn(); err != nil {
				t.Fatal(err)
			}
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept on the listener after Close = %v, want net.ErrClosed", err)
			}
		})
	}
}

func TestTenantAuth(t *testing.T) {
	t.Parallel()
	m := Message{From: "svc@vendor.example", To: []string{"b@contoso.com"}, Data: []byte("Subject: auth\r\n\r\nx\r\n")}
	tests := []struct {
		name     string
		cfg      TenantConfig
		cred     *Credentials
		tls      bool
		accepted bool
		attempts int
		reply    string // prefix of the first reply
		user     string // recorded AuthUser
	}{
		{name: "right password, PLAIN", cfg: TenantConfig{Auth: PasswordAuth("svc", "s3cret")},
			cred: &Credentials{Username: "svc", Password: "s3cret"}, accepted: true, attempts: 1, reply: "250 ", user: "svc"},
		{name: "right password, LOGIN", cfg: TenantConfig{Auth: PasswordAuth("svc", "s3cret")},
			cred: &Credentials{Username: "svc", Password: "s3cret", Mechanism: "login"}, accepted: true, attempts: 1, reply: "250 ", user: "svc"},
		{name: "wrong password, PLAIN", cfg: TenantConfig{Auth: PasswordAuth("svc", "s3cret")},
			cred: &Credentials{Username: "svc", Password: "wrong"}, attempts: 1, reply: "535 5.7.8"},
		{name: "wrong password, LOGIN", cfg: TenantConfig{Auth: PasswordAuth("svc", "s3cret")},
			cred: &Credentials{Username: "svc", Password: "wrong", Mechanism: "LOGIN"}, attempts: 1, reply: "535 5.7.8"},
		{name: "plain error from the callback is 535", cfg: TenantConfig{Auth: func(string, string) error { return errors.New("no") }},
			cred: &Credentials{Username: "svc", Password: "x"}, attempts: 1, reply: "535 5.7.8"},
		{name: "accept anything", cfg: TenantConfig{Auth: AcceptAnyAuth},
			cred: &Credentials{Username: "whoever", Password: "whatever"}, accepted: true, attempts: 1, reply: "250 ", user: "whoever"},
		{name: "auth offered, not used", cfg: TenantConfig{Auth: AcceptAnyAuth},
			accepted: true, attempts: 1, reply: "250 "},
		{name: "auth required, not used", cfg: TenantConfig{Auth: AcceptAnyAuth, RequireAuth: true},
			attempts: 1, reply: "530 5.7.0"},
		{name: "auth required, used", cfg: TenantConfig{Auth: PasswordAuth("svc", "s3cret"), RequireAuth: true},
			cred: &Credentials{Username: "svc", Password: "s3cret"}, accepted: true, attempts: 1, reply: "250 ", user: "svc"},
		{name: "no auth on the server", cfg: TenantConfig{},
			cred: &Credentials{Username: "svc", Password: "s3cret"}, attempts: 1, reply: "the server does not offer AUTH"},
		{name: "auth only after STARTTLS, plain text", cfg: TenantConfig{Auth: AcceptAnyAuth, AuthRequiresTLS: true},
			cred: &Credentials{Username: "svc", Password: "s3cret"}, attempts: 1, reply: "the server does not offer AUTH"},
		{name: "auth only after STARTTLS, with TLS", cfg: TenantConfig{Auth: AcceptAnyAuth, AuthRequiresTLS: true},
			cred: &Credentials{Username: "svc", Password: "s3cret"}, tls: true, accepted: true, attempts: 1, reply: "250 ", user: "svc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			serverTLS, clientTLS := selfSignedTLS(t)
			cfg := tc.cfg
			if cfg.AuthRequiresTLS {
				cfg.TLSConfig = serverTLS
			}
			tn := startTenant(t, cfg)
			s := fastSender(tn.Addr())
			s.Auth = tc.cred
			if tc.tls {
				s.TLSConfig = clientTLS
			}
			res := s.Send(testContext(t), m)
			if res.Accepted != tc.accepted || res.Attempts != tc.attempts || !strings.HasPrefix(res.Replies[0], tc.reply) {
				t.Fatalf("accepted=%v attempts=%d replies=%q err=%v; want accepted=%v attempts=%d first reply %q",
					res.Accepted, res.Attempts, res.Replies, res.Err, tc.accepted, tc.attempts, tc.reply)
			}
			ds := tn.Deliveries()
			if !tc.accepted {
				if len(ds) != 0 {
					t.Errorf("%d deliveries recorded", len(ds))
				}
				return
			}
			if len(ds) != 1 || ds[0].AuthUser != tc.user || ds[0].TLS != tc.tls || ds[0].Helo != DefaultHelo {
				t.Errorf("delivery: authuser=%q tls=%v helo=%q, want %q %v %q", ds[0].AuthUser, ds[0].TLS, ds[0].Helo, tc.user, tc.tls, DefaultHelo)
			}
		})
	}

	for _, bad := range []TenantConfig{{RequireAuth: true}, {Auth: AcceptAnyAuth, AuthRequiresTLS: true}} {
		if _, err := NewTenant(bad); err == nil {
			t.Errorf("NewTenant(%+v) accepted", bad)
		}
	}
}

// TestTenantAuthTemporaryFailure checks that an *smtp.SMTPError from the
// callback is answered as it is: a 454 makes the Sender retry.
func TestTenantAuthTemporaryFailure(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := 0
	tn := startTenant(t, TenantConfig{RequireAuth: true, Auth: func(u, p string) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "directory unavailable"}
		}
		return nil
	}})
	s := fastSender(tn.Addr())
	s.Auth = &Credentials{Username: "svc", Password: "x"}
	res := s.Send(testContext(t), Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: t\r\n\r\nx\r\n")})
	if !res.Accepted || res.Attempts != 2 || !strings.Contains(res.Replies[0], "454 4.7.0 directory unavailable") {
		t.Fatalf("%+v", res)
	}
	if ds := tn.Deliveries(); len(ds) != 1 || ds[0].AuthUser != "svc" {
		t.Errorf("deliveries %+v", ds)
	}
}

// TestTenantAuthLoginByHand runs AUTH LOGIN without an initial response
// (go-sasl's client always sends one) and checks that a login lasts for
// the following transactions of the connection.
func TestTenantAuthLoginByHand(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{Auth: PasswordAuth("svc", "s3cret"), RequireAuth: true})
	tp := dialText(t, tn.Addr())
	step := func(code int, format string, args ...any) string {
		t.Helper()
		if format != "" {
			if err := tp.PrintfLine(format, args...); err != nil {
				t.Fatal(err)
			}
		}
		_, msg, err := tp.ReadResponse(code)
		if err != nil {
			t.Fatalf("after %q: want %d: %v", fmt.Sprintf(format, args...), code, err)
		}
		return msg
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	step(220, "")
	if ehlo := step(250, "EHLO by.hand"); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO lacks AUTH: %q", ehlo)
	}
	step(530, "MAIL FROM:<a@contoso.com>")
	if msg := step(334, "AUTH LOGIN"); msg != b64("Username:") {
		t.Errorf("first challenge %q", msg)
	}
	if msg := step(334, "%s", b64("svc")); msg != b64("Password:") {
		t.Errorf("second challenge %q", msg)
	}
	step(235, "%s", b64("s3cret"))
	step(250, "MAIL FROM:<a@contoso.com>")
	step(250, "RCPT TO:<b@contoso.com>")
	step(354, "DATA")
	step(250, "Subject: one\r\n\r\nx\r\n.")
	step(250, "RSET")
	step(250, "MAIL FROM:<a@contoso.com>") // still authenticated
	step(250, "RCPT TO:<c@contoso.com>")
	step(354, "DATA")
	step(250, "Subject: two\r\n\r\nx\r\n.")
	step(221, "QUIT")
	ds := tn.Deliveries()
	if len(ds) != 2 || ds[0].AuthUser != "svc" || ds[1].AuthUser != "svc" || ds[0].Helo != "by.hand" {
		t.Errorf("deliveries %+v", ds)
	}
}
