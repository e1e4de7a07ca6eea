package relaytest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTB records what the helpers report and runs the cleanups on demand.
// Methods it does not override go to the real test.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	errors   []string
	logs     []string
	failed   bool
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
	f.failed = true
}
func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestStartTenantCleansUp(t *testing.T) {
	t.Parallel()
	var tn *Tenant
	t.Run("user", func(t *testing.T) {
		tn = StartTenant(t, TenantConfig{})
		if tn.Addr() == "" {
			t.Fatal("not started")
		}
	})
	if a := tn.Addr(); a != "" {
		t.Errorf("tenant still listening on %q after its test ended", a)
	}
}

func TestStartVendorReportsDroppedMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		alreadyFailed bool
		wait          bool
		wantErrors    int
		wantLogs      int
	}{
		{"everything sent back", false, true, 0, 0},
		{"test forgot to wait", false, false, 1, 0},
		{"test failed already", true, false, 1, 1}, // the earlier failure, and a log line
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := startTenant(t, TenantConfig{})
			delay := "delay=1h"
			if tc.wait {
				delay = "passthrough"
			}
			ft := &fakeTB{TB: t}
			v := StartVendor(ft, VendorConfig{ReturnAddr: tn.Addr(), Behaviors: MustParseBehaviors(delay)})
			if res := fastSender(v.Addr()).Send(testContext(t), named(genKind(t, KindPlain), "queued")); !res.Accepted {
				t.Fatal(res.Err)
			}
			if tc.wait {
				if err := v.WaitIdle(waitTimeout); err != nil {
					t.Fatal(err)
				}
			}
			if tc.alreadyFailed {
				ft.Errorf("an earlier failure")
			}
			ft.runCleanups()
			if v.Addr() != "" {
				t.Error("vendor not closed by the cleanup")
			}
			if len(ft.errors) != tc.wantErrors || len(ft.logs) != tc.wantLogs {
				t.Fatalf("errors %q, logs %q; want %d errors and %d logs", ft.errors, ft.logs, tc.wantErrors, tc.wantLogs)
			}
			if report := strings.Join(append(ft.errors, ft.logs...), "\n"); !tc.wait && !strings.Contains(report, `#1 "queued"`) {
				t.Errorf("report does not name the dropped message: %q", report)
			}
		})
	}
}

func TestStartVendorFastDefaults(t *testing.T) {
	t.Parallel()
	v := StartVendor(t, VendorConfig{ReturnAddr: "127.0.0.1:1"})
	if v.sender.Backoff != FastBackoff || v.sender.Timeout != FastTimeout || v.sender.MaxAttempts != 0 {
		t.Errorf("send-back sender %+v", v.sender)
	}
	v2 := StartVendor(t, VendorConfig{ReturnAddr: "127.0.0.1:1", Backoff: time.Second, Timeout: time.Minute})
	if v2.sender.Backoff != time.Second || v2.sender.Timeout != time.Minute {
		t.Errorf("explicit settings overridden: %+v", v2.sender)
	}
}

// TestNewTestSenderGivesUpOnAHungServer points the test sender at a
// listener that accepts and never answers: it must give up after its
// attempts, each ended by its timeout (shortened here to keep the test
// quick; the point is that the limits apply to a silent server).
func TestNewTestSenderGivesUpOnAHungServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", DefaultListen)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})

	s := NewTestSender(t, ln.Addr().String())
	if s.MaxAttempts != FastMaxAttempts || s.Backoff != FastBackoff || s.Timeout != FastTimeout {
		t.Fatalf("NewTestSender = %+v", s)
	}
	s.Timeout = 100 * time.Millisecond
	res := s.Send(testContext(t), Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("x\r\n")})
	if res.Accepted || res.Attempts != FastMaxAttempts {
		t.Fatalf("hung server: %+v", res)
	}
	for _, r := range res.Replies {
		if !strings.Contains(r, "timeout") {
			t.Errorf("reply %q is not a timeout", r)
		}
	}
}

func TestSelfSignedTLS(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := SelfSignedTLS(t)
	tn := StartTenant(t, TenantConfig{TLSConfig: serverTLS, RequireTLS: true})
	_, port, err := net.SplitHostPort(tn.Addr())
	if err != nil {
		t.Fatal(err)
	}
	m := Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: tls\r\n\r\nx\r\n")}
	for _, addr := range []string{tn.Addr(), net.JoinHostPort("localhost", port)} {
		s := NewTestSender(t, addr)
		s.TLSConfig = clientTLS
		if res := s.Send(testContext(t), m); !res.Accepted {
			t.Errorf("STARTTLS via %s: %+v", addr, res)
		}
	}
	// A client that does not trust the certificate fails the handshake.
	_, otherClient := SelfSignedTLS(t)
	s := NewTestSender(t, tn.Addr())
	s.TLSConfig, s.MaxAttempts = otherClient, 1
	if res := s.Send(testContext(t), m); res.Accepted || !strings.Contains(res.Replies[0], "certificate") {
		t.Errorf("untrusted certificate accepted: %+v", res)
	}
	if ds := tn.Deliveries(); len(ds) != 2 || !ds[0].TLS || !ds[1].TLS {
		t.Errorf("deliveries %+v", ds)
	}
}
