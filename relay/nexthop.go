package relay

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
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
	// w is the connection go-smtp's client writes to (under it, after
	// STARTTLS the TLS connection): the stuffer writes message data there.
	w io.Writer
	// st is the stuffer on w, made for the connection's first message
	// and reused for the rest (its buffer is 32 KiB).
	st *stuffer
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

// dialHop connects, greets and (per policy) starts TLS, which the relay
// speaks itself (see startTLS): both EHLOs use h.HELO. A next hop that
// does not offer STARTTLS gets a second, plaintext connection under
// StartTLSOpportunistic.
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
	iw := &idleWriteConn{Conn: conn, idle: h.DataTimeout}
	c := smtp.NewClient(iw)
	c.CommandTimeout = h.CommandTimeout
	c.SubmissionTimeout = h.FinalTimeout
	if err := c.Hello(h.HELO); err != nil {
		c.Close()
		return nil, hopError(h.Name, "greeting", err)
	}
	return &hopConn{hop: h, c: c, raw: conn, w: iw}, nil
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
	// The greeting, both EHLOs and the handshake are bounded by the
	// connect and command timeouts.
	conn.SetDeadline(time.Now().Add(h.ConnectTimeout + h.CommandTimeout))
	iw := &idleWriteConn{Conn: conn, idle: h.DataTimeout}
	greeting, err := startTLS(iw, h)
	if err != nil {
		conn.Close()
		return nil, err
	}
	tc := tls.Client(iw, cfg)
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, hopError(h.Name, "STARTTLS", &tlsError{err})
	}
	// go-smtp's client takes over on the TLS connection from its greeting,
	// which it reads from greetedConn: the next hop's, given again.
	c := smtp.NewClient(&greetedConn{Conn: tc, greeting: []byte(greeting)})
	c.CommandTimeout = h.CommandTimeout
	c.SubmissionTimeout = h.FinalTimeout
	if err := c.Hello(h.HELO); err != nil {
		c.Close()
		return nil, hopError(h.Name, "EHLO", err)
	}
	conn.SetDeadline(time.Time{})
	return &hopConn{hop: h, c: c, raw: conn, tls: true, w: tc}, nil
}

// startTLS reads the greeting of the next hop on conn, says EHLO with
// h.HELO and asks for STARTTLS; it returns the greeting line, to be given
// to go-smtp again after the handshake. The relay speaks this part itself
// rather than through go-smtp's NewClientStartTLS (whose EHLO says
// "localhost") so that it holds the TLS connection go-smtp then writes
// to, which the stuffer writes message data to directly.
func startTLS(conn net.Conn, h NextHop) (greeting string, err error) {
	tr := textproto.NewReader(bufio.NewReaderSize(conn, 4096))
	reply := func(stage string, want int) (string, error) {
		_, msg, err := tr.ReadResponse(want)
		if err == nil {
			return msg, nil
		}
		var te *textproto.Error
		if errors.As(err, &te) {
			return "", hopError(h.Name, stage, &smtp.SMTPError{Code: te.Code, Message: te.Msg})
		}
		return "", hopError(h.Name, stage, err)
	}
	send := func(line string) error {
		_, err := conn.Write([]byte(line + "\r\n"))
		return err
	}
	msg, err := reply("greeting", 220)
	if err != nil {
		return "", err
	}
	first, _, _ := strings.Cut(msg, "\n") // a multi-line greeting is given again as its first line
	greeting = "220 " + first + "\r\n"
	if err := send("EHLO " + h.HELO); err != nil {
		return "", hopError(h.Name, "EHLO", err)
	}
	ext, err := reply("EHLO", 250)
	if err != nil {
		return "", err
	}
	offered := false
	for _, line := range strings.Split(ext, "\n")[1:] {
		if kw, _, _ := strings.Cut(line, " "); strings.EqualFold(kw, "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		if h.StartTLS == StartTLSRequired {
			return "", Reply(454, smtp.EnhancedCode{4, 7, 10}, "%s does not offer STARTTLS, which is required", h.Name)
		}
		return "", errNoStartTLS
	}
	if err := send("STARTTLS"); err != nil {
		return "", hopError(h.Name, "STARTTLS", err)
	}
	if _, err := reply("STARTTLS", 220); err != nil {
		return "", err
	}
	if tr.R.Buffered() > 0 {
		// Bytes before the handshake would be read as plaintext (the
		// STARTTLS command injection of CVE-2011-0411).
		return "", hopError(h.Name, "STARTTLS", &tlsError{errors.New("data after the STARTTLS reply, before the handshake")})
	}
	return greeting, nil
}

// greetedConn gives its reader greeting before the connection's data.
type greetedConn struct {
	net.Conn
	greeting []byte
}

func (c *greetedConn) Read(p []byte) (int, error) {
	if len(c.greeting) > 0 {
		n := copy(p, c.greeting)
		c.greeting = c.greeting[n:]
		return n, nil
	}
	return c.Conn.Read(p)
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
