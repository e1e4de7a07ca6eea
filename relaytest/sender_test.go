package relaytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func smtpErr(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

func TestSenderRetryPolicy(t *testing.T) {
	t.Parallel()
	msg := Message{
		Name: "t", From: "adelev@contoso.com",
		To:   []string{"a@contoso.com", "b@contoso.com", "c@contoso.com"},
		Data: []byte("Subject: retry\r\n\r\nbody\r\n"),
	}
	tests := []struct {
		name        string
		maxAttempts int
		setup       func(tn *Tenant)
		accepted    bool
		attempts    int
		replies     []string // prefixes, one per attempt
		deliveries  [][]string
		rejected    []string
	}{
		{
			name:     "4xx on data is retried",
			setup:    func(tn *Tenant) { tn.RejectNextData(2, smtpErr(451, smtp.EnhancedCode{4, 7, 1}, "try later")) },
			accepted: true, attempts: 3,
			replies:    []string{"451 4.7.1 try later", "451 4.7.1", "250 "},
			deliveries: [][]string{{"a@contoso.com", "b@contoso.com", "c@contoso.com"}},
		},
		{
			name:     "5xx on data gives up at once",
			setup:    func(tn *Tenant) { tn.RejectNextData(1, smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "no relay")) },
			attempts: 1, replies: []string{"550 5.7.1 no relay"},
		},
		{
			name:        "4xx until attempts run out",
			maxAttempts: 3,
			setup:       func(tn *Tenant) { tn.RejectNextData(10, smtpErr(421, smtp.EnhancedCode{4, 3, 0}, "busy")) },
			attempts:    3, replies: []string{"421", "421", "421"},
		},
		{
			name: "5xx recipient is dropped, the others get the message",
			setup: func(tn *Tenant) {
				tn.RejectRcpt("B@contoso.com", smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "unknown user"))
			},
			accepted: true, attempts: 1, replies: []string{"250 "},
			deliveries: [][]string{{"a@contoso.com", "c@contoso.com"}},
			rejected:   []string{"b@contoso.com"},
		},
		{
			name: "4xx recipient is retried alone",
			setup: func(tn *Tenant) {
				tn.RejectRcpt("b@contoso.com", smtpErr(452, smtp.EnhancedCode{4, 2, 2}, "mailbox full"))
				tn.SetDataHook(func(*Delivery) *smtp.SMTPError {
					tn.RejectRcpt("b@contoso.com", nil) // b recovers after the first delivery
					return nil
				})
			},
			accepted: true, attempts: 2, replies: []string{"250 ", "250 "},
			deliveries: [][]string{{"a@contoso.com", "c@contoso.com"}, {"b@contoso.com"}},
		},
		{
			name: "every recipient refused",
			setup: func(tn *Tenant) {
				for _, r := range msg.To {
					tn.RejectRcpt(r, smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "unknown"))
				}
			},
			attempts: 1, replies: []string{"every recipient refused"},
			rejected: []string{"a@contoso.com", "b@contoso.com", "c@contoso.com"},
		},
		{
			name: "data hook tempfail then accept",
			setup: func(tn *Tenant) {
				var once sync.Once
				tn.SetDataHook(func(*Delivery) *smtp.SMTPError {
					var e *smtp.SMTPError
					once.Do(func() { e = smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "no space") })
					return e
				})
			},
			accepted: true, attempts: 2, replies: []string{"452 4.3.1 no space", "250 "},
			deliveries: [][]string{{"a@contoso.com", "b@contoso.com", "c@contoso.com"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tn := startTenant(t, TenantConfig{})
			tc.setup(tn)
			s := fastSender(tn.Addr())
			s.MaxAttempts = tc.maxAttempts
			res := s.Send(testContext(t), msg)
			if res.Accepted != tc.accepted || res.Attempts != tc.attempts {
				t.Fatalf("accepted=%v attempts=%d, want %v %d (replies %q, err %v)",
					res.Accepted, res.Attempts, tc.accepted, tc.attempts, res.Replies, res.Err)
			}
			if (res.Err == nil) != tc.accepted {
				t.Errorf("Err = %v with Accepted = %v", res.Err, res.Accepted)
			}
			if len(res.Replies) != len(tc.replies) {
				t.Fatalf("replies %q, want %d", res.Replies, len(tc.replies))
			}
			for i, p := range tc.replies {
				if !strings.HasPrefix(res.Replies[i], p) {
					t.Errorf("reply %d = %q, want prefix %q", i, res.Replies[i], p)
				}
			}
			ds := tn.Deliveries()
			if len(ds) != len(tc.deliveries) {
				t.Fatalf("%d deliveries, want %d", len(ds), len(tc.deliveries))
			}
			for i, d := range ds {
				if fmt.Sprint(d.Rcpts) != fmt.Sprint(tc.deliveries[i]) || !bytes.Equal(d.Data, msg.Data) {
					t.Errorf("delivery %d to %q (data ok: %v), want %q", i, d.Rcpts, bytes.Equal(d.Data, msg.Data), tc.deliveries[i])
				}
			}
			if len(res.RejectedRcpts) != len(tc.rejected) {
				t.Errorf("rejected %v, want %v", res.RejectedRcpts, tc.rejected)
			}
			for _, r := range tc.rejected {
				if !strings.HasPrefix(res.RejectedRcpts[r], "550") {
					t.Errorf("rejected[%s] = %q", r, res.RejectedRcpts[r])
				}
			}
		})
	}
}

func TestSenderBackoffDoubles(t *testing.T) {
	t.Parallel()
	tn := startTenant(t, TenantConfig{})
	tn.RejectNextData(3, smtpErr(451, smtp.EnhancedCode{4, 0, 0}, "later"))
	s := &Sender{Addr: tn.Addr(), Backoff: 40 * time.Millisecond}
	start := time.Now()
	res := s.Send(testContext(t), Message{From: "a@b.c", To: []string{"d@e.f"}, Data: []byte("x\r\n")})
	if !res.Accepted || res.Attempts != 4 {
		t.Fatalf("%+v", res)
	}
	// 40 + 80 + 160 ms of backoff.
	if el := time.Since(start); el < 280*time.Millisecond {
		t.Errorf("4 attempts took %v, want at least 280ms of backoff", el)
	}
}

func TestSenderConnectionFailures(t *testing.T) {
	t.Parallel()
	msg := Message{Name: "x", From: "a@b.c", To: []string{"d@e.f"}, Data: []byte("x\r\n")}

	t.Run("connection refused is retried", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		s := &Sender{Addr: addr, MaxAttempts: 3, Backoff: time.Millisecond, Timeout: time.Second}
		res := s.Send(testContext(t), msg)
		if res.Accepted || res.Attempts != 3 || len(res.Replies) != 3 || !strings.Contains(res.Replies[0], "connect") {
			t.Errorf("%+v", res)
		}
	})

	t.Run("silent server times out and is retried", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var mu sync.Mutex
		var conns []net.Conn
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c) // never greets
				mu.Unlock()
			}
		}()
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		}()
		s := &Sender{Addr: l.Addr().String(), MaxAttempts: 2, Backoff: time.Millisecond, Timeout: 150 * time.Millisecond}
		start := time.Now()
		res := s.Send(testContext(t), msg)
		if res.Accepted || res.Attempts != 2 {
			t.Errorf("%+v", res)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("two timed-out attempts took %v", el)
		}
	})

	t.Run("context cancellation stops retrying", func(t *testing.T) {
		tn := startTenant(t, TenantConfig{})
		tn.RejectNextData(100, smtpErr(451, smtp.EnhancedCode{4, 0, 0}, "later"))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		s := &Sender{Addr: tn.Addr(), MaxAttempts: 100, Backoff: 100 * time.Millisecond}
		start := time.Now()
		res := s.Send(ctx, msg)
		if res.Accepted || !errors.Is(res.Err, context.DeadlineExceeded) {
			t.Errorf("%+v", res)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("cancelled send took %v", el)
		}
	})

	t.Run("no recipients", func(t *testing.T) {
		res := (&Sender{Addr: "127.0.0.1:1"}).Send(testContext(t), Message{Data: []byte("x\r\n")})
		if res.Accepted || res.Err == nil || res.Attempts != 0 {
			t.Errorf("%+v", res)
		}
	})
}

func TestSenderAbortDataNeverDeliversTruncated(t *testing.T) {
	t.Parallel()
	big := Generate(GenerateOptions{Seed: 3, BigAttachmentBytes: 300 << 10})
	tests := []struct {
		name string
		msg  Message
		tls  bool
	}{
		{"small", Message{Name: "s", From: "a@b.c", To: []string{"d@e.f"}, Data: []byte("Subject: s\r\n\r\nshort body\r\n")}, false},
		{"big", big[len(big)-1], false},
		{"big over TLS", big[len(big)-1], true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := TenantConfig{}
			s := fastSender("")
			if tc.tls {
				serverTLS, clientTLS := selfSignedTLS(t)
				cfg.TLSConfig, s.TLSConfig = serverTLS, clientTLS
			}
			tn := startTenant(t, cfg)
			s.Addr = tn.Addr()
			var aborts []int
			s.AbortData = func(n int) bool {
				aborts = append(aborts, n)
				return n == 1
			}
			res := s.Send(testContext(t), tc.msg)
			if !res.Accepted || res.Attempts != 2 {
				t.Fatalf("%+v", res)
			}
			if !strings.Contains(res.Replies[0], "fault injection") {
				t.Errorf("first reply %q", res.Replies[0])
			}
			ds := tn.Deliveries()
			if len(ds) != 1 || !bytes.Equal(ds[0].Data, tc.msg.Data) {
				t.Fatalf("%d deliveries (first identical: %v), want exactly the whole message once",
					len(ds), len(ds) > 0 && bytes.Equal(ds[0].Data, tc.msg.Data))
			}
			if fmt.Sprint(aborts) != "[1 2]" {
				t.Errorf("AbortData called for attempts %v", aborts)
			}
		})
	}
}
