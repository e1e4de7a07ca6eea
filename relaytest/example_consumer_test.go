package relaytest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relaytest"
)

// This file is written the way a project that uses relaytest would write
// its tests: signatureService is the consumer's own code under test, a tiny
// signature service that appends a footer, gives every message a new
// Message-ID and relays it within the SMTP session to its next hop (here a
// relaytest.Tenant), with STARTTLS and AUTH when configured. The test and
// the example check what arrives.

// signatureService is the consumer's service under test.
type signatureService struct {
	cfg  sigConfig
	ln   net.Listener
	srv  *smtp.Server
	seq  atomic.Int64
	done chan struct{}
}

// sigConfig configures the service's way to its next hop.
type sigConfig struct {
	next string             // host:port
	tls  *tls.Config        // nil: plain text
	auth func() sasl.Client // nil: no AUTH
}

const sigFooter = "-- \r\nSent with SigCo\r\n"

// startSignatureService listens on the loopback interface.
func startSignatureService(cfg sigConfig) (*signatureService, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &signatureService{cfg: cfg, ln: ln, done: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sigSession{svc: s}, nil
	}))
	s.srv.Domain = "sigco.example"
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *signatureService) Addr() string { return s.ln.Addr().String() }

func (s *signatureService) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// forward relays one message to the next hop.
func (s *signatureService) forward(from string, to []string, data []byte) error {
	var c *smtp.Client
	var err error
	if s.cfg.tls != nil {
		c, err = smtp.DialStartTLS(s.cfg.next, s.cfg.tls)
	} else {
		c, err = smtp.Dial(s.cfg.next)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = 10*time.Second, 10*time.Second
	if s.cfg.auth != nil {
		if err := c.Auth(s.cfg.auth()); err != nil {
			return err
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

type sigSession struct {
	svc  *signatureService
	from string
	to   []string
}

func (x *sigSession) Mail(from string, _ *smtp.MailOptions) error { x.from = from; return nil }
func (x *sigSession) Rcpt(to string, _ *smtp.RcptOptions) error   { x.to = append(x.to, to); return nil }
func (x *sigSession) Reset()                                      { x.from, x.to = "", nil }
func (x *sigSession) Logout() error                               { return nil }

func (x *sigSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	id := fmt.Sprintf("<sig-%d@sigco.example>", x.svc.seq.Add(1))
	out := append(replaceMessageID(data, id), sigFooter...)
	if err := x.svc.forward(x.from, x.to, out); err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 0}, Message: "next hop: " + err.Error()}
	}
	return nil
}

// replaceMessageID swaps the Message-ID field (with its folded lines) for
// one with id.
func replaceMessageID(data []byte, id string) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	sc.Split(func(b []byte, atEOF bool) (int, []byte, error) { // lines with their CRLF
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return i + 1, b[:i+1], nil
		}
		if atEOF && len(b) > 0 {
			return len(b), b, nil
		}
		return 0, nil, nil
	})
	inHeader, skipping := true, false
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case !inHeader:
		case len(bytes.TrimRight(line, "\r\n")) == 0:
			inHeader, skipping = false, false
		case skipping && (line[0] == ' ' || line[0] == '\t'):
			continue
		case len(line) > 11 && strings.EqualFold(string(line[:11]), "Message-ID:"):
			out.WriteString("Message-ID: " + id + "\r\n")
			skipping = true
			continue
		default:
			skipping = false
		}
		out.Write(line)
	}
	return out.Bytes()
}

// withTestName puts the test-name field on top of a message, so that the
// delivery can be found although the service rewrites Message-ID and the
// same subject goes to the same recipient several times.
func withTestName(m relaytest.Message, name string) relaytest.Message {
	m.Data = append([]byte(relaytest.TestNameHeader+": "+name+"\r\n"), m.Data...)
	return m
}

// TestSignatureServiceKeepsRecallIdentity is the consumer's test: three
// messages alike but for their test name go through the service, which
// logs in to the tenant; each delivery is found by its test name and the
// identity comparison explains what recall would lose.
func TestSignatureServiceKeepsRecallIdentity(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := relaytest.SelfSignedTLS(t)
	tenant := relaytest.StartTenant(t, relaytest.TenantConfig{
		TLSConfig: serverTLS, RequireTLS: true,
		Auth: relaytest.PasswordAuth("sigco", "s3cret"), RequireAuth: true, AuthRequiresTLS: true,
	})
	svc, err := startSignatureService(sigConfig{next: tenant.Addr(), tls: clientTLS, auth: func() sasl.Client {
		return sasl.NewPlainClient("", "sigco", "s3cret")
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Close(); err != nil {
			t.Errorf("close service: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	base := relaytest.Generate(relaytest.GenerateOptions{Seed: 1})[0]
	sender := relaytest.NewTestSender(t, svc.Addr())
	sent := make(map[string]relaytest.Message)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("%s/%d", t.Name(), i)
		m := withTestName(base, name)
		sent[name] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := sender.Send(ctx, m); !res.Accepted {
				mu.Lock()
				defer mu.Unlock()
				t.Errorf("send %s: %v", name, res.Err)
			}
		}()
	}
	wg.Wait()

	for name, m := range sent {
		d, err := tenant.WaitFor(ctx, relaytest.MatchTestName(name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(d.Data, []byte(sigFooter)) {
			t.Errorf("%s: no footer", name)
		}
		if d.AuthUser != "sigco" || !d.TLS {
			t.Errorf("%s: the service did not log in to the tenant over TLS (AuthUser %q, TLS %v)", name, d.AuthUser, d.TLS)
		}
		// The service is known to rewrite Message-ID (recall then cannot
		// find the message); anything else it breaks fails the test, with
		// the sent and delivered bytes of every field concerned.
		r := relaytest.CompareIdentity(m.Data, d.Data)
		if r.Intact || fmt.Sprint(r.Changed) != "[message-id]" || len(r.Missing)+len(r.Added) != 0 || r.TNEFLost || r.TNEFChanged {
			t.Errorf("%s (delivery #%d): want exactly the Message-ID changed, got\n%s", name, d.Seq, r.Explain())
		}
		if len(r.Changes) == 0 {
			continue // the check above has reported it
		}
		if c := r.Changes[0]; len(c.Delivered) != 1 || !strings.HasPrefix(c.Delivered[0], "Message-ID: <sig-") {
			t.Errorf("%s: delivered Message-ID %q", name, c.Delivered)
		}
	}
	if got := tenant.ByMessageID(relaytest.MessageID(base.Data)); len(got) != 0 {
		t.Errorf("%d deliveries kept the original Message-ID", len(got))
	}
	// Nothing else (no duplicate, no bounce) arrives.
	if err := tenant.ExpectNoMore(ctx, len(sent), 200*time.Millisecond); err != nil {
		t.Error(err)
	}
}

// A consumer's signature service sits between a Sender (standing in for
// Exchange Online) and a Tenant. The generated message carries its test
// name (GenerateOptions.TestNames), which finds the delivery although the
// service rewrites Message-ID; Explain shows the bytes recall loses.
func Example_signatureService() {
	tenant, err := relaytest.NewTenant(relaytest.TenantConfig{})
	if err != nil {
		log.Fatal(err)
	}
	if err := tenant.Start(); err != nil {
		log.Fatal(err)
	}
	defer tenant.Close()

	svc, err := startSignatureService(sigConfig{next: tenant.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := relaytest.Generate(relaytest.GenerateOptions{
		Seed: 1, Kinds: []string{relaytest.KindPlain}, TestNames: true,
	})[0]
	sender := relaytest.Sender{Addr: svc.Addr(), Backoff: relaytest.FastBackoff, Timeout: relaytest.FastTimeout}
	if res := sender.Send(ctx, msg); !res.Accepted {
		log.Fatal(res.Err)
	}

	d, err := tenant.WaitFor(ctx, relaytest.MatchTestName(msg.Name))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("found:", d.TestName())
	fmt.Println("footer:", bytes.HasSuffix(d.Data, []byte(sigFooter)))
	fmt.Print(relaytest.CompareIdentity(msg.Data, d.Data).Explain())
	// Output:
	// found: gen-01-plain
	// footer: true
	// identity broken: 1 field changed (14 identity fields and 0 TNEF parts sent)
	// changed message-id:
	//   sent:      "Message-ID: <SJ0PR15MB41977C34D3A0502F038DA52F76C06@SJ0PR15MB4197.namprd15.prod.outlook.com>\r\n"
	//   delivered: "Message-ID: <sig-1@sigco.example>\r\n"
}
