package relaytest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// VendorConfig configures a Vendor.
type VendorConfig struct {
	// Name identifies the vendor in logs and results; "vendor" when empty.
	Name string
	// Listen is the address to bind; DefaultListen when empty.
	Listen string
	// ReturnAddr is the host:port processed mail is sent back to. Required.
	ReturnAddr string
	// Behaviors are applied in order (see Behavior). None: passthrough.
	Behaviors []Behavior
	// Helo is the host name in the vendor's greeting and in its EHLO when
	// sending back; "<Name>.vendor.relaytest.invalid" when empty.
	Helo string
	// TLSConfig, when set, makes the vendor offer STARTTLS.
	TLSConfig *tls.Config
	// ReturnTLSConfig, when set, makes the vendor use STARTTLS when sending
	// back (as vendors deliver to Exchange Online).
	ReturnTLSConfig *tls.Config
	// MaxAttempts, Backoff and Timeout configure the Sender used to send
	// back (see Sender); its defaults apply when zero.
	MaxAttempts int
	Backoff     time.Duration
	Timeout     time.Duration
	// MaxMessageBytes is the SIZE limit; DefaultMaxMessageBytes when zero.
	MaxMessageBytes int64
	// Concurrency bounds how many messages are sent back at once; 4 when
	// zero.
	Concurrency int
	// OnReceive and OnReturn, when set, are called for every message
	// stored and every send-back transaction finished.
	OnReceive func(Delivery)
	OnReturn  func(ReturnOutcome)
	// ErrorLog receives go-smtp's connection errors; discarded when nil.
	ErrorLog smtp.Logger
}

// ReturnOutcome is one send-back transaction of a Vendor.
type ReturnOutcome struct {
	// Delivery is what was sent back: the envelope (MailFrom, Rcpts, UTF8)
	// and the processed Data, with Size its length, Remote the address it
	// was sent to, TLS whether STARTTLS was required and At the time the
	// transaction finished.
	Delivery Delivery
	// Result is the Sender's result.
	Result Result
	// TransformErrors lists transforms that failed on this message; the
	// vendor skipped them and sent the message on.
	TransformErrors []error
}

// Vendor is an SMTP server standing in for a third-party mail service (a
// signature or scanning service): it answers 250 once a message is stored in
// memory, then, in its own goroutines, applies its behaviours and sends the
// result back to ReturnAddr with the original envelope, retrying temporary
// failures like a mail queue. All methods are safe for concurrent use.
type Vendor struct {
	cfg      VendorConfig
	filters  []ReceiveFilter
	xforms   []Transformer
	planners []ReturnPlanner
	sender   Sender

	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	server   *smtpServer
	closed   bool
	received []Delivery
	returned []ReturnOutcome
	pending  int
	idle     chan struct{} // closed whenever pending drops to zero
}

// NewVendor validates cfg and returns a Vendor that is not yet listening.
func NewVendor(cfg VendorConfig) (*Vendor, error) {
	if cfg.ReturnAddr == "" {
		return nil, errors.New("relaytest: vendor: ReturnAddr is required")
	}
	if cfg.Name == "" {
		cfg.Name = "vendor"
	}
	if cfg.Helo == "" {
		cfg.Helo = cfg.Name + ".vendor.relaytest.invalid"
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = discardLogger()
	}
	v := &Vendor{cfg: cfg, sem: make(chan struct{}, cfg.Concurrency), idle: make(chan struct{})}
	close(v.idle)
	for _, b := range cfg.Behaviors {
		used := false
		if f, ok := b.(ReceiveFilter); ok {
			v.filters, used = append(v.filters, f), true
		}
		if t, ok := b.(Transformer); ok {
			v.xforms, used = append(v.xforms, t), true
		}
		if p, ok := b.(ReturnPlanner); ok {
			v.planners, used = append(v.planners, p), true
		}
		if !used {
			return nil, fmt.Errorf("relaytest: vendor: behaviour %q is neither a Transformer, a ReceiveFilter nor a ReturnPlanner", b.Name())
		}
	}
	v.sender = Sender{
		Addr: cfg.ReturnAddr, Helo: cfg.Helo, TLSConfig: cfg.ReturnTLSConfig,
		MaxAttempts: cfg.MaxAttempts, Backoff: cfg.Backoff, Timeout: cfg.Timeout,
	}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	return v, nil
}

// Start binds the listen address and starts serving.
func (v *Vendor) Start() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.server != nil || v.closed {
		return errors.New("relaytest: vendor already started")
	}
	srv := newSMTPServer(smtp.BackendFunc(v.newSession), v.cfg.Helo, v.cfg.TLSConfig,
		v.cfg.MaxMessageBytes, time.Minute, time.Minute, v.cfg.ErrorLog)
	s, err := startServer(v.cfg.Listen, srv)
	if err != nil {
		return fmt.Errorf("relaytest: vendor %s: %w", v.cfg.Name, err)
	}
	v.server = s
	return nil
}

// Addr returns the address the vendor listens on ("" before Start).
func (v *Vendor) Addr() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.server == nil {
		return ""
	}
	return v.server.addr()
}

// Close stops the server and the send-back queue: messages not yet sent back
// are abandoned. It waits for every goroutine of the vendor to return.
// Recorded results stay readable. Close is idempotent.
func (v *Vendor) Close() error {
	v.mu.Lock()
	s := v.server
	v.closed = true
	v.mu.Unlock()
	var err error
	if s != nil {
		err = s.close()
	}
	v.cancel()
	v.wg.Wait()
	return err
}

// Received returns every message the vendor accepted, in order of arrival.
func (v *Vendor) Received() []Delivery {
	v.mu.Lock()
	defer v.mu.Unlock()
	return cloneDeliveries(v.received)
}

// Returned returns every finished send-back transaction, in order of
// completion.
func (v *Vendor) Returned() []ReturnOutcome {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]ReturnOutcome, len(v.returned))
	for i, r := range v.returned {
		r.Delivery = r.Delivery.clone()
		out[i] = r
	}
	return out
}

// WaitIdle waits until every accepted message has been sent back (or given
// up on). It fails after timeout.
func (v *Vendor) WaitIdle(timeout time.Duration) error {
	_, err := waitFor(&v.mu, func() (int, bool, chan struct{}) {
		return v.pending, v.pending == 0, v.idle
	}, timeout, func(n int) error {
		return fmt.Errorf("relaytest: vendor %s: %d messages still queued after %v", v.cfg.Name, n, timeout)
	})
	return err
}

func (v *Vendor) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &vendorSession{v: v, conn: c}, nil
}

type vendorSession struct {
	v    *Vendor
	conn *smtp.Conn
	d    Delivery
}

func (s *vendorSession) Mail(from string, opts *smtp.MailOptions) error {
	s.d = newDelivery(s.conn, from, opts)
	return nil
}

func (s *vendorSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.d.Rcpts = append(s.d.Rcpts, to)
	return nil
}

var errVendorClosing = &smtp.SMTPError{
	Code:         421,
	EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message:      "Service shutting down",
}

func (s *vendorSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	d := s.d.clone()
	d.Data, d.At = data, time.Now()
	_, d.TLS = s.conn.TLSConnectionState()
	for _, f := range s.v.filters {
		if e := f.Receive(&d); e != nil {
			return e
		}
	}
	if !s.v.enqueue(d) {
		return errVendorClosing
	}
	if s.v.cfg.OnReceive != nil {
		s.v.cfg.OnReceive(d.clone())
	}
	return nil
}

func (s *vendorSession) Reset()        { s.d = Delivery{} }
func (s *vendorSession) Logout() error { return nil }

// enqueue stores d and schedules its send-back. It reports false when the
// vendor is closing.
func (v *Vendor) enqueue(d Delivery) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return false
	}
	v.received = append(v.received, d)
	if v.pending == 0 {
		v.idle = make(chan struct{})
	}
	v.pending++
	v.wg.Add(1)
	go v.process(d.clone())
	return true
}

// process applies the behaviours to one message and sends it back.
func (v *Vendor) process(d Delivery) {
	defer v.wg.Done()
	defer func() {
		v.mu.Lock()
		v.pending--
		if v.pending == 0 {
			close(v.idle)
		}
		v.mu.Unlock()
	}()

	data := d.Data
	var xerrs []error
	for _, t := range v.xforms {
		out, err := t.Transform(data)
		if err != nil {
			xerrs = append(xerrs, fmt.Errorf("%s: %w", t.Name(), err))
			continue
		}
		data = out
	}
	plan := ReturnPlan{Transactions: []Envelope{{From: d.MailFrom, To: d.Rcpts, UTF8: d.UTF8}}}
	for _, p := range v.planners {
		p.Plan(&plan)
	}

	if plan.Delay > 0 {
		timer := time.NewTimer(plan.Delay)
		select {
		case <-v.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
	for i, env := range plan.Transactions {
		select {
		case v.sem <- struct{}{}:
		case <-v.ctx.Done():
			return
		}
		sender := v.sender
		if plan.AbortAttempts > 0 {
			n := plan.AbortAttempts
			sender.AbortData = func(attempt int) bool { return attempt <= n }
		}
		m := Message{
			Name: fmt.Sprintf("%s-return-%d", v.cfg.Name, i+1),
			From: env.From, To: env.To, UTF8: env.UTF8, Data: data,
		}
		res := sender.Send(v.ctx, m)
		<-v.sem
		out := ReturnOutcome{
			Delivery: Delivery{
				MailFrom: env.From, Rcpts: append([]string(nil), env.To...), UTF8: env.UTF8,
				Size: int64(len(data)), Data: data, Remote: v.cfg.ReturnAddr, At: time.Now(),
				TLS: v.cfg.ReturnTLSConfig != nil,
			},
			Result:          res,
			TransformErrors: xerrs,
		}
		v.mu.Lock()
		v.returned = append(v.returned, out)
		v.mu.Unlock()
		if v.cfg.OnReturn != nil {
			v.cfg.OnReturn(out)
		}
		if v.ctx.Err() != nil {
			return
		}
	}
}
