package relay

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
)

// session is one SMTP connection on either leg. It holds at most one
// connection to the leg's next hop, reused across transactions.
//
// # Who owns the state
//
// go-smtp calls Mail, Rcpt, Reset, Auth and Logout on the connection's
// goroutine, but for BDAT it runs Data on a goroutine of its own, and it
// does not wait for that goroutine before it calls Reset (RSET, EHLO, a
// refused chunk) or Logout (connection closed, STARTTLS). The transaction's
// state (from, opts, rcpts, hop, st, route) therefore has one owner at a
// time, mu:
//
//   - Data holds mu from its start to its end: the envelope, the next hop
//     and the configuration cannot change under a message in transfer.
//   - Mail, Rcpt and Reset take mu, so they wait for a data path that is
//     still running. go-smtp closes a BDAT transfer's pipe before it calls
//     Reset, so that data path sees its input fail and stops; Reset first
//     cuts the next-hop connection the data path is streaming to
//     (hopConn.cut), so that one blocked on a slow next hop stops too. The
//     next hop sees its connection close before end-of-data and discards
//     the message; the data path itself never writes end-of-data after an
//     input failure or a cut.
//   - Auth and Logout can be called while a BDAT transfer is open, when the
//     data path waits for the connection's goroutine to feed it: they never
//     wait for mu. Logout cuts the streaming hop and marks the session
//     closed; whoever holds mu, or Logout itself when mu is free, then
//     closes the next-hop connection (unlock).
//   - A data path that go-smtp started for a transfer it reset before the
//     goroutine got mu (BDAT 0, then RSET) finds its input closed at its
//     first read and touches nothing (Data).
//   - After Data returns, go-smtp's BDAT goroutine still reads a field of
//     the connection (the channel for its result) that go-smtp replaces
//     when the next transfer starts. Mail waits for that goroutine to be
//     done before a new transaction can start (awaitTransferEnd), so a
//     transfer's result can never be taken for the next one's.
type session struct {
	r    *Relay
	leg  *leg
	conn *guardedConn

	id     string // identifies the connection in log lines
	remote string // client IP
	helo   string
	tls    string // "" when plaintext

	mu sync.Mutex // owns from, opts, rcpts, hop, st, route, routeFinal

	from  string
	opts  smtp.MailOptions
	rcpts []string
	hop   *hopConn
	// deferred: the tenant leg could not reach the hop it guessed at MAIL
	// FROM and the route was not final, so MAIL and RCPT were accepted
	// without a next hop; the route, known once the header block is,
	// opens one (switchHop), or the message gets 451. Mail traffic the
	// rules keep off the vendors (recall requests and reports) so flows
	// while a vendor is down.
	deferred bool

	route      Route // tenant leg: the route decided (or guessed) at MAIL
	routeFinal bool
	// st is the configuration of the transaction in progress, read at
	// MAIL FROM (Reload replaces the relay's between transactions).
	st *state

	// transfer is the pipe go-smtp fed the last BDAT transfer through
	// (see awaitTransferEnd).
	transfer *io.PipeReader

	// streaming is the next-hop connection a message is being streamed to,
	// nil otherwise: what Reset and Logout cut.
	streaming atomic.Pointer[hopConn]
	closed    atomic.Bool  // Logout was called
	busy      atomic.Bool  // a transaction is open
	errors    atomic.Int32 // refused commands on this connection
	// authName is "cert:<name>" or "user:<name>" once authenticated.
	authName atomic.Pointer[string]
}

// unlock releases mu; when Logout came while mu was held, it closes the
// next-hop connection that Logout could not.
func (s *session) unlock() {
	s.mu.Unlock()
	if s.closed.Load() && s.mu.TryLock() {
		s.closeHop()
		s.mu.Unlock()
	}
}

// cutStreaming cuts the next-hop connection a message is being streamed
// to, if any. Safe from any goroutine.
func (s *session) cutStreaming() {
	if hc := s.streaming.Load(); hc != nil {
		hc.cut()
	}
}

// auth returns the authenticated identity, "" before authentication.
func (s *session) auth() string {
	if p := s.authName.Load(); p != nil {
		return *p
	}
	return ""
}

func (s *session) setAuth(name string) { s.authName.Store(&name) }

func (r *Relay) newSession(l *leg, c *smtp.Conn) *session {
	s := &session{r: r, leg: l, conn: unwrapGuarded(c.Conn()), helo: c.Hostname(), id: newSessionID()}
	if host, _, err := net.SplitHostPort(c.Conn().RemoteAddr().String()); err == nil {
		s.remote = host
	}
	if st, ok := c.TLSConnectionState(); ok {
		s.tls = tlsDescription(st)
		if n := certName(st, l.lc.ClientCertNames); n != "" {
			s.setAuth("cert:" + n)
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

// newSessionID returns 16 random hex digits.
func newSessionID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand documentation)
	return hex.EncodeToString(b[:])
}

// fail counts a refused command; once a connection has collected
// MaxErrors, the reply becomes 421 and the connection closes after it.
func (s *session) fail(err error) error {
	if err == nil {
		return nil
	}
	n := int(s.errors.Add(1))
	if n >= s.leg.lc.MaxErrors && s.conn != nil {
		s.conn.closeAfter.Store(true)
		reply := Reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many errors on this connection (%d); closing. Last: %s", n, oneLine(err.Error()))
		s.limitHit("too many errors", reply)
		return reply
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
	s.mu.Lock()
	defer s.unlock()
	return s.fail(s.mail(from, opts))
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	s.awaitTransferEnd()
	if s.r.shuttingDown() {
		if s.conn != nil {
			s.conn.closeAfter.Store(true)
		}
		return errShuttingDown
	}
	if s.leg.lc.RequireTLS && s.tls == "" {
		return Reply(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
	}
	if s.leg.lc.authRequired() && s.auth() == "" {
		s.log(zerolog.WarnLevel).Bool("tls", s.tls != "").Msg("MAIL before authentication refused")
		return Reply(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required: present an allowed client certificate or use AUTH after STARTTLS")
	}
	if s.conn != nil {
		s.conn.mailStarted()
	}
	s.busy.Store(true)
	s.st = s.r.live.Load()
	s.from, s.rcpts, s.deferred = from, nil, false
	s.opts = smtp.MailOptions{}
	if opts != nil {
		s.opts = *opts
	}
	target, err := s.leg.policy.mailHop(s, from)
	if err != nil {
		return err
	}
	if s.hop != nil && (s.hop.hop.Name != target.Name || s.hop.hop.Address != target.Address) {
		s.closeHop()
	}
	connected, err := s.hopMail(target)
	if !connected {
		s.hopFailed(target.Name, "connect", err)
		if s.leg.policy.mayDefer(s) {
			s.deferred = true
			return nil
		}
	}
	return err
}

// awaitTransferEnd waits until go-smtp's goroutine for the last BDAT
// transfer is done. It is written around go-smtp (v0.25), whose BDAT
// goroutine, after Data returns, sends Data's result on the connection's
// current result channel and then closes the pipe's reader. When the
// transfer was reset, nobody receives that result; if the next transfer
// started first, its channel would get it, and a race detector sees the
// field written by one goroutine and read by the other. go-smtp has
// closed the pipe's writer before it lets a MAIL through, so reading the
// pipe never blocks here: it answers the writer's error until the
// goroutine closes the reader, then io.ErrClosedPipe, through the pipe's
// own lock, which orders the goroutine's last steps before this
// transaction's. The goroutine does nothing else in between, so the wait
// is short; it is bounded all the same.
func (s *session) awaitTransferEnd() {
	p := s.transfer
	if p == nil {
		return
	}
	s.transfer = nil
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := p.Read(nil); err == io.ErrClosedPipe {
			return
		}
		if time.Now().After(deadline) {
			s.log(zerolog.WarnLevel).Msg("last BDAT transfer's goroutine did not finish")
			return
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// Rcpt forwards the recipient; the next hop's refusal is the client's.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.unlock()
	return s.fail(s.rcpt(to))
}

func (s *session) rcpt(to string) error {
	if max := s.leg.lc.MaxRecipients; len(s.rcpts) >= max {
		reply := Reply(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients: at most %d per message", max)
		s.limitHit("too many recipients", reply)
		return reply
	}
	if s.deferred && s.hop == nil { // the route's hop hears the recipients at DATA (switchHop)
		s.rcpts = append(s.rcpts, to)
		return nil
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
// connection, now idle, gets 421 and is closed. A message still being
// transferred (RSET during BDAT) is abandoned: its next-hop connection is
// cut before end-of-data, and Reset waits for its data path to end.
func (s *session) Reset() {
	s.cutStreaming()
	s.mu.Lock()
	defer s.unlock()
	s.busy.Store(false)
	s.from, s.rcpts, s.deferred = "", nil, false
	if s.hop != nil {
		s.hop.reset()
	}
	if s.r.shuttingDown() && s.conn != nil {
		s.conn.sendReply(shutdownReply(s.r.cfg.Hostname))
	}
}

// Logout closes the next-hop connection: at once when no handler holds
// the session, else when that handler lets go (see session). A message
// still being transferred is abandoned, its next-hop connection cut.
func (s *session) Logout() error {
	s.cutStreaming()
	s.closed.Store(true)
	if s.mu.TryLock() {
		s.closeHop()
		s.mu.Unlock()
	}
	s.r.track(s, false)
	return nil
}

// hopName names the next hop in replies: the one connected, else the
// kind of hop the leg proxies to.
func (s *session) hopName() string {
	if s.hop != nil {
		return s.hop.hop.Name
	}
	return s.leg.policy.hopKind()
}

// legPolicy is what differs between the two legs.
type legPolicy interface {
	// mailHop returns the next hop to open at MAIL FROM, or a refusal.
	mailHop(s *session, from string) (NextHop, error)
	// prepare decides about a message once its header block is in, and
	// repairs the block for the next hop. The prepared body replaces body
	// (the tenant leg may have spooled it). Its error is an
	// *smtp.SMTPError, a *storeError or, for what should not happen, any
	// other error (451 4.3.0, logged).
	prepare(s *session, h *headers.Header, body io.Reader, o *Outcome) (*prepared, error)
	// hopKind names the next hop in replies when none is connected.
	hopKind() string
	// mayDefer reports whether a transaction whose guessed next hop could
	// not be reached at MAIL FROM may go on without one until prepare has
	// decided the route (see session.deferred).
	mayDefer(s *session) bool
}

// limitHit tells the observers of a limit this session reached.
func (s *session) limitHit(limit string, reply *smtp.SMTPError) {
	s.r.obs.LimitHit(LimitHit{Leg: s.leg.name, Client: s.remote, Limit: limit, Reply: replyLine(reply)})
}

// hopFailed tells the observers of a next hop that failed before it gave
// a verdict (no connection, a time-out, TLS, a dropped connection, 421).
// Callers pass hop errors through isVerdict first: a 4xx or 5xx reply is
// the next hop's verdict, no failure of it.
func (s *session) hopFailed(hop, stage string, err error) {
	s.r.obs.NextHopFailed(NextHopFailed{Leg: s.leg.name, Client: s.remote, Hop: hop, Stage: stage, Code: replyCode(err), Err: err})
}

// storeFailed tells the observers of a failed store operation.
func (s *session) storeFailed(e *storeError) {
	s.r.obs.StoreFailed(StoreFailed{Leg: s.leg.name, Client: s.remote, Op: e.op, Ref: e.ref, Err: e.err})
}

// addReceived prepends the relay's Received trace field.
func (s *session) addReceived(h *headers.Header, id string, now time.Time) {
	if s.st.cfg.NoReceived {
		return
	}
	with := "ESMTP"
	if s.tls != "" {
		with = "ESMTPS"
	}
	var rcpt string
	if len(s.rcpts) == 1 {
		rcpt = s.rcpts[0]
	}
	h.Prepend(headers.Trace{Helo: s.helo, ClientIP: s.remote, By: s.r.cfg.Hostname, With: with,
		TLS: s.tls, ID: id, For: rcpt, At: now}.Field())
}

// closeHop lets go of the next-hop connection: back to the pool when it
// is clean (hopPool.put), closed otherwise.
func (s *session) closeHop() {
	if s.hop != nil {
		s.r.hops.put(s.hop)
		s.hop = nil
	}
}

// Data receives one message, streams it to the next hop and answers only
// with the next hop's verdict.
func (s *session) Data(r io.Reader) error {
	s.mu.Lock()
	defer s.unlock()
	// The first read tells a live transfer from one that go-smtp reset
	// before this goroutine got mu (BDAT 0, then RSET): go-smtp closes a
	// reset transfer's pipe before it calls Reset, so a transfer that
	// yields data now is the open transaction's, and stays so while mu is
	// held. One that does not has nothing to deliver, and the transaction
	// now in the session may be another one: touch nothing.
	if p, ok := r.(*io.PipeReader); ok {
		s.transfer = p
	}
	pr := &primedReader{r: r}
	if err := pr.prime(); err != nil {
		s.log(zerolog.DebugLevel).Err(err).Msg("message data ended before it began")
		return s.readError(err)
	}
	start := time.Now()
	if s.conn != nil {
		s.conn.receiving(s.leg.lc.DataTimeout, s.leg.lc.MinDataRate)
		defer s.conn.receiving(0, 0)
	}
	o := &Outcome{Leg: s.leg.name, Session: s.id, Client: s.remote, Auth: s.auth(), TLS: s.tls, From: s.from,
		Rcpts: len(s.rcpts), Recipients: slices.Clone(s.rcpts)}
	err := s.fail(s.data(pr, o))
	s.finish(o, start, err)
	s.r.obs.MessageDone(o)
	// busy stays set until Reset, which go-smtp calls once the final reply
	// is written: a shutdown meanwhile leaves the reply alone.
	return err
}

// finish completes o with the client's reply.
func (s *session) finish(o *Outcome, start time.Time, err error) {
	o.Duration = time.Since(start)
	o.Code = replyCode(err)
	switch {
	case err != nil && o.Code >= 500:
		o.Result, o.Err = "rejected", err
	case err != nil:
		o.Result, o.Err = "tempfail", err
	case len(o.Suppressed) == o.Rcpts && o.Rcpts > 0:
		o.Result = "suppressed"
	case o.Route == "bypass":
		o.Result = "bypassed"
	case o.Forwarded:
		o.Result = "forwarded"
	default:
		o.Result = "delivered"
	}
}

// primedReader reads from r once ahead (prime), then passes reads on.
type primedReader struct {
	r     io.Reader
	first []byte
}

// prime reads one byte: go-smtp's DATA reader fills the whole buffer it is
// given before it returns, and the transfer's timeouts start only after
// prime.
func (p *primedReader) prime() error {
	buf := make([]byte, 1)
	for {
		n, err := p.r.Read(buf)
		if n > 0 {
			p.first = buf[:n]
			return nil
		}
		if err == io.EOF {
			return nil // an empty message: the header reader says so
		}
		if err != nil {
			return err
		}
	}
}

func (p *primedReader) Read(b []byte) (int, error) {
	if len(p.first) > 0 {
		n := copy(b, p.first)
		p.first = p.first[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// prepared is a leg's decision about one message once its header block has
// arrived.
type prepared struct {
	// body replaces the body read so far (a spooled copy); nil keeps it.
	body io.Reader
	// cleanup runs when the message is done with (removes a spool file).
	cleanup func()
	// commit runs after the whole message was streamed to the next hop and
	// before the next hop is told it is complete.
	commit func(ctx context.Context) error
	// settle runs once the outcome at the next hop is known.
	settle func(res hopResult)
	// skip means there is nothing to deliver (every recipient already has
	// the message): the relay acknowledges without contacting the next hop.
	skip bool
}

// hopResult is what became of a message at the next hop.
type hopResult int

const (
	// notDelivered: the next hop never saw end-of-data, or answered it with
	// a refusal. It does not have the message.
	notDelivered hopResult = iota
	// delivered: the next hop answered 250 to end-of-data.
	delivered
	// unknown: end-of-data was sent but no reply came (the connection
	// broke, timed out or was cut). The next hop may have the message.
	unknown
)

func (s *session) data(r io.Reader, o *Outcome) error {
	if (s.hop == nil && !s.deferred) || (s.hop != nil && s.hop.broken) {
		return Reply(451, smtp.EnhancedCode{4, 4, 2}, "%s connection lost; start again", s.hopName())
	}
	start := time.Now()
	guard := newLineGuard(r, s.leg.lc.BareLineEndings)
	h, body, err := headers.ReadHeaderLimits(guard, headers.Limits{
		MaxBytes: s.leg.lc.MaxHeaderSize, MaxFields: s.leg.lc.MaxHeaderFields})
	o.Stages.Header = time.Since(start)
	if err != nil {
		// Nothing was sent to the next hop yet; the Reset that follows
		// every failed transfer ends its transaction there. The guard's
		// own error comes first: a header parser may report the line it
		// cut short rather than why it was cut.
		if errors.Is(guard.err, errBare) {
			err = guard.err
		}
		return s.readError(err)
	}
	o.MessageID = h.MessageID()

	p, err := s.leg.policy.prepare(s, h, body, o)
	if p != nil && p.cleanup != nil {
		defer p.cleanup()
	}
	if err != nil {
		if s.hop != nil {
			s.hop.reset()
		}
		return s.prepareError(err)
	}
	if p.body != nil {
		body = p.body
	}
	if p.skip {
		if s.hop != nil {
			s.hop.reset()
		}
		_, err := io.Copy(io.Discard, body)
		if err != nil {
			return s.readError(err)
		}
		o.Size = guard.n
		if s.conn != nil && s.conn.failed.Load() {
			return errTruncated
		}
		return nil
	}
	res := notDelivered
	if p.settle != nil {
		defer func() { p.settle(res) }()
	}
	res, err = s.stream(h, body, p, o)
	o.Size = guard.n
	return err
}

// stream sends the message to the next hop and, once the client's data is
// complete and the record (if any) committed, ends it there: the next
// hop's verdict is the client's.
func (s *session) stream(h *headers.Header, body io.Reader, p *prepared, o *Outcome) (hopResult, error) {
	start := time.Now()
	hop := s.hop
	o.Hop = hop.hop.Name
	w, err := hop.c.Data()
	if err != nil {
		hop.noteErr(err)
		if !isVerdict(err) {
			s.hopFailed(hop.hop.Name, "DATA", err)
		}
		return notDelivered, hopError(s.hopName(), "DATA", err)
	}
	hop.dataOpen = true
	s.streaming.Store(hop)
	defer s.streaming.Store(nil)
	// Message data goes to the connection through the stuffer; only the
	// final CRLF and the end of data go through go-smtp's writer (see
	// stuffer).
	st := hop.stuffer()
	if _, err := h.WriteTo(st); err != nil {
		hop.abort()
		s.hopFailed(hop.hop.Name, "message transfer", err)
		return notDelivered, hopError(s.hopName(), "message transfer", err)
	}
	err = copyBody(st, body)
	if err == nil {
		if err = st.finish(); err == nil {
			_, err = w.Write(crlf)
		}
	}
	if err != nil {
		hop.abort()
		var rerr readErr
		switch {
		case errors.As(err, &rerr):
			return notDelivered, s.readError(rerr.error)
		case hop.interrupted.Load():
			return notDelivered, errAborted
		}
		s.hopFailed(hop.hop.Name, "message transfer", err)
		return notDelivered, hopError(s.hopName(), "message transfer", err)
	}
	o.Stages.Transfer = time.Since(start)
	// go-smtp hands a BDAT chunk cut short by a closed connection to us as a
	// complete message. Never let such a message be committed.
	if s.conn != nil && s.conn.failed.Load() {
		hop.abort()
		return notDelivered, errTruncated
	}
	if p.commit != nil {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), s.st.cfg.StoreTimeout)
		err := p.commit(ctx)
		cancel()
		o.Stages.Store += time.Since(start)
		if err != nil {
			hop.abort()
			return notDelivered, s.prepareError(err)
		}
	}
	if hop.interrupted.Load() {
		hop.abort()
		return notDelivered, errAborted
	}
	start = time.Now()
	hop.dataOpen = false
	resp, err := w.CloseWithResponse()
	hop.inTx = false
	o.Stages.HopReply = time.Since(start)
	if err != nil {
		hop.noteErr(err)
		if !isVerdict(err) {
			s.hopFailed(hop.hop.Name, "end of data", err)
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			o.HopReply = se.Message
			return notDelivered, hopError(s.hopName(), "end of data", err)
		}
		return unknown, hopError(s.hopName(), "end of data", err)
	}
	o.HopReply = resp.StatusText
	return delivered, nil
}

// prepareError maps a leg's error to the client's reply, by its type: an
// SMTP reply passes as it is; a store failure is 451 4.3.0; anything else
// is a fault of the relay's, logged, and 451 4.3.0 too.
func (s *session) prepareError(err error) error {
	var se *smtp.SMTPError
	var ste *storeError
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &ste):
		s.storeFailed(ste)
		return errStore
	default:
		s.log(zerolog.ErrorLevel).Err(err).Msg("internal error")
		return errInternal
	}
}

// readErr marks an error that came from reading the client's data.
type readErr struct{ error }

func (e readErr) Unwrap() error { return e.error }

var crlf = []byte("\r\n")

// copyBody copies the body, telling read errors (the client's) from write
// errors (the next hop's). A body that writes itself out (the header
// reader's bufio.Reader) does so from its own buffer.
func copyBody(w io.Writer, r io.Reader) error {
	if wt, ok := r.(io.WriterTo); ok {
		tw := &trackedWriter{w: w}
		_, err := wt.WriteTo(tw)
		switch {
		case tw.err != nil:
			return tw.err
		case err != nil:
			return readErr{err}
		}
		return nil
	}
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

// trackedWriter keeps the error of its writer, so that copyBody can tell
// it from the reader's.
type trackedWriter struct {
	w   io.Writer
	err error
}

func (t *trackedWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		t.err = err
	}
	return n, err
}

// readError maps a failure to read the client's message to a reply.
func (s *session) readError(err error) error {
	var se *smtp.SMTPError
	var ne net.Error
	switch {
	case errors.Is(err, errBare):
		return errBareLineEnding
	case errors.Is(err, headers.ErrTooManyFields):
		return errTooManyFields(s.leg.lc.MaxHeaderFields)
	case errors.Is(err, headers.ErrHeaderTooLarge):
		return errHeaderTooLarge(s.leg.lc.MaxHeaderSize)
	case errors.Is(err, smtp.ErrDataReset):
		return errAborted
	case errors.Is(err, errDataTooSlow):
		return dataTooSlowReply(s.leg.lc.MinDataRate)
	case errors.Is(err, headers.ErrMalformedHeader):
		return errMalformedHeader(err)
	case errors.Is(err, smtp.ErrTooLongLine):
		return Reply(500, smtp.EnhancedCode{5, 5, 2}, "Line longer than %d bytes", s.leg.lc.MaxLineLength)
	case errors.As(err, &se):
		return se // go-smtp's own, e.g. 552 5.3.4 message too large
	case errors.As(err, &ne) && ne.Timeout():
		return dataIdleReply(s.leg.lc.DataTimeout)
	default:
		// The client went away (EOF, reset, RSET during BDAT): nobody will
		// read this reply, and nothing was committed.
		return errTruncated
	}
}

func (s *session) log(level zerolog.Level) *zerolog.Event {
	e := s.r.cfg.Log.WithLevel(level).Str("leg", s.leg.name).Str("session", s.id).Str("client", s.remote)
	if a := s.auth(); a != "" {
		e = e.Str("auth", a)
	}
	return e
}
