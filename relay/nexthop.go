package relay

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// hopConn is one SMTP client connection to a next hop. It is used by one
// goroutine at a time (the session's, under its lock), except for cut.
type hopConn struct {
	hop    NextHop
	c      *smtp.Client
	raw    net.Conn // the TCP connection under c, for cut
	tls    bool
	inTx   bool // MAIL sent and the transaction not finished
	broken bool // unusable: close instead of reusing
	// sawErr: a command on it failed, even with a plain refusal; such a
	// connection serves its session on, but never goes back to the pool.
	sawErr bool
	// reused: it came from the pool; idleSince: when it went in.
	reused    bool
	idleSince time.Time
	// dataOpen is true between a successful DATA and its end (the dot, or
	// abort). While it is, nothing may be written on c but message data.
	dataOpen bool
	// interrupted is set by cut, from any goroutine.
	interrupted atomic.Bool
}

// cut drops the connection at once, from any goroutine, so that a message
// being streamed to the next hop can never be completed: the next hop sees
// the connection close before end-of-data and discards what it received.
// The session's own goroutine notices through interrupted (and failing
// writes) and never writes the end-of-data dot afterwards.
func (hc *hopConn) cut() {
	hc.interrupted.Store(true)
	hc.raw.Close()
}

// dialHop connects, greets and (per policy) starts TLS.
//
// go-smtp's client (v0.25) can only start TLS through NewClientStartTLS,
// whose EHLO before STARTTLS names itself "localhost"; the EHLO after it,
// the one that counts, uses h.HELO. A next hop that does not offer STARTTLS
// gets a second, plaintext connection under StartTLSOpportunistic.
//
// sessions, when set, resumes TLS sessions across connections (unless
// h.TLS has a cache of its own).
func dialHop(h NextHop, sessions tls.ClientSessionCache) (*hopConn, error) {
	if h.StartTLS != StartTLSOff {
		hc, err := dialHopTLS(h, sessions)
		if err == nil || h.StartTLS == StartTLSRequired || !errors.Is(err, errNoStartTLS) {
			return hc, err
		}
	}
	conn, err := net.DialTimeout("tcp", h.Address, h.ConnectTimeout)
	if err != nil {
		return nil, hopError(h.Name, "connect", err)
	}
	c := smtp.NewClient(&idleWriteConn{Conn: conn, idle: h.DataTimeout})
	c.CommandTimeout = h.CommandTimeout
	c.SubmissionTimeout = h.FinalTimeout
	if err := c.Hello(h.HELO); err != nil {
		c.Close()
		return nil, hopError(h.Name, "greeting", err)
	}
	return &hopConn{hop: h, c: c, raw: conn}, nil
}

var errNoStartTLS = errors.New("next hop does not offer STARTTLS")

// tlsError marks a failure of TLS with a next hop: a 454 upstream.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "tls: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

func dialHopTLS(h NextHop, sessions tls.ClientSessionCache) (*hopConn, error) {
	conn, err := net.DialTimeout("tcp", h.Address, h.ConnectTimeout)
	if err != nil {
		return nil, hopError(h.Name, "connect", err)
	}
	cfg := h.TLS.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(h.Address)
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if cfg.ClientSessionCache == nil {
		cfg.ClientSessionCache = sessions
	}
	// The greeting and first EHLO are bounded by the connect timeout.
	conn.SetDeadline(time.Now().Add(h.ConnectTimeout + h.CommandTimeout))
	c, err := smtp.NewClientStartTLS(&idleWriteConn{Conn: conn, idle: h.DataTimeout}, cfg)
	if err != nil {
		conn.Close()
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se):
			return nil, hopError(h.Name, "STARTTLS", err)
		case strings.Contains(err.Error(), "doesn't support STARTTLS"):
			// go-smtp (v0.25) says so only in an errors.New text;
			// TestNextHopTLS ("required without offer", "opportunistic
			// without offer") pins it.
			if h.StartTLS == StartTLSRequired {
				return nil, Reply(454, smtp.EnhancedCode{4, 7, 10}, "%s does not offer STARTTLS, which is required", h.Name)
			}
			return nil, errNoStartTLS
		default:
			return nil, hopError(h.Name, "STARTTLS", &tlsError{err})
		}
	}
	c.CommandTimeout = h.CommandTimeout
	c.SubmissionTimeout = h.FinalTimeout
	if err := c.Hello(h.HELO); err != nil { // the TLS handshake happens here
		c.Close()
		return nil, hopError(h.Name, "STARTTLS", &tlsError{err})
	}
	conn.SetDeadline(time.Time{})
	return &hopConn{hop: h, c: c, raw: conn, tls: true}, nil
}

// mail starts a transaction.
func (hc *hopConn) mail(from string, opts *smtp.MailOptions) error {
	if opts != nil && opts.Body == smtp.Body8BitMIME {
		if ok, _ := hc.c.Extension("8BITMIME"); !ok {
			return Reply(451, smtp.EnhancedCode{4, 6, 3}, "%s does not support 8BITMIME; cannot relay an 8-bit message", hc.hop.Name)
		}
	}
	if opts != nil && opts.UTF8 {
		if ok, _ := hc.c.Extension("SMTPUTF8"); !ok {
			return Reply(451, smtp.EnhancedCode{4, 6, 7}, "%s does not support SMTPUTF8; cannot relay this message", hc.hop.Name)
		}
	}
	var o *smtp.MailOptions
	if opts != nil {
		// Only what the relay advertises and preserves: SIZE, BODY, SMTPUTF8.
		// go-smtp's client itself declares BODY=8BITMIME whenever the next
		// hop supports it, which is a harmless superset of BODY=7BIT.
		o = &smtp.MailOptions{Size: opts.Size, Body: opts.Body, UTF8: opts.UTF8}
	}
	hc.inTx = true
	if err := hc.c.Mail(from, o); err != nil {
		hc.noteErr(err)
		return hopError(hc.hop.Name, "MAIL FROM", err)
	}
	return nil
}

func (hc *hopConn) rcpt(to string) error {
	if err := hc.c.Rcpt(to, nil); err != nil {
		hc.noteErr(err)
		return hopError(hc.hop.Name, "RCPT TO", err)
	}
	return nil
}

// reset ends an unfinished transaction. It must not be called while a
// DATA writer is open: go-smtp's client (through net/textproto) would close
// that writer first, writing the end-of-data dot, and the next hop would
// commit a partial message. The data path ends every DATA it opened
// itself, by CloseWithResponse or abort.
func (hc *hopConn) reset() {
	if hc.dataOpen || hc.interrupted.Load() {
		hc.abort()
		return
	}
	if !hc.inTx || hc.broken {
		return
	}
	if err := hc.c.Reset(); err != nil {
		hc.broken = true
	}
	hc.inTx = false
}

// abort drops the connection in the middle of DATA, so the next hop never
// sees end-of-data and discards what it received.
func (hc *hopConn) abort() {
	hc.broken = true
	hc.dataOpen = false
	hc.inTx = false
	hc.raw.Close()
}

// close ends the connection politely when possible.
func (hc *hopConn) close() {
	if hc.dataOpen || hc.interrupted.Load() {
		hc.abort()
		return
	}
	if !hc.broken {
		hc.c.Quit() // closes the connection as well
		return
	}
	hc.raw.Close()
}

func (hc *hopConn) noteErr(err error) {
	hc.sawErr = true
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code == 421 {
		hc.broken = true
	}
}

// Probe connects to h as a message would (STARTTLS per its policy, EHLO
// with its name) and ends the session with QUIT: a pre-flight check that
// the next hop is reachable and speaks TLS as configured. It returns the
// same replies a message would get (hopError's 4xx for a failure).
func Probe(h NextHop, hostname string) (tls bool, err error) {
	if err := h.validate(); err != nil {
		return false, err
	}
	hc, err := dialHop(h.withDefaults(hostname), nil)
	if err != nil {
		return false, err
	}
	defer hc.close()
	if err := hc.c.Noop(); err != nil {
		return hc.tls, hopError(h.Name, "NOOP", err)
	}
	return hc.tls, nil
}
