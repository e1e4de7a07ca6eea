package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relaytest"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a server.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testContext returns a context that ends after d or when the test ends.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// runOK runs "fakemta args..." and returns its standard output; any other
// exit than exitOK ends the test.
func runOK(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	code, out, stderr := runApp(t, ctx, args...)
	if code != exitOK {
		t.Fatalf("fakemta %q: exit %d: %s", args, code, stderr)
	}
	return out
}

func runApp(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut syncBuffer
	code := (&app{stdout: &out, stderr: &errOut}).run(ctx, args)
	return code, out.String(), errOut.String()
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
		err  string
	}{
		{nil, exitUsage, "Usage: fakemta COMMAND"},
		{[]string{"nonsense"}, exitUsage, `unknown command "nonsense"`},
		{[]string{"tenant", "--bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"tenant", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"vendor"}, exitUsage, "--return is required"},
		{[]string{"vendor", "--return", "127.0.0.1:1", "--behaviors", "footer-html,bogus"}, exitUsage, `unknown behaviour "bogus"`},
		{[]string{"send", "--generate"}, exitUsage, "--to is required"},
		{[]string{"send", "--to", "127.0.0.1:1"}, exitUsage, "exactly one of"},
		{[]string{"send", "--to", "127.0.0.1:1", "--generate", "--dir", "."}, exitUsage, "exactly one of"},
		{[]string{"send", "--to", "127.0.0.1:1", "--generate", "--attempts", "0"}, exitUsage, "must be positive"},
		{[]string{"send", "--to", "127.0.0.1:1", "--dir", "/nonexistent/dir"}, exitFailure, "nonexistent"},
		{[]string{"tenant", "--listen", "256.0.0.1:99999"}, exitFailure, "listen"},
		{[]string{"behaviors", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"tenant", "--expect", "all"}, exitUsage, "--expect all needs --compare-dir"},
		{[]string{"tenant", "--expect", "0"}, exitUsage, `want a positive number or "all"`},
		{[]string{"tenant", "--expect", "2", "--expect-timeout", "0s"}, exitUsage, "--expect-timeout must be positive"},
		{[]string{"tenant", "--require-tls"}, exitUsage, "--require-tls needs"},
		{[]string{"tenant", "--tls-self-signed", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, exitUsage, "exclude each other"},
		{[]string{"tenant", "--tls-cert", "c.pem"}, exitUsage, "--tls-cert needs --tls-key"},
		{[]string{"tenant", "--compare-dir", "/nonexistent/dir"}, exitFailure, "--compare-dir"},
		{[]string{"vendor", "--return", "127.0.0.1:1", "--backoff", "0s"}, exitUsage, "must be positive"},
		{[]string{"vendor", "--return", "127.0.0.1:1", "--return-ca-file", "ca.pem"}, exitUsage, "--return-ca-file needs --return-starttls"},
		{[]string{"send", "--to", "127.0.0.1:1", "--dir", ".", "--kind", "tnef"}, exitUsage, "--kind only with --generate"},
		{[]string{"send", "--to", "127.0.0.1:1", "--generate", "--kind", "tnef,bogus"}, exitUsage,
			`unknown message kind "bogus"; the kinds are plain, html, related, attachment, tnef,`},
		{[]string{"send", "--to", "127.0.0.1:1", "--dir", ".", "--count", "3"}, exitUsage, "--count only with --generate"},
		{[]string{"send", "--to", "127.0.0.1:1", "--dir", ".", "--test-names"}, exitUsage, "--test-names only with --generate"},
		{[]string{"send", "--to", "127.0.0.1:1", "--generate", "--count", "-1"}, exitUsage, "must not be negative"},
		{[]string{"send", "--to", "127.0.0.1:1", "--generate", "--senders", "a@contoso.com,a@contoso.com"}, exitUsage, `duplicate sender "a@contoso.com"`},
		{[]string{"send", "--to", "127.0.0.1:1", "--generate", "--recipients", "nobody"}, exitUsage, `recipient "nobody"`},
		{[]string{"send", "--to", "127.0.0.1:1", "--generate", "--auth-user", "u"}, exitUsage, "--auth-user and --auth-pass go together"},
		{[]string{"send", "--to", "127.0.0.1:1", "--generate", "--auth-user", "u", "--auth-pass", "p", "--auth-mech", "cram-md5"}, exitUsage,
			`--auth-mech must be PLAIN or LOGIN, not "cram-md5"`},
		{[]string{"vendor", "--return", "127.0.0.1:1", "--return-auth-pass", "p"}, exitUsage, "--return-auth-user and --return-auth-pass go together"},
		{[]string{"vendor", "--return", "127.0.0.1:1", "--auth-optional"}, exitUsage, "--auth-optional needs --auth"},
		{[]string{"tenant", "--auth", "alice"}, exitUsage, "want USER:PASS"},
		{[]string{"tenant", "--auth-optional"}, exitUsage, "--auth-optional needs --auth"},
		{[]string{"generate"}, exitUsage, "--out is required"},
	}
	for _, tc := range tests {
		code, _, stderr := runApp(t, context.Background(), tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.err) {
			t.Errorf("fakemta %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.err)
		}
	}
}

func TestBehaviorsCommand(t *testing.T) {
	t.Parallel()
	code, out, _ := runApp(t, context.Background(), "behaviors")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, b := range relaytest.Behaviors() {
		if !strings.Contains(out, b.Name) || !strings.Contains(out, b.Description) {
			t.Errorf("%s missing from the listing", b.Name)
		}
	}
}

func TestSendToTenant(t *testing.T) {
	t.Parallel()
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
	ctx := testContext(t, 30*time.Second)

	out := runOK(t, ctx, "send", "--to", tn.Addr(), "--generate", "--seed", "4",
		"--from-override", "relay@contoso.com", "--rcpt-override", "x@contoso.com, y@contoso.com")
	gen := relaytest.Generate(relaytest.GenerateOptions{Seed: 4})
	ds, err := tn.WaitDeliveries(len(gen), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		if d.MailFrom != "relay@contoso.com" || strings.Join(d.Rcpts, ",") != "x@contoso.com,y@contoso.com" || !bytes.Equal(d.Data, gen[i].Data) {
			t.Errorf("delivery %d: %q %q", i, d.MailFrom, d.Rcpts)
		}
		if !strings.Contains(out, gen[i].Name) {
			t.Errorf("output lacks %s", gen[i].Name)
		}
	}
	if strings.Count(out, "accepted") != len(gen) {
		t.Errorf("output:\n%s", out)
	}

	// A single file; a refusing tenant makes the command fail.
	file := filepath.Join(t.TempDir(), "one.eml")
	if err := os.WriteFile(file, []byte("From: a@contoso.com\nTo: b@contoso.com\nSubject: one\n\nbody\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tn.RejectRcpt("b@contoso.com", &smtpError550)
	code, out, stderr := runApp(t, ctx, "send", "--to", tn.Addr(), "--file", file)
	if code != exitFailure || !strings.Contains(out, "FAILED") || !strings.Contains(stderr, "1 of 1 messages not delivered") {
		t.Errorf("refused send: exit %d\n%s\n%s", code, out, stderr)
	}
}

func TestServersRunUntilCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan string, 2)
	var tenantOut, vendorOut syncBuffer
	done := make(chan int, 2)
	tenantApp := &app{stdout: &tenantOut, stderr: &tenantOut, ready: func(_, addr string) { addrs <- addr }}
	go func() { done <- tenantApp.run(ctx, []string{"tenant"}) }()
	var tenantAddr string
	select {
	case tenantAddr = <-addrs:
	case <-time.After(10 * time.Second):
		t.Fatal("tenant did not start")
	}
	vendorApp := &app{stdout: &vendorOut, stderr: &vendorOut, ready: func(_, addr string) { addrs <- addr }}
	go func() {
		done <- vendorApp.run(ctx, []string{"vendor", "--return", tenantAddr, "--behaviors", "stamp-marker,split-recipients"})
	}()
	var vendorAddr string
	select {
	case vendorAddr = <-addrs:
	case <-time.After(10 * time.Second):
		t.Fatal("vendor did not start")
	}

	m := relaytest.Message{Name: "m", From: "a@contoso.com", To: []string{"b@contoso.com", "c@contoso.com"},
		Data: []byte("Message-ID: <m1@contoso.com>\r\nSubject: x\r\n\r\nbody\r\n")}
	s := relaytest.Sender{Addr: vendorAddr, Timeout: 10 * time.Second}
	sendCtx, sendCancel := context.WithTimeout(ctx, 20*time.Second)
	defer sendCancel()
	if res := s.Send(sendCtx, m); !res.Accepted {
		t.Fatal(res.Err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(tenantOut.String(), "delivery from=<a@contoso.com>") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("tenant output:\n%s\nvendor output:\n%s", tenantOut.String(), vendorOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(tenantOut.String(), "message-id=<m1@contoso.com>") {
		t.Errorf("tenant output lacks the Message-ID:\n%s", tenantOut.String())
	}
	if v := vendorOut.String(); !strings.Contains(v, "received from=<a@contoso.com>") || strings.Count(v, "returned from=") != 2 {
		t.Errorf("vendor output:\n%s", v)
	}

	cancel()
	for i := 0; i < 2; i++ {
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("server exited with %d", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("server did not stop on cancellation")
		}
	}
}

var smtpError550 = smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown user"}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
