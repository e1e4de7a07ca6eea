package relaytest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Delivery is one message transaction an SMTP server of this package
// accepted (or, for the hooks and filters, is about to accept).
type Delivery struct {
	// Seq numbers the deliveries a server recorded, from 1, in order of
	// recording; it stays unique for the server's lifetime (Tenant.Reset
	// does not restart it). The server names it in its reply, "250 2.0.0
	// OK: queued as SEQ@ADDR", which DeliveryFor uses to link a
	// ReturnOutcome to the delivery it produced. It is 0 in a delivery not
	// recorded yet (the one a data hook or a ReceiveFilter sees) and in
	// ReturnOutcome.Delivery.
	Seq      int
	MailFrom string    // MAIL FROM address, without angle brackets
	Size     int64     // SIZE parameter of MAIL FROM, 0 when absent
	Body     string    // BODY parameter of MAIL FROM ("8BITMIME", "7BIT", ...), empty when absent
	UTF8     bool      // SMTPUTF8 parameter of MAIL FROM
	Rcpts    []string  // accepted RCPT TO addresses, in order
	Data     []byte    // the message exactly as received (CRLF line endings, dots unstuffed)
	Remote   string    // client address
	TLS      bool      // the transaction ran over TLS
	Helo     string    // the name the client gave in its last HELO or EHLO
	AuthUser string    // the user name the client authenticated as with AUTH, "" when it did not
	At       time.Time // when the data was complete
}

// clone returns a copy of d whose slices do not alias d's (Data is shared:
// it is never modified after it has been received).
func (d Delivery) clone() Delivery {
	d.Rcpts = append([]string(nil), d.Rcpts...)
	return d
}

// TenantConfig configures a Tenant.
type TenantConfig struct {
	// Listen is the address to bind; DefaultListen when empty.
	Listen string
	// Listener, when set, is served instead of binding Listen; once Start
	// has taken it, Close closes it. Bind it yourself when a peer must know the address before
	// the server starts, as in a loop where each side is the other's next
	// hop: a port picked and released first could be taken meanwhile.
	Listener net.Listener
	// Domain is the host name in the greeting; "tenant.relaytest.invalid"
	// when empty.
	Domain string
	// TLSConfig, when set, makes the tenant offer STARTTLS.
	TLSConfig *tls.Config
	// RequireTLS refuses MAIL FROM with 530 5.7.0 before STARTTLS, as an
	// Exchange inbound connector with RequireTls does. It needs TLSConfig.
	RequireTLS bool
	// MaxMessageBytes is the SIZE limit advertised and enforced; 150 MB
	// (the Exchange Online maximum) when zero.
	MaxMessageBytes int64
	// MaxLineLength is the longest line, CRLF included and counted as sent
	// (dot-stuffed), accepted in commands and in a message sent with DATA;
	// DefaultMaxLineLength (2,000) when zero, no limit when negative. A
	// longer line in a DATA message is answered 500 5.5.2, a longer command
	// line 500 5.4.0, and the tenant closes the connection either way. A
	// message sent with BDAT is exempt, because go-smtp lifts the limit
	// while it reads a chunk; only a long line within the bytes go-smtp
	// buffered together with the BDAT command is still answered 500 5.4.0.
	MaxLineLength int
	// Auth, when set, makes the tenant offer AUTH PLAIN and LOGIN and
	// check every login with it: nil accepts, an *smtp.SMTPError is
	// answered as it is (a 454 4.7.0 makes a client retry), any other
	// error is answered 535 5.7.8. The user name is recorded in
	// Delivery.AuthUser. AcceptAnyAuth and PasswordAuth are ready-made
	// callbacks.
	Auth func(username, password string) error
	// RequireAuth refuses MAIL FROM with 530 5.7.0 until the client has
	// authenticated. It needs Auth.
	RequireAuth bool
	// AuthRequiresTLS offers AUTH only after STARTTLS, as production
	// servers do (go-smtp's AllowInsecureAuth off); AUTH before it is
	// answered 523 5.7.10. It needs TLSConfig. By default AUTH is offered
	// on plain connections too, because a test on the loopback interface
	// seldom sets up TLS.
	AuthRequiresTLS bool
	// ReadTimeout and WriteTimeout bound every network read and write;
	// one minute when zero.
	ReadTimeout, WriteTimeout time.Duration
	// OnDelivery, when set, is called with every recorded delivery, after
	// it is recorded and before the client gets the reply.
	OnDelivery func(Delivery)
	// ErrorLog receives go-smtp's connection errors; discarded when nil.
	ErrorLog smtp.Logger
}

// DefaultMaxMessageBytes is the Exchange Online message size limit.
const DefaultMaxMessageBytes = 150 << 20

// Tenant is an SMTP server standing in for the Microsoft 365 tenant's inbound
// endpoint: it accepts reinjected mail and records every delivery. It
// advertises PIPELINING, 8BITMIME, SMTPUTF8, SIZE and CHUNKING (BDAT), and
// STARTTLS and AUTH when configured.
//
// A Tenant serves once: NewTenant, Start, Close. Start after Close returns
// ErrClosed, and Addr is "" before Start and after Close. Recorded
// deliveries stay readable after Close.
//
// Deliveries can be listed (Deliveries, DeliveriesTo), looked up
// (ByTestName, ByMessageID, DeliveryFor) and waited for (WaitFor,
// WaitDeliveriesContext); ExpectNoMore checks that nothing else arrives.
// Fault hooks may be set at any time; all methods are safe for concurrent
// use.
type Tenant struct {
	cfg     TenantConfig
	journal *journal

	mu         sync.Mutex
	state      serveState
	rejectData int
	rejectErr  *smtp.SMTPError
	rejectRcpt map[string]*smtp.SMTPError
	dataHook   func(d *Delivery) *smtp.SMTPError
}

// NewTenant validates cfg and returns a Tenant that is not yet listening.
func NewTenant(cfg TenantConfig) (*Tenant, error) {
	if cfg.RequireTLS && cfg.TLSConfig == nil {
		return nil, errors.New("relaytest: tenant: RequireTLS needs a TLSConfig")
	}
	if cfg.MaxMessageBytes < 0 {
		return nil, fmt.Errorf("relaytest: tenant: negative MaxMessageBytes %d", cfg.MaxMessageBytes)
	}
	if cfg.RequireAuth && cfg.Auth == nil {
		return nil, errors.New("relaytest: tenant: RequireAuth needs an Auth callback")
	}
	if cfg.AuthRequiresTLS && cfg.TLSConfig == nil {
		return nil, errors.New("relaytest: tenant: AuthRequiresTLS needs a TLSConfig")
	}
	if cfg.Domain == "" {
		cfg.Domain = "tenant.relaytest.invalid"
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = time.Minute
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = time.Minute
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = discardLogger()
	}
	return &Tenant{cfg: cfg, journal: newJournal("tenant"), rejectRcpt: make(map[string]*smtp.SMTPError)}, nil
}

// Start binds the listen address and starts serving. It fails when the
// tenant was started before, and with ErrClosed after Close.
func (t *Tenant) Start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	srv := newSMTPServer(smtp.BackendFunc(t.newSession), serverOptions{
		domain: t.cfg.Domain, tlsConfig: t.cfg.TLSConfig,
		maxBytes: t.cfg.MaxMessageBytes, maxLineLength: t.cfg.MaxLineLength,
		readTimeout: t.cfg.ReadTimeout, writeTimeout: t.cfg.WriteTimeout,
		allowInsecureAuth: !t.cfg.AuthRequiresTLS, errorLog: t.cfg.ErrorLog,
	})
	if err := t.state.start(t.cfg.Listen, t.cfg.Listener, srv); err != nil {
		return fmt.Errorf("relaytest: tenant: start: %w", err)
	}
	return nil
}

// Addr returns the address the tenant listens on; "" before Start and
// after Close.
func (t *Tenant) Addr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state.liveAddr()
}

// Close stops the server, closes every connection and waits for their
// handlers. Recorded deliveries stay readable. Close is idempotent; Close
// before Start makes a later Start fail with ErrClosed.
func (t *Tenant) Close() error {
	t.mu.Lock()
	s := t.state.markClosed()
	t.mu.Unlock()
	if s == nil {
		return nil
	}
	if err := s.close(); err != nil {
		return fmt.Errorf("relaytest: tenant: %w", err)
	}
	return nil
}

// Deliveries returns the deliveries recorded so far, in order of arrival.
// The Data slices are shared and must not be modified.
func (t *Tenant) Deliveries() []Delivery { return t.journal.all() }

func cloneDeliveries(ds []Delivery) []Delivery {
	out := make([]Delivery, len(ds))
	for i, d := range ds {
		out[i] = d.clone()
	}
	return out
}

// DeliveriesTo returns the recorded deliveries that include rcpt among their
// recipients (compared case-insensitively).
func (t *Tenant) DeliveriesTo(rcpt string) []Delivery {
	return t.journal.filter(func(d Delivery) bool {
		for _, r := range d.Rcpts {
			if strings.EqualFold(r, rcpt) {
				return true
			}
		}
		return false
	})
}

// ByTestName returns the recorded deliveries whose TestNameHeader value is
// name, in order of arrival.
func (t *Tenant) ByTestName(name string) []Delivery { return t.journal.filter(MatchTestName(name)) }

// ByMessageID returns the recorded deliveries whose Message-ID, as
// delivered, is id (with or without angle brackets), in order of arrival.
func (t *Tenant) ByMessageID(id string) []Delivery { return t.journal.filter(MatchMessageID(id)) }

// BySeq returns the recorded delivery numbered seq (see Delivery.Seq).
func (t *Tenant) BySeq(seq int) (Delivery, bool) { return t.journal.bySeq(seq) }

// DeliveryFor returns the delivery a Vendor's send-back transaction o
// produced at this tenant. It recognizes the tenant's reply to o ("queued
// as SEQ@ADDR"), so it works when the vendor returned to the tenant
// directly, and also through a relay that passes the tenant's reply back
// to its client; otherwise, and for an outcome that was not accepted, it
// reports false. Match on the test name then (ByTestName, WaitFor).
func (t *Tenant) DeliveryFor(o ReturnOutcome) (Delivery, bool) {
	t.mu.Lock()
	addr := t.state.addr
	t.mu.Unlock()
	return t.journal.deliveryFor(o, addr)
}

// WaitFor returns the first recorded delivery, in order of arrival, for
// which match returns true, waiting for one until ctx is done; then it
// returns an error that wraps ctx.Err() and lists what was recorded.
// Deliveries recorded before the call count. match is called without
// locks held, at most once per delivery. MatchTestName and MatchMessageID
// build common predicates.
func (t *Tenant) WaitFor(ctx context.Context, match func(Delivery) bool) (Delivery, error) {
	return t.journal.waitFor(ctx, match, ctxEnded)
}

// WaitForTimeout is WaitFor with a time limit instead of a context.
func (t *Tenant) WaitForTimeout(match func(Delivery) bool, timeout time.Duration) (Delivery, error) {
	return t.journal.waitForTimeout(match, timeout)
}

// WaitDeliveriesContext waits until at least n deliveries are recorded and
// returns all of them. When ctx is done first it returns what it has with
// an error wrapping ctx.Err().
func (t *Tenant) WaitDeliveriesContext(ctx context.Context, n int) ([]Delivery, error) {
	return t.journal.waitCount(ctx, n, ctxEnded)
}

// WaitDeliveries is WaitDeliveriesContext with a time limit instead of a
// context.
func (t *Tenant) WaitDeliveries(n int, timeout time.Duration) ([]Delivery, error) {
	return t.journal.waitCountTimeout(n, timeout)
}

// ExpectNoMore checks that no delivery numbered above after (see
// Delivery.Seq; without Reset, the number of deliveries the test has
// accounted for) arrives within d. It returns an error listing the
// unexpected deliveries as soon as one is recorded (or at once if there
// already is one), nil when d passes quietly, and an error wrapping
// ctx.Err() when ctx ends before d has passed.
func (t *Tenant) ExpectNoMore(ctx context.Context, after int, d time.Duration) error {
	return t.journal.expectNoMore(ctx, after, d)
}

// waitUntil polls state under mu, waking up on the returned channel, until
// it reports done or ctx is done.
func waitUntil[T any](ctx context.Context, mu *sync.Mutex, state func() (T, bool, chan struct{})) (T, error) {
	for {
		mu.Lock()
		v, done, ch := state()
		mu.Unlock()
		if done {
			return v, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			mu.Lock()
			v, done, _ = state()
			mu.Unlock()
			if done {
				return v, nil
			}
			return v, ctx.Err()
		}
	}
}

// Reset forgets all recorded deliveries and clears every fault hook.
// Delivery numbering goes on (see Delivery.Seq).
func (t *Tenant) Reset() {
	t.journal.reset()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rejectData, t.rejectErr = 0, nil
	t.rejectRcpt = make(map[string]*smtp.SMTPError)
	t.dataHook = nil
}

// RejectNextData makes the tenant answer err instead of accepting the next n
// messages (at the end of DATA or BDAT), then accept again. A message
// refused this way is not recorded. n <= 0 or a nil err cancels it.
func (t *Tenant) RejectNextData(n int, err *smtp.SMTPError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n <= 0 || err == nil {
		t.rejectData, t.rejectErr = 0, nil
		return
	}
	e := *err
	t.rejectData, t.rejectErr = n, &e
}

// RejectRcpt makes the tenant answer err to RCPT TO:<addr> (compared
// case-insensitively) until it is cleared with a nil err.
func (t *Tenant) RejectRcpt(addr string, err *smtp.SMTPError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := strings.ToLower(addr)
	if err == nil {
		delete(t.rejectRcpt, key)
		return
	}
	e := *err
	t.rejectRcpt[key] = &e
}

// SetDataHook installs fn, called for every complete message that
// RejectNextData did not refuse; a non-nil return is answered instead of
// accepting, and the message is not recorded. fn may modify d before it is
// recorded. A nil fn removes the hook. fn is called without locks held and
// may call the tenant's methods.
func (t *Tenant) SetDataHook(fn func(d *Delivery) *smtp.SMTPError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dataHook = fn
}

func (t *Tenant) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &tenantSession{t: t, conn: c, sessionAuth: sessionAuth{
		policy: authPolicy{check: t.cfg.Auth, require: t.cfg.RequireAuth},
	}}, nil
}

// tenantSession is one SMTP connection to the tenant.
type tenantSession struct {
	sessionAuth
	t    *Tenant
	conn *smtp.Conn
	d    Delivery
}

var errTLSRequired = &smtp.SMTPError{
	Code:         530,
	EnhancedCode: smtp.EnhancedCode{5, 7, 0},
	Message:      "Must issue a STARTTLS command first",
}

func (s *tenantSession) Mail(from string, opts *smtp.MailOptions) error {
	_, isTLS := s.conn.TLSConnectionState()
	if s.t.cfg.RequireTLS && !isTLS {
		return errTLSRequired
	}
	if err := s.checkMail(); err != nil {
		return err
	}
	s.d = newDelivery(s.conn, from, opts, &s.sessionAuth)
	return nil
}

// newDelivery starts recording a transaction.
func newDelivery(c *smtp.Conn, from string, opts *smtp.MailOptions, auth *sessionAuth) Delivery {
	_, isTLS := c.TLSConnectionState()
	d := Delivery{MailFrom: from, TLS: isTLS, Remote: c.Conn().RemoteAddr().String(), Helo: c.Hostname()}
	if auth.authed {
		d.AuthUser = auth.user
	}
	if opts != nil {
		d.Size, d.Body, d.UTF8 = opts.Size, string(opts.Body), opts.UTF8
	}
	return d
}

func (s *tenantSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.t.mu.Lock()
	err := s.t.rejectRcpt[strings.ToLower(to)]
	s.t.mu.Unlock()
	if err != nil {
		return err
	}
	s.d.Rcpts = append(s.d.Rcpts, to)
	return nil
}

func (s *tenantSession) Data(r io.Reader) error {
	data, err := readData(r, lineLimit(s.t.cfg.MaxLineLength))
	if err != nil {
		return err // the client went away or sent too much: nothing is recorded
	}
	d := s.d.clone()
	d.Data, d.At = data, time.Now()
	_, d.TLS = s.conn.TLSConnectionState()

	t := s.t
	t.mu.Lock()
	if t.rejectData > 0 {
		t.rejectData--
		e := *t.rejectErr
		t.mu.Unlock()
		return &e
	}
	hook := t.dataHook
	addr := t.state.addr
	t.mu.Unlock()
	if hook != nil {
		if e := hook(&d); e != nil {
			return e
		}
	}

	d = t.journal.add(d) // numbers it, whatever Seq a hook set
	if t.cfg.OnDelivery != nil {
		t.cfg.OnDelivery(d.clone())
	}
	return queuedReply(queueID(d.Seq, addr))
}

func (s *tenantSession) Reset()        { s.d = Delivery{} }
func (s *tenantSession) Logout() error { return nil }
