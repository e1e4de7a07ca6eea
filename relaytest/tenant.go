package relaytest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Delivery is one message transaction an SMTP server of this package
// accepted (or, for the hooks, is about to accept).
type Delivery struct {
	MailFrom string    // MAIL FROM address, without angle brackets
	Size     int64     // SIZE parameter of MAIL FROM, 0 when absent
	Body     string    // BODY parameter of MAIL FROM ("8BITMIME", "7BIT", ...), empty when absent
	UTF8     bool      // SMTPUTF8 parameter of MAIL FROM
	Rcpts    []string  // accepted RCPT TO addresses, in order
	Data     []byte    // the message exactly as received (CRLF line endings, dots unstuffed)
	Remote   string    // client address
	TLS      bool      // the transaction ran over TLS
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
// advertises PIPELINING, 8BITMIME, SMTPUTF8, SIZE and CHUNKING (BDAT).
// Fault hooks may be set at any time; all methods are safe for concurrent
// use.
type Tenant struct {
	cfg TenantConfig

	mu         sync.Mutex
	server     *smtpServer
	deliveries []Delivery
	changed    chan struct{} // closed and replaced whenever deliveries grows
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
	return &Tenant{cfg: cfg, changed: make(chan struct{}), rejectRcpt: make(map[string]*smtp.SMTPError)}, nil
}

// Start binds the listen address and starts serving.
func (t *Tenant) Start() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.server != nil {
		return errors.New("relaytest: tenant already started")
	}
	srv := newSMTPServer(smtp.BackendFunc(t.newSession), t.cfg.Domain, t.cfg.TLSConfig,
		t.cfg.MaxMessageBytes, t.cfg.ReadTimeout, t.cfg.WriteTimeout, t.cfg.ErrorLog)
	s, err := startServer(t.cfg.Listen, srv)
	if err != nil {
		return fmt.Errorf("relaytest: tenant: %w", err)
	}
	t.server = s
	return nil
}

// newSMTPServer returns a go-smtp server with the extensions Exchange uses.
func newSMTPServer(be smtp.Backend, domain string, tlsConfig *tls.Config, maxBytes int64,
	readTimeout, writeTimeout time.Duration, errorLog smtp.Logger) *smtp.Server {
	srv := smtp.NewServer(be)
	srv.Domain = domain
	srv.TLSConfig = tlsConfig
	srv.EnableSMTPUTF8 = true
	srv.MaxMessageBytes = maxBytes
	srv.MaxRecipients = 0
	srv.ReadTimeout = readTimeout
	srv.WriteTimeout = writeTimeout
	srv.ErrorLog = errorLog
	return srv
}

// Addr returns the address the tenant listens on ("" before Start).
func (t *Tenant) Addr() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.server == nil {
		return ""
	}
	return t.server.addr()
}

// Close stops the server, closes every connection and waits for their
// handlers. Recorded deliveries stay readable. Close is idempotent.
func (t *Tenant) Close() error {
	t.mu.Lock()
	s := t.server
	t.mu.Unlock()
	if s == nil {
		return nil
	}
	return s.close()
}

// Deliveries returns the deliveries recorded so far, in order of arrival.
// The Data slices are shared and must not be modified.
func (t *Tenant) Deliveries() []Delivery {
	t.mu.Lock()
	defer t.mu.Unlock()
	return cloneDeliveries(t.deliveries)
}

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
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Delivery
	for _, d := range t.deliveries {
		for _, r := range d.Rcpts {
			if strings.EqualFold(r, rcpt) {
				out = append(out, d.clone())
				break
			}
		}
	}
	return out
}

// WaitDeliveries waits until at least n deliveries are recorded and returns
// all of them. After timeout it returns what it has with an error.
func (t *Tenant) WaitDeliveries(n int, timeout time.Duration) ([]Delivery, error) {
	return waitFor(&t.mu, func() ([]Delivery, bool, chan struct{}) {
		return cloneDeliveries(t.deliveries), len(t.deliveries) >= n, t.changed
	}, timeout, func(got []Delivery) error {
		return fmt.Errorf("relaytest: tenant: %d of %d deliveries after %v", len(got), n, timeout)
	})
}

// waitFor polls state under mu, waking up on the returned channel, until it
// reports done or timeout passes.
func waitFor[T any](mu *sync.Mutex, state func() (T, bool, chan struct{}), timeout time.Duration,
	timeoutErr func(T) error) (T, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		mu.Lock()
		v, done, ch := state()
		mu.Unlock()
		if done {
			return v, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			mu.Lock()
			v, done, _ = state()
			mu.Unlock()
			if done {
				return v, nil
			}
			return v, timeoutErr(v)
		}
	}
}

// Reset forgets all recorded deliveries and clears every fault hook.
func (t *Tenant) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deliveries = nil
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
	return &tenantSession{t: t, conn: c}, nil
}

// tenantSession is one SMTP connection to the tenant.
type tenantSession struct {
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
	s.d = newDelivery(s.conn, from, opts)
	return nil
}

// newDelivery starts recording a transaction.
func newDelivery(c *smtp.Conn, from string, opts *smtp.MailOptions) Delivery {
	_, isTLS := c.TLSConnectionState()
	d := Delivery{MailFrom: from, TLS: isTLS, Remote: c.Conn().RemoteAddr().String()}
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
	data, err := io.ReadAll(r)
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
	t.mu.Unlock()
	if hook != nil {
		if e := hook(&d); e != nil {
			return e
		}
	}

	t.mu.Lock()
	t.deliveries = append(t.deliveries, d)
	close(t.changed)
	t.changed = make(chan struct{})
	onDelivery := t.cfg.OnDelivery
	t.mu.Unlock()
	if onDelivery != nil {
		onDelivery(d.clone())
	}
	return nil
}

func (s *tenantSession) Reset()        { s.d = Delivery{} }
func (s *tenantSession) Logout() error { return nil }
