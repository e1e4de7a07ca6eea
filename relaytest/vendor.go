package relaytest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
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
	// Listener, when set, is served instead of binding Listen; once Start
	// has taken it, Close closes it. Bind it yourself when a peer must know the address before
	// the server starts, as in a loop where each side is the other's next
	// hop: a port picked and released first could be taken meanwhile.
	Listener net.Listener
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
	// ReturnAuth, when set, makes the vendor authenticate with AUTH when
	// sending back (see Sender.Auth), as a service that logs in to its next
	// hop does.
	ReturnAuth *Credentials
	// Auth, RequireAuth and AuthRequiresTLS configure AUTH on the vendor's
	// own listener as on a Tenant (see TenantConfig).
	Auth            func(username, password string) error
	RequireAuth     bool
	AuthRequiresTLS bool
	// MaxLineLength is the longest line accepted, as on a Tenant (see
	// TenantConfig).
	MaxLineLength int
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
	// OnRefuse, when set, is called for every message a behaviour's
	// ReceiveFilter refuses, with the message as that filter left it (its
	// Seq is 0: a refused message is not stored), the Name of the
	// behaviour and the reply sent instead of accepting it. Refusals that
	// are no behaviour's (AUTH required, the size limit, shutting down) are
	// not reported. It is called on the connection's goroutine before the
	// reply is sent, possibly for several connections at once, and must
	// not block long.
	OnRefuse func(d Delivery, behavior string, reply *smtp.SMTPError)
	// ErrorLog receives go-smtp's connection errors; discarded when nil.
	ErrorLog smtp.Logger
}

// ReturnOutcome is one send-back transaction of a Vendor. Received and the
// message identifiers link it to what it came from; DeliveryFor on the
// Tenant (or Vendor) it was sent to finds what it produced there.
type ReturnOutcome struct {
	// Delivery is what was sent back: the envelope (MailFrom, Rcpts, UTF8)
	// and the processed Data, with Size its length, Remote the address it
	// was sent to, TLS whether STARTTLS was required, Helo the EHLO name
	// used, AuthUser the user name of ReturnAuth and At the time the
	// transaction finished. Its Seq is 0.
	Delivery Delivery
	// Result is the Sender's result. When the message was accepted, its
	// last reply is the receiving server's, which DeliveryFor reads.
	Result Result
	// TransformErrors lists transforms that failed on this message; the
	// vendor skipped them and sent the message on.
	TransformErrors []error
	// Received is the Seq of the message among those the vendor received
	// (see Vendor.BySeq).
	Received int
	// Transaction numbers the transactions sent back for that message,
	// from 1 (split-recipients and duplicate make several).
	Transaction int
	// TestName is the TestNameHeader value of the message sent back.
	TestName string
	// MessageID is the Message-ID of the message sent back (after the
	// transforms), OriginalMessageID that of the message as the vendor
	// received it; both without angle brackets.
	MessageID, OriginalMessageID string
}

// DroppedError is returned by Vendor.Close when messages the vendor had
// accepted were not (completely) sent back: their send-back was waiting,
// or in progress, when the vendor closed.
type DroppedError struct {
	// Vendor is the vendor's name.
	Vendor string
	// Messages are the received messages concerned, in order of arrival.
	Messages []Delivery
}

func (e *DroppedError) Error() string {
	names := make([]string, 0, len(e.Messages))
	for i, d := range e.Messages {
		if i == maxDescribed {
			names = append(names, fmt.Sprintf("and %d more", len(e.Messages)-maxDescribed))
			break
		}
		n := fmt.Sprintf("#%d", d.Seq)
		if tn := d.TestName(); tn != "" {
			n += fmt.Sprintf(" %q", tn)
		} else if id := d.MessageID(); id != "" {
			n += " <" + id + ">"
		}
		names = append(names, n)
	}
	return fmt.Sprintf("relaytest: vendor %s: closed with %d accepted messages not sent back: %s",
		e.Vendor, len(e.Messages), strings.Join(names, ", "))
}

// EnvelopeTransformerFunc returns an EnvelopeTransformer named name that
// transforms with fn, for transforms written inline in a test.
func EnvelopeTransformerFunc(name string, fn func(env Envelope, data []byte) ([]byte, error)) EnvelopeTransformer {
	return envelopeFunc{name: name, fn: fn}
}

type envelopeFunc struct {
	name string
	fn   func(env Envelope, data []byte) ([]byte, error)
}

func (f envelopeFunc) Name() string { return f.name }
func (f envelopeFunc) TransformEnvelope(env Envelope, data []byte) ([]byte, error) {
	return f.fn(env, data)
}

// xformStep is one step of a vendor's transform chain.
type xformStep struct {
	name string
	fn   func(env Envelope, data []byte) ([]byte, error)
}

// Vendor is an SMTP server standing in for a third-party mail service (a
// signature or scanning service): it answers 250 once a message is stored in
// memory, then, in its own goroutines, applies its behaviours and sends the
// result back to ReturnAddr with the original envelope, retrying temporary
// failures like a mail queue.
//
// Like a Tenant it serves once (NewVendor, Start, Close; Start after Close
// returns ErrClosed, Addr is "" outside), and its received messages can be
// looked up and waited for with the same methods (ByTestName, ByMessageID,
// BySeq, DeliveryFor, WaitFor, ExpectNoMore). All methods are safe for
// concurrent use.
type Vendor struct {
	cfg      VendorConfig
	filters  []ReceiveFilter
	xforms   []xformStep
	planners []ReturnPlanner
	sender   Sender
	journal  *journal

	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	state    serveState
	returned []ReturnOutcome
	pending  int
	idle     chan struct{} // closed whenever pending drops to zero
	dropped  []Delivery    // messages whose send-back Close cut short
	reported bool          // Close has returned the DroppedError
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
	if cfg.RequireAuth && cfg.Auth == nil {
		return nil, errors.New("relaytest: vendor: RequireAuth needs an Auth callback")
	}
	if cfg.AuthRequiresTLS && cfg.TLSConfig == nil {
		return nil, errors.New("relaytest: vendor: AuthRequiresTLS needs a TLSConfig")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = discardLogger()
	}
	v := &Vendor{cfg: cfg, sem: make(chan struct{}, cfg.Concurrency), idle: make(chan struct{}),
		journal: newJournal("vendor " + cfg.Name)}
	close(v.idle)
	for _, b := range cfg.Behaviors {
		used := false
		if f, ok := b.(ReceiveFilter); ok {
			v.filters, used = append(v.filters, f), true
		}
		if t, ok := b.(EnvelopeTransformer); ok {
			v.xforms, used = append(v.xforms, xformStep{name: t.Name(), fn: t.TransformEnvelope}), true
		} else if t, ok := b.(Transformer); ok {
			fn := func(_ Envelope, data []byte) ([]byte, error) { return t.Transform(data) }
			v.xforms, used = append(v.xforms, xformStep{name: t.Name(), fn: fn}), true
		}
		if p, ok := b.(ReturnPlanner); ok {
			v.planners, used = append(v.planners, p), true
		}
		if !used {
			return nil, fmt.Errorf("relaytest: vendor: behaviour %q is neither a Transformer, an EnvelopeTransformer, a ReceiveFilter nor a ReturnPlanner", b.Name())
		}
	}
	v.sender = Sender{
		Addr: cfg.ReturnAddr, Helo: cfg.Helo, TLSConfig: cfg.ReturnTLSConfig, Auth: cfg.ReturnAuth,
		MaxAttempts: cfg.MaxAttempts, Backoff: cfg.Backoff, Timeout: cfg.Timeout,
	}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	return v, nil
}

// Start binds the listen address and starts serving. It fails when the
// vendor was started before, and with ErrClosed after Close.
func (v *Vendor) Start() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	srv := newSMTPServer(smtp.BackendFunc(v.newSession), serverOptions{
		domain: v.cfg.Helo, tlsConfig: v.cfg.TLSConfig,
		maxBytes: v.cfg.MaxMessageBytes, maxLineLength: v.cfg.MaxLineLength,
		readTimeout: time.Minute, writeTimeout: time.Minute,
		allowInsecureAuth: !v.cfg.AuthRequiresTLS, errorLog: v.cfg.ErrorLog,
	})
	if err := v.state.start(v.cfg.Listen, v.cfg.Listener, srv); err != nil {
		return fmt.Errorf("relaytest: vendor %s: start: %w", v.cfg.Name, err)
	}
	return nil
}

// Addr returns the address the vendor listens on; "" before Start and
// after Close.
func (v *Vendor) Addr() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state.liveAddr()
}

// Close stops the server and the send-back queue and waits for every
// goroutine of the vendor to return. Messages not yet sent back are
// abandoned: Close then returns a *DroppedError naming them (joined with
// the error of stopping the server if there is one; its first call only;
// Dropped keeps the list). Recorded results stay readable.
// Close is idempotent; Close before Start makes a later Start fail with
// ErrClosed.
func (v *Vendor) Close() error {
	v.mu.Lock()
	s := v.state.markClosed()
	v.mu.Unlock()
	var err error
	if s != nil {
		if cerr := s.close(); cerr != nil {
			err = fmt.Errorf("relaytest: vendor %s: %w", v.cfg.Name, cerr)
		}
	}
	v.cancel()
	v.wg.Wait()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.dropped) > 0 && !v.reported {
		v.reported = true
		sort.Slice(v.dropped, func(i, j int) bool { return v.dropped[i].Seq < v.dropped[j].Seq })
		dropped := &DroppedError{Vendor: v.cfg.Name, Messages: cloneDeliveries(v.dropped)}
		if err == nil {
			return dropped
		}
		return errors.Join(err, dropped)
	}
	return err
}

// Dropped returns the received messages whose send-back Close cut short
// (see DroppedError), in order of arrival; none before Close.
func (v *Vendor) Dropped() []Delivery {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := cloneDeliveries(v.dropped)
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Received returns every message the vendor accepted, in order of arrival.
func (v *Vendor) Received() []Delivery { return v.journal.all() }

// ByTestName returns the received messages whose TestNameHeader value is
// name, in order of arrival.
func (v *Vendor) ByTestName(name string) []Delivery { return v.journal.filter(MatchTestName(name)) }

// ByMessageID returns the received messages whose Message-ID, as received,
// is id (with or without angle brackets), in order of arrival.
func (v *Vendor) ByMessageID(id string) []Delivery { return v.journal.filter(MatchMessageID(id)) }

// BySeq returns the received message numbered seq (see Delivery.Seq and
// ReturnOutcome.Received).
func (v *Vendor) BySeq(seq int) (Delivery, bool) { return v.journal.bySeq(seq) }

// DeliveryFor returns the message this vendor received from another
// vendor's send-back transaction o, as Tenant.DeliveryFor does (for chains
// such as the via-tenant topology, where a Vendor stands in for Exchange).
func (v *Vendor) DeliveryFor(o ReturnOutcome) (Delivery, bool) {
	v.mu.Lock()
	addr := v.state.addr
	v.mu.Unlock()
	return v.journal.deliveryFor(o, addr)
}

// WaitFor returns the first received message, in order of arrival, for
// which match returns true, waiting for one until ctx is done (see
// Tenant.WaitFor).
func (v *Vendor) WaitFor(ctx context.Context, match func(Delivery) bool) (Delivery, error) {
	return v.journal.waitFor(ctx, match, ctxEnded)
}

// WaitForTimeout is WaitFor with a time limit instead of a context.
func (v *Vendor) WaitForTimeout(match func(Delivery) bool, timeout time.Duration) (Delivery, error) {
	return v.journal.waitForTimeout(match, timeout)
}

// ExpectNoMore checks that no message numbered above after arrives at the
// vendor within d (see Tenant.ExpectNoMore).
func (v *Vendor) ExpectNoMore(ctx context.Context, after int, d time.Duration) error {
	return v.journal.expectNoMore(ctx, after, d)
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

// ReturnedFor returns the finished send-back transactions of the received
// message d (matched on d.Seq), in order of completion.
func (v *Vendor) ReturnedFor(d Delivery) []ReturnOutcome {
	var out []ReturnOutcome
	for _, r := range v.Returned() {
		if r.Received == d.Seq {
			out = append(out, r)
		}
	}
	return out
}

// WaitIdleContext waits until every accepted message has been sent back
// (or given up on). When ctx is done first it returns an error wrapping
// ctx.Err().
func (v *Vendor) WaitIdleContext(ctx context.Context) error {
	return v.waitIdle(ctx, ctxEnded)
}

// WaitIdle is WaitIdleContext with a time limit instead of a context.
func (v *Vendor) WaitIdle(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return v.waitIdle(ctx, fmt.Sprintf("after %v", timeout))
}

func (v *Vendor) waitIdle(ctx context.Context, when string) error {
	n, err := waitUntil(ctx, &v.mu, func() (int, bool, chan struct{}) {
		return v.pending, v.pending == 0, v.idle
	})
	if err != nil {
		return fmt.Errorf("relaytest: vendor %s: %d messages still queued %s (%w)", v.cfg.Name, n, when, err)
	}
	return nil
}

func (v *Vendor) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &vendorSession{v: v, conn: c, sessionAuth: sessionAuth{
		policy: authPolicy{check: v.cfg.Auth, require: v.cfg.RequireAuth},
	}}, nil
}

type vendorSession struct {
	sessionAuth
	v    *Vendor
	conn *smtp.Conn
	d    Delivery
}

func (s *vendorSession) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.checkMail(); err != nil {
		return err
	}
	s.d = newDelivery(s.conn, from, opts, &s.sessionAuth)
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
	data, err := readData(r, lineLimit(s.v.cfg.MaxLineLength))
	if err != nil {
		return err
	}
	d := s.d.clone()
	d.Data, d.At = data, time.Now()
	_, d.TLS = s.conn.TLSConnectionState()
	for _, f := range s.v.filters {
		if e := f.Receive(&d); e != nil {
			if s.v.cfg.OnRefuse != nil {
				s.v.cfg.OnRefuse(d.clone(), f.Name(), e)
			}
			return e
		}
	}
	d, addr, ok := s.v.enqueue(d)
	if !ok {
		return errVendorClosing
	}
	if s.v.cfg.OnReceive != nil {
		s.v.cfg.OnReceive(d.clone())
	}
	return queuedReply(queueID(d.Seq, addr))
}

func (s *vendorSession) Reset()        { s.d = Delivery{} }
func (s *vendorSession) Logout() error { return nil }

// enqueue records d and schedules its send-back. It returns the recorded
// delivery and the vendor's address, and reports false when the vendor is
// closing.
func (v *Vendor) enqueue(d Delivery) (Delivery, string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state.closed {
		return Delivery{}, "", false
	}
	d = v.journal.add(d)
	if v.pending == 0 {
		v.idle = make(chan struct{})
	}
	v.pending++
	v.wg.Add(1)
	go v.process(d.clone())
	return d, v.state.addr, true
}

// process applies the behaviours to one message and sends it back.
func (v *Vendor) process(d Delivery) {
	defer v.wg.Done()
	finished := false
	defer func() {
		v.mu.Lock()
		v.pending--
		if v.pending == 0 {
			close(v.idle)
		}
		if !finished {
			v.dropped = append(v.dropped, d)
		}
		v.mu.Unlock()
	}()

	env := Envelope{From: d.MailFrom, To: append([]string(nil), d.Rcpts...), UTF8: d.UTF8}
	data := d.Data
	var xerrs []error
	for _, t := range v.xforms {
		out, err := t.fn(Envelope{From: env.From, To: append([]string(nil), env.To...), UTF8: env.UTF8}, data)
		if err != nil {
			xerrs = append(xerrs, fmt.Errorf("%s: %w", t.name, err))
			continue
		}
		data = out
	}
	plan := ReturnPlan{Transactions: []Envelope{env}}
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
	origID, testName, msgID := d.MessageID(), TestName(data), MessageID(data)
	var authUser string
	if v.cfg.ReturnAuth != nil {
		authUser = v.cfg.ReturnAuth.Username
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
				TLS: v.cfg.ReturnTLSConfig != nil, Helo: v.cfg.Helo, AuthUser: authUser,
			},
			Result:            res,
			TransformErrors:   xerrs,
			Received:          d.Seq,
			Transaction:       i + 1,
			TestName:          testName,
			MessageID:         msgID,
			OriginalMessageID: origID,
		}
		v.mu.Lock()
		v.returned = append(v.returned, out)
		v.mu.Unlock()
		if v.cfg.OnReturn != nil {
			v.cfg.OnReturn(out)
		}
		if v.ctx.Err() != nil {
			// Close cut the queue short: the message is finished only if
			// this was its last transaction and it got through.
			finished = res.Accepted && i == len(plan.Transactions)-1
			return
		}
	}
	finished = true
}
