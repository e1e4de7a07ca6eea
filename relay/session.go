package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
)

// session is one SMTP connection on either leg. It holds at most one
// connection to the leg's next hop, reused across transactions.
type session struct {
	r    *Relay
	leg  *leg
	conn *guardedConn

	remote string // client IP
	helo   string
	tls    string // "" when plaintext

	from  string
	opts  smtp.MailOptions
	rcpts []string
	hop   *hopConn

	busy     atomic.Bool // a transaction is open
	errors   int         // refused commands on this connection
	authName string      // "cert:<name>" or "user:<name>" once authenticated

	route      Route // tenant leg: the route decided (or guessed) at MAIL
	routeFinal bool
	// st is the configuration of the transaction in progress, read at
	// MAIL FROM (Reload replaces the relay's between transactions).
	st *state
}

func (r *Relay) newSession(l *leg, c *smtp.Conn) *session {
	s := &session{r: r, leg: l, conn: unwrapGuarded(c.Conn()), helo: c.Hostname()}
	if host, _, err := net.SplitHostPort(c.Conn().RemoteAddr().String()); err == nil {
		s.remote = host
	}
	if st, ok := c.TLSConnectionState(); ok {
		s.tls = tlsDescription(st)
		if n := certName(st, l.lc.ClientCertNames); n != "" {
			s.authName = "cert:" + n
		}
	}
	if s.conn != nil {
		// Replies the relay writes itself must go through TLS once it is on.
		cur := c.Conn()
		s.conn.reply.Store(&cur)
	}
	r.track(s, true)
	return s
}

// fail counts a refused command; once a connection has collected
// MaxErrors, the reply becomes 421 and the connection closes after it.
func (s *session) fail(err error) error {
	if err == nil {
		return nil
	}
	s.errors++
	if s.errors >= s.leg.lc.MaxErrors && s.conn != nil {
		s.conn.closeAfter.Store(true)
		s.log(zerolog.WarnLevel).Int("errors", s.errors).Msg("too many errors; closing")
		return Reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many errors on this connection (%d); closing. Last: %s", s.errors, oneLine(err.Error()))
	}
	return err
}

func tlsDescription(st tls.ConnectionState) string {
	return tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
}

// Mail starts a transaction and opens it at the next hop at once, so that
// the next hop's verdict on the sender and on each recipient reaches the
// client in the same SMTP command.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	return s.fail(s.mail(from, opts))
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	if s.r.shuttingDown() {
		if s.conn != nil {
			s.conn.closeAfter.Store(true)
		}
		return errShuttingDown
	}
	if s.leg.lc.RequireTLS && s.tls == "" {
		return Reply(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
	}
	if s.leg.lc.authRequired() && s.authName == "" {
		s.log(zerolog.WarnLevel).Bool("tls", s.tls != "").Msg("MAIL before authentication refused")
		return Reply(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required: present an allowed client certificate or use AUTH after STARTTLS")
	}
	if s.conn != nil {
		s.conn.mailStarted()
	}
	s.busy.Store(true)
	s.st = s.r.live.Load()
	s.from, s.rcpts = from, nil
	s.opts = smtp.MailOptions{}
	if opts != nil {
		s.opts = *opts
	}
	target := s.st.cfg.Target
	if s.leg == s.r.tenant {
		// Open the hop the message most likely goes to, so the client
		// hears that hop's verdict on each recipient; the route may change
		// once the header block is known (switchHop).
		s.route, s.routeFinal = s.r.routerNow().Envelope(from, nil)
		if s.routeFinal && s.route.Action == Refuse {
			return s.route.Reply
		}
		target = s.st.hopFor(s.route)
	}
	if s.hop != nil && (s.hop.hop.Name != target.Name || s.hop.hop.Address != target.Address) {
		s.closeHop()
	}
	// A reused connection may have been closed by the next hop while idle:
	// retry once on a fresh one.
	for attempt := 0; ; attempt++ {
		reused := s.hop != nil && !s.hop.broken
		if !reused {
			s.closeHop()
			hc, err := dialHop(target)
			if err != nil {
				s.log(zerolog.WarnLevel).Str("stage", "connect").Err(err).Int("code", replyCode(err)).Msg("next hop unavailable")
				return err
			}
			s.hop = hc
		}
		err := s.hop.mail(from, &s.opts)
		if err != nil && reused && s.hop.broken && attempt == 0 {
			continue
		}
		return err
	}
}

// Rcpt forwards the recipient; the next hop's refusal is the client's.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	return s.fail(s.rcpt(to))
}

func (s *session) rcpt(to string) error {
	if max := s.leg.lc.MaxRecipients; len(s.rcpts) >= max {
		s.log(zerolog.WarnLevel).Str("limit", "too many recipients").Int("max", max).Msg("limit reached")
		return Reply(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients: at most %d per message", max)
	}
	if s.hop == nil || s.hop.broken {
		return Reply(451, smtp.EnhancedCode{4, 4, 2}, "%s connection lost; start again", s.hopName())
	}
	if err := s.hop.rcpt(to); err != nil {
		return err
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// Reset ends the transaction here and at the next hop. go-smtp calls it
// after a transaction's final reply too; when the relay is stopping, the
// connection, now idle, gets 421 and is closed.
func (s *session) Reset() {
	s.busy.Store(false)
	s.from, s.rcpts = "", nil
	if s.hop != nil {
		s.hop.reset()
	}
	if s.r.shuttingDown() && s.conn != nil {
		s.conn.sendReply(shutdownReply(s.r.cfg.Hostname))
	}
}

// Logout closes the next-hop connection.
func (s *session) Logout() error {
	s.closeHop()
	s.r.track(s, false)
	return nil
}

// hopName names the next hop in replies: the one connected, else the
// kind of hop the leg proxies to.
func (s *session) hopName() string {
	switch {
	case s.hop != nil:
		return s.hop.hop.Name
	case s.leg == s.r.tenant:
		return "vendor"
	}
	return "tenant"
}

func (s *session) closeHop() {
	if s.hop != nil {
		s.hop.close()
		s.hop = nil
	}
}

// outcome is what one message did, for its log line.
type outcome struct {
	messageID  string
	ref        string
	size       int64
	matchedBy  string
	route      string   // "vendor-a", "vendor-a>vendor-b", "bypass", "refused"
	rules      []string // rules that decided the route
	decision   string   // the router's account of its decision
	notes      []string // problems the router met
	forwarded  bool     // return leg: sent on to the next vendor of a chain
	restored   []string
	removed    []string
	suppressed []string // recipients that already had the message
	unrecorded bool     // sent on although the record could not be written
}

// Data receives one message, streams it to the next hop and answers only
// with the next hop's verdict.
func (s *session) Data(r io.Reader) error {
	start := time.Now()
	if s.conn != nil {
		s.conn.receiving(s.leg.lc.DataTimeout)
		defer s.conn.receiving(0)
	}
	var o outcome
	err := s.data(r, &o)
	s.logMessage(&o, start, err)
	// busy stays set until Reset, which go-smtp calls once the final reply
	// is written: a shutdown meanwhile leaves the reply alone.
	return s.fail(err)
}

// prepared is a leg's decision about one message once its header block has
// arrived.
type prepared struct {
	// commit runs after the whole message was streamed to the next hop and
	// before the next hop is told it is complete.
	commit func(ctx context.Context) error
	// settle runs once the outcome is known: delivered is true when the
	// next hop answered 250.
	settle func(delivered bool)
	// skip means there is nothing to deliver (every recipient already has
	// the message): the relay acknowledges without contacting the next hop.
	skip bool
}

func (s *session) data(r io.Reader, o *outcome) error {
	if s.hop == nil || s.hop.broken {
		return Reply(451, smtp.EnhancedCode{4, 4, 2}, "%s connection lost; start again", s.hopName())
	}
	guard := newLineGuard(r, s.leg.lc.BareLineEndings)
	h, body, err := headers.ReadHeader(guard, s.leg.lc.MaxHeaderBytes)
	if err != nil {
		s.hop.reset()
		return s.readError(err)
	}
	o.messageID = h.MessageID()

	var p *prepared
	if s.leg == s.r.tenant {
		var rt Route
		var cleanup func()
		rt, body, cleanup, err = s.decideRoute(h, body)
		if cleanup != nil {
			defer cleanup()
		}
		if err == nil {
			p, err = s.prepareTenant(h, rt, o)
		}
	} else {
		p, err = s.prepareReturn(h, o)
	}
	if err != nil {
		s.hop.reset()
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			s.log(zerolog.ErrorLevel).Err(err).Msg("store failed")
			return errStore
		}
		return err
	}
	if p.skip {
		s.hop.reset()
		_, err := io.Copy(io.Discard, body)
		if err != nil {
			return s.readError(err)
		}
		o.size = guard.n
		if s.conn != nil && s.conn.failed.Load() {
			return errTruncated
		}
		return nil
	}
	delivered := false
	if p.settle != nil {
		defer func() { p.settle(delivered) }()
	}

	w, err := s.hop.c.Data()
	if err != nil {
		s.hop.noteErr(err)
		return hopError(s.hopName(), "DATA", err)
	}
	if _, err := h.WriteTo(w); err != nil {
		s.hop.abort()
		return hopError(s.hopName(), "message transfer", err)
	}
	if err := copyBody(w, body); err != nil {
		s.hop.abort()
		var rerr readErr
		if errors.As(err, &rerr) {
			return s.readError(rerr.error)
		}
		return hopError(s.hopName(), "message transfer", err)
	}
	o.size = guard.n
	// go-smtp hands a BDAT chunk cut short by a closed connection to us as a
	// complete message. Never let such a message be committed.
	if s.conn != nil && s.conn.failed.Load() {
		s.hop.abort()
		return errTruncated
	}
	if p.commit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.st.cfg.StoreTimeout)
		err := p.commit(ctx)
		cancel()
		if err != nil && s.leg == s.r.tenant && s.st.cfg.PassUnrecorded {
			s.log(zerolog.ErrorLevel).Err(err).Str("ref", o.ref).Msg("store write failed; passing the message on unrecorded (pass_unrecorded)")
			o.unrecorded = true
		} else if err != nil {
			s.hop.abort()
			s.log(zerolog.ErrorLevel).Err(err).Msg("store write failed")
			return errStore
		}
	}
	if _, err := w.CloseWithResponse(); err != nil {
		s.hop.noteErr(err)
		s.hop.inTx = false
		return hopError(s.hopName(), "end of data", err)
	}
	s.hop.inTx = false
	delivered = true
	return nil
}

// readErr marks an error that came from reading the client's data.
type readErr struct{ error }

func (e readErr) Unwrap() error { return e.error }

// copyBody copies the body, telling read errors (the client's) from write
// errors (the next hop's).
func copyBody(w io.Writer, r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return readErr{err}
		}
	}
}

// readError maps a failure to read the client's message to a reply.
func (s *session) readError(err error) error {
	var se *smtp.SMTPError
	var ne net.Error
	switch {
	case errors.Is(err, errBare):
		return errBareLineEnding
	case errors.Is(err, headers.ErrHeaderTooLarge):
		return errHeaderTooLarge(s.leg.lc.MaxHeaderBytes)
	case errors.Is(err, headers.ErrMalformedHeader):
		return errMalformedHeader(err)
	case errors.Is(err, smtp.ErrTooLongLine):
		return Reply(500, smtp.EnhancedCode{5, 5, 2}, "Line longer than %d bytes", s.leg.lc.MaxLineLength)
	case errors.As(err, &se):
		return se // go-smtp's own, e.g. 552 5.3.4 message too large
	case errors.As(err, &ne) && ne.Timeout():
		return Reply(421, smtp.EnhancedCode{4, 4, 2}, "Idle for more than %s during message data", s.leg.lc.DataTimeout)
	default:
		// The client went away (EOF, reset, RSET during BDAT): nobody will
		// read this reply, and nothing was committed.
		return errTruncated
	}
}

func (s *session) log(level zerolog.Level) *zerolog.Event {
	e := s.r.cfg.Log.WithLevel(level).Str("leg", s.leg.name).Str("client", s.remote)
	if s.authName != "" {
		e = e.Str("auth", s.authName)
	}
	return e
}

// logMessage writes the one line per message per leg.
func (s *session) logMessage(o *outcome, start time.Time, err error) {
	level, result := zerolog.InfoLevel, "delivered"
	switch {
	case err == nil && len(o.suppressed) == len(s.rcpts) && len(s.rcpts) > 0:
		result = "suppressed"
	case err == nil && o.route == "bypass":
		result = "bypassed"
	case err == nil && o.forwarded:
		result = "forwarded"
	}
	if err != nil {
		level, result = zerolog.WarnLevel, "tempfail"
		if replyCode(err) >= 500 {
			result = "rejected"
		}
	}
	e := s.log(level).
		Str("message_id", o.messageID).
		Str("ref", o.ref).
		Str("from", s.from).
		Int("rcpt_count", len(s.rcpts)).
		Int64("size", o.size).
		Str("vendor", o.route).
		Int64("duration_ms", time.Since(start).Milliseconds()).
		Str("result", result).
		Int("code", replyCode(err))
	if len(o.rules) > 0 {
		e = e.Strs("rules", o.rules)
	}
	if o.decision != "" {
		e = e.Str("decision", o.decision)
	}
	if len(o.notes) > 0 {
		e = e.Strs("route_notes", o.notes)
	}
	if s.leg == s.r.ret {
		e = e.Str("matched_by", o.matchedBy).Strs("restored", o.restored).Strs("removed", o.removed)
		if len(o.suppressed) > 0 {
			e = e.Strs("suppressed", o.suppressed)
		}
	}
	if o.unrecorded {
		e = e.Bool("unrecorded", true)
	}
	if err != nil {
		e = e.Str("error", err.Error())
	}
	e.Msg("message")
}
