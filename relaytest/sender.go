package relaytest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Sender defaults.
const (
	DefaultMaxAttempts = 5
	DefaultBackoff     = 200 * time.Millisecond
	MaxBackoff         = 5 * time.Second
	DefaultTimeout     = 30 * time.Second
	DefaultHelo        = "sender.relaytest.invalid"
)

// Sender delivers messages to one SMTP server the way Exchange Online
// delivers to a smart host: EHLO, MAIL FROM (with SIZE, and SMTPUTF8 when the
// message needs it), RCPT TO for every recipient, DATA. A 4xx reply at any
// stage, a connection error or a timeout makes it retry the whole
// transaction after a backoff; a 5xx reply makes it give up at once. A
// recipient refused with 4xx is retried, one refused with 5xx is dropped
// while the others go on.
//
// go-smtp's client has no BDAT and adds BODY=8BITMIME whenever the server
// offers 8BITMIME, so Sender always uses DATA.
//
// The zero value of every field but Addr selects a default. A Sender may be
// used by several goroutines at once.
type Sender struct {
	// Addr is the server's host:port.
	Addr string
	// Helo is the EHLO name; DefaultHelo when empty.
	Helo string
	// MaxAttempts bounds the attempts per message; DefaultMaxAttempts
	// when zero.
	MaxAttempts int
	// Backoff is the wait before the second attempt, doubling for every
	// further attempt up to MaxBackoff; DefaultBackoff when zero.
	Backoff time.Duration
	// Timeout bounds connecting and every single read and write of an
	// attempt; DefaultTimeout when zero.
	Timeout time.Duration
	// TLSConfig, when set, makes every attempt issue STARTTLS first and
	// fail (and retry) when the server does not offer it. The EHLO before
	// STARTTLS says "localhost": go-smtp's client does not let it be set.
	TLSConfig *tls.Config
	// Auth, when set, makes every attempt authenticate after EHLO (and
	// STARTTLS) with AUTH PLAIN or LOGIN (see Credentials.Mechanism). A
	// server that does not offer AUTH or the mechanism makes the message
	// fail at once, as does a 5xx reply to AUTH (535 5.7.8 for a wrong
	// password); a 4xx reply is retried.
	Auth *Credentials
	// AbortData, when set and returning true for an attempt (numbered from
	// 1), makes that attempt write about half of the message inside DATA and
	// then close the connection without the terminating dot, as a client
	// that crashes or loses its network would. The attempt then counts as a
	// connection error and is retried.
	AbortData func(attempt int) bool
}

// Result is the outcome of Sender.Send.
type Result struct {
	// Accepted reports that the message was accepted for every recipient
	// that was not refused permanently, and for at least one.
	Accepted bool
	// Attempts is the number of attempts made.
	Attempts int
	// Replies holds one line per attempt: the final reply of that attempt
	// ("250 2.0.0 ...", "451 4.7.1 ...") or the error that ended it.
	Replies []string
	// RejectedRcpts maps every recipient refused permanently to the reply.
	RejectedRcpts map[string]string
	// Err is nil when Accepted is true; otherwise it says why the message
	// was not delivered.
	Err error
}

// errAborted marks an attempt cut off on purpose by AbortData.
var errAborted = errors.New("connection closed in the middle of DATA (fault injection)")

// Send delivers m, retrying as described on Sender, until it is accepted,
// refused permanently, MaxAttempts is reached or ctx is done.
func (s *Sender) Send(ctx context.Context, m Message) Result {
	maxAttempts := s.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	backoff := s.Backoff
	if backoff <= 0 {
		backoff = DefaultBackoff
	}
	res := Result{RejectedRcpts: make(map[string]string)}
	pending := append([]string(nil), m.To...)
	delivered := 0
	if len(pending) == 0 {
		res.Err = errors.New("relaytest: send: message has no recipients")
		return res
	}

	var lastErr error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if attempt > 1 {
			wait := backoff << (attempt - 2)
			if wait > MaxBackoff || wait <= 0 {
				wait = MaxBackoff
			}
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				res.Err = fmt.Errorf("relaytest: send %s: %w (last error: %v)", m.Name, ctx.Err(), lastErr)
				return res
			case <-timer.C:
			}
		}
		res.Attempts = attempt
		out := s.attempt(ctx, attempt, m, pending)
		res.Replies = append(res.Replies, out.reply)
		for rcpt, reply := range out.rejected {
			res.RejectedRcpts[rcpt] = reply
		}
		delivered += len(out.delivered)
		pending = out.retry
		if out.permanent != nil {
			res.Err = fmt.Errorf("relaytest: send %s: refused permanently: %w", m.Name, out.permanent)
			return res
		}
		if len(pending) == 0 {
			if delivered == 0 {
				res.Err = fmt.Errorf("relaytest: send %s: every recipient was refused", m.Name)
				return res
			}
			res.Accepted = true
			return res
		}
		lastErr = out.err
		if ctx.Err() != nil {
			res.Err = fmt.Errorf("relaytest: send %s: %w (last error: %v)", m.Name, ctx.Err(), lastErr)
			return res
		}
	}
	res.Err = fmt.Errorf("relaytest: send %s: not delivered after %d attempts: %v", m.Name, res.Attempts, lastErr)
	return res
}

// attemptOutcome is what one attempt achieved.
type attemptOutcome struct {
	reply     string            // final reply or error text
	delivered []string          // recipients the message was accepted for
	rejected  map[string]string // recipients refused permanently
	retry     []string          // recipients still to deliver to
	permanent error             // non-nil: give up
	err       error             // why recipients remain (temporary)
}

// attempt runs one SMTP session delivering m to rcpts.
func (s *Sender) attempt(ctx context.Context, n int, m Message, rcpts []string) (out attemptOutcome) {
	out.retry = rcpts
	out.rejected = make(map[string]string)
	fail := func(err error) attemptOutcome {
		out.reply = replyText(err)
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 && se.Code < 600 {
			out.permanent = err
		} else {
			out.err = err
		}
		return out
	}

	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := net.Dialer{Timeout: timeout}
	raw, err := dialer.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	conn := &faultConn{Conn: raw, timeout: timeout}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	var c *smtp.Client
	if s.TLSConfig != nil {
		c, err = smtp.NewClientStartTLS(conn, s.TLSConfig)
		if err != nil {
			return fail(fmt.Errorf("starttls: %w", err))
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout, c.SubmissionTimeout = timeout, timeout
	helo := s.Helo
	if helo == "" {
		helo = DefaultHelo
	}
	if err := c.Hello(helo); err != nil {
		return fail(fmt.Errorf("ehlo: %w", err))
	}
	if s.Auth != nil {
		a, err := saslClient(c, s.Auth)
		if err != nil {
			out.reply, out.permanent = err.Error(), fmt.Errorf("auth: %w", err)
			return out
		}
		if err := c.Auth(a); err != nil {
			return fail(fmt.Errorf("auth: %w", err))
		}
	}
	if err := c.Mail(m.From, &smtp.MailOptions{Size: int64(len(m.Data)), UTF8: m.UTF8}); err != nil {
		return fail(fmt.Errorf("mail from: %w", err))
	}
	var accepted, retry []string
	var rcptErr error
	for _, rcpt := range rcpts {
		err := c.Rcpt(rcpt, nil)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted = append(accepted, rcpt)
		case errors.As(err, &se) && se.Code >= 500 && se.Code < 600:
			out.rejected[rcpt] = replyText(err)
		case errors.As(err, &se):
			retry = append(retry, rcpt)
			rcptErr = fmt.Errorf("rcpt to %s: %w", rcpt, err)
		default:
			// The connection broke: everything not yet refused is retried.
			out.retry = withoutKeys(rcpts, out.rejected)
			return fail(fmt.Errorf("rcpt to %s: %w", rcpt, err))
		}
	}
	out.retry = retry
	if len(accepted) == 0 {
		_ = c.Reset()
		_ = c.Quit()
		if rcptErr != nil {
			out.reply, out.err = replyText(rcptErr), rcptErr
		} else {
			out.reply = "every recipient refused"
		}
		return out
	}

	out.retry = append(append([]string(nil), accepted...), retry...)
	w, err := c.Data()
	if err != nil {
		return fail(fmt.Errorf("data: %w", err))
	}
	if s.AbortData != nil && s.AbortData(n) {
		conn.cutAfter(int64(len(m.Data)) / 2)
	}
	_, werr := w.Write(m.Data)
	resp, err := w.CloseWithResponse()
	if conn.wasCut() {
		return fail(errAborted)
	}
	if werr != nil {
		return fail(fmt.Errorf("data: %w", werr))
	}
	if err != nil {
		return fail(fmt.Errorf("data: %w", err))
	}
	out.reply = "250 " + resp.StatusText
	out.delivered = accepted
	out.retry = retry
	out.err = rcptErr
	_ = c.Quit()
	return out
}

// saslClient returns the SASL client for cred among the mechanisms the
// server offers.
func saslClient(c *smtp.Client, cred *Credentials) (sasl.Client, error) {
	if ok, _ := c.Extension("AUTH"); !ok {
		return nil, errors.New("the server does not offer AUTH")
	}
	mech := strings.ToUpper(cred.Mechanism)
	if mech == "" {
		mech = sasl.Login
		if c.SupportsAuth(sasl.Plain) {
			mech = sasl.Plain
		}
	}
	if !c.SupportsAuth(mech) {
		return nil, fmt.Errorf("the server does not offer AUTH %s", mech)
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainClient("", cred.Username, cred.Password), nil
	case sasl.Login:
		return sasl.NewLoginClient(cred.Username, cred.Password), nil
	}
	return nil, fmt.Errorf("unsupported AUTH mechanism %q", cred.Mechanism)
}

// withoutKeys returns the elements of list that are not keys of m.
func withoutKeys(list []string, m map[string]string) []string {
	var out []string
	for _, v := range list {
		if _, ok := m[v]; !ok {
			out = append(out, v)
		}
	}
	return out
}

// replyText renders an SMTP reply or an error as one line.
func replyText(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		msg := strings.ReplaceAll(se.Message, "\n", " ")
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], msg)
		}
		return fmt.Sprintf("%d %s", se.Code, msg)
	}
	return err.Error()
}

// faultConn bounds every read and write by a timeout (go-smtp clears its own
// deadlines between commands, so a stalled server would otherwise block the
// message data forever) and can cut the connection after a number of bytes.
type faultConn struct {
	net.Conn
	timeout time.Duration

	mu     sync.Mutex
	budget int64 // bytes still allowed; < 0: unlimited
	armed  bool
	cut    bool
}

func (c *faultConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *faultConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.cut {
		c.mu.Unlock()
		return 0, errAborted
	}
	if c.armed && int64(len(b)) > c.budget {
		part := b[:c.budget]
		c.cut = true
		c.mu.Unlock()
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err == nil {
			_, _ = c.Conn.Write(part)
		}
		c.Conn.Close()
		return len(part), errAborted
	}
	if c.armed {
		c.budget -= int64(len(b))
	}
	c.mu.Unlock()
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// cutAfter makes the connection close itself after n more bytes are written.
func (c *faultConn) cutAfter(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.budget = true, n
}

func (c *faultConn) wasCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}
