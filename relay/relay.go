// Package relay runs recallrelay's two SMTP legs.
//
// The tenant leg accepts mail from the Microsoft 365 tenant's outbound
// connector, records the message's origin headers, stamps a signed reference
// and proxies the message to the vendor. The return leg accepts what the
// vendor sends back, finds the origin record, repairs the header block and
// reinjects the message into the tenant.
//
// Both legs proxy synchronously, before-queue style: the relay keeps no
// queue, so it answers 250 to end-of-data only after the next hop answered
// 250 for that message, and turns a next hop that fails into a 4xx upstream.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// Store keeps origin records between the two legs, and the delivery state
// that suppresses duplicate returns. store.Redis and store.Bolt implement it.
type Store interface {
	Put(ctx context.Context, rec *headers.Record, ttl time.Duration) error
	Get(ctx context.Context, ref string) (*headers.Record, error)
	ByMessageID(ctx context.Context, messageID string) ([]*headers.Record, error)
	ByFingerprint(ctx context.Context, fp string) ([]*headers.Record, error)

	// Claim, Confirm and Release guard delivery of one record to one
	// recipient; CountReturn counts how often a record's message came back.
	Claim(ctx context.Context, ref, rcpt string, lease time.Duration) (store.ClaimResult, error)
	Confirm(ctx context.Context, ref, rcpt string) error
	Release(ctx context.Context, ref, rcpt string) error
	CountReturn(ctx context.Context, ref string) (int64, error)
}

// ListenerConfig configures one leg's SMTP listener.
type ListenerConfig struct {
	// Addr is host:port to listen on ("127.0.0.1:0" picks a free port).
	Addr string
	// TLS enables STARTTLS; nil disables it.
	TLS *tls.Config

	MaxMessageBytes int64 // SIZE; default 150 MB
	MaxHeaderBytes  int   // header block; default 1 MiB
	// MaxHeaderFields bounds the number of fields in a header block
	// (552 5.3.4 beyond); default 1000.
	MaxHeaderFields int
	MaxRecipients   int           // default 1000
	MaxLineLength   int           // default 2000 (RFC 5321 allows 1000)
	CommandTimeout  time.Duration // idle time waiting for a command; default 5m
	DataTimeout     time.Duration // idle time between reads of message data; default 5m
	// MinDataRate bounds a whole DATA or BDAT transfer, in bytes per
	// second: a transfer that has received n bytes must be done within
	// DataTimeout + n/MinDataRate of its start (421 4.4.2, then the
	// connection closes). It stops a client that trickles a byte every few
	// seconds and so never trips DataTimeout. Default 500; negative
	// disables it.
	MinDataRate     int64
	BareLineEndings BareLineEndings

	// AllowNets are the client networks allowed to connect; empty allows
	// every address. Others get 554 5.7.1 at connect.
	AllowNets []netip.Prefix
	// MaxConns and MaxConnsPerIP bound open connections (421 4.7.0 beyond);
	// defaults 500 and 50.
	MaxConns, MaxConnsPerIP int
	// MaxCommandsWithoutMail bounds the command lines a client may send
	// before its first MAIL FROM (421 4.7.0, then the connection is
	// closed); default 100.
	MaxCommandsWithoutMail int
	// MaxErrors is how many refused commands a connection may collect
	// before the relay answers 421 and closes it; default 20.
	MaxErrors int
	// RequireTLS refuses MAIL FROM before STARTTLS (530 5.7.0).
	RequireTLS bool
	// ClientCertNames, when set, lets a client authenticate with a TLS
	// client certificate that verifies against TLS.ClientCAs (set
	// TLS.ClientAuth to tls.VerifyClientCertIfGiven) and whose subject
	// common name or a DNS name is in the list: the vendors' certificates.
	ClientCertNames []string
	// Users, when set, offers SMTP AUTH PLAIN and LOGIN after STARTTLS, for
	// vendors that cannot do mutual TLS.
	Users Authenticator
	// With ClientCertNames or Users set, a client must authenticate one way
	// or the other before MAIL FROM (530 5.7.0).
}

func (l ListenerConfig) withDefaults() ListenerConfig {
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = 150_000_000
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = headers.DefaultMaxHeaderBytes
	}
	if l.MaxHeaderFields <= 0 {
		l.MaxHeaderFields = headers.DefaultMaxHeaderFields
	}
	if l.MaxRecipients <= 0 {
		l.MaxRecipients = 1000
	}
	if l.MinDataRate == 0 {
		l.MinDataRate = 500
	}
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = 2000
	}
	if l.CommandTimeout <= 0 {
		l.CommandTimeout = 5 * time.Minute
	}
	if l.DataTimeout <= 0 {
		l.DataTimeout = 5 * time.Minute
	}
	if l.MaxConns <= 0 {
		l.MaxConns = 500
	}
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = 50
	}
	if l.MaxCommandsWithoutMail <= 0 {
		l.MaxCommandsWithoutMail = 100
	}
	if l.MaxErrors <= 0 {
		l.MaxErrors = 20
	}
	return l
}

// WithoutRecord is what the return leg does with mail that has no valid
// origin record.
type WithoutRecord int

const (
	// RejectUnrecorded answers 550 5.7.1. The default.
	RejectUnrecorded WithoutRecord = iota
	// StripUnrecorded delivers it with every organization header removed.
	StripUnrecorded
)

// FallbackMatching says whose returning mail may be matched to its record
// without the signed reference, by Message-ID or fingerprint.
type FallbackMatching int

const (
	// FallbackTrusted allows fallback matching only for a client that
	// authenticated (client certificate or SMTP AUTH) or that the return
	// listener's AllowNets admitted, or on a return listener bound to a
	// loopback address. The default.
	FallbackTrusted FallbackMatching = iota
	// FallbackOff matches by reference only.
	FallbackOff
	// FallbackAny allows fallback matching for every client of the return
	// listener. Anyone who can reach it and knows a recorded message's
	// Message-ID (or Date, From, To and Subject) and sender can then
	// deliver any content to a recipient not yet delivered, with the
	// recorded organization headers restored.
	FallbackAny
)

// Config is everything a Relay needs. Zero values take the documented
// defaults; Store, Signer, Vendor and Target are required.
type Config struct {
	// Hostname names the relay in its greeting, EHLO and Received fields.
	Hostname string

	Tenant ListenerConfig // tenant → relay
	Return ListenerConfig // vendor → relay

	// Vendors are the services the tenant leg sends mail to, by name.
	Vendors []NextHop
	// Router routes each message; nil sends everything to Vendors[0].
	Router Router
	// SpoolDir holds message bodies the router must read before it
	// decides (attachments, winmail.dat); default os.TempDir().
	SpoolDir string
	// Target is the tenant: where the return leg reinjects mail.
	Target NextHop

	Store  Store
	Signer *headers.Signer
	// RefHeader names the reference header; default headers.DefaultRefHeader.
	RefHeader string
	// Capture selects the fields recorded on the tenant leg; Restore those
	// put back on the return leg. Defaults: headers.DefaultCapture and
	// headers.DefaultRestore.
	Capture, Restore *headers.Matcher
	// LoopMarker is added on the return leg so the tenant's transport rule
	// does not route the message out again. Default
	// "X-RecallRelay-Processed: true".
	LoopMarker *headers.Field
	// NoReceived turns off the Received trace field the relay adds.
	NoReceived bool
	// RecordTTL is how long origin records live; default 72h.
	RecordTTL time.Duration
	// StoreTimeout bounds each store operation; default 5s.
	StoreTimeout  time.Duration
	WithoutRecord WithoutRecord
	// FallbackMatching says who may be matched without the reference.
	FallbackMatching FallbackMatching

	// PassUnrecorded lets the tenant leg send a message on to the vendor
	// when its origin record cannot be written (store down), instead of
	// answering 451 4.3.0. Such a message has no record when it returns, so
	// the return leg treats it per WithoutRecord. Off by default.
	PassUnrecorded bool

	// KeepDuplicates turns off duplicate suppression: by default, a message
	// the vendor sends back again for a recipient the tenant already
	// accepted it for is acknowledged and not delivered a second time.
	KeepDuplicates bool
	// MaxDuplicateReturns bounds how many copies of one record's message
	// the return leg acknowledges without delivering (every recipient had
	// it already): a replaying vendor gets 550 5.7.1 beyond it. First
	// deliveries need no bound: each recipient is delivered at most once.
	// Default 10.
	MaxDuplicateReturns int
	// ClaimLease is how long a delivery claim holds while the tenant has not
	// answered; it must outlast Target's timeouts. Default: Target's
	// ConnectTimeout + CommandTimeout + FinalTimeout + DataTimeout.
	ClaimLease time.Duration

	// Log receives the relay's log lines: a LogObserver over it is always
	// the first observer.
	Log zerolog.Logger
	// Observers are told of every message's outcome and of the relay's
	// other events (see Observer), after the log. They hold for the
	// relay's life: Reload does not change them.
	Observers []Observer
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Relay is a running pair of legs.
type Relay struct {
	// cfg is the configuration the relay started with. Its listener
	// settings, Hostname and Log hold for the relay's life; everything else
	// is read from live, which Reload replaces.
	cfg  Config
	live atomic.Pointer[state]
	obs  observers

	tenant, ret *leg

	mu       sync.Mutex
	closing  bool
	sessions map[*session]struct{}
}

// state is the part of the configuration that Reload can replace while
// the relay runs, the router included. A transaction reads one state from
// MAIL FROM to its end, so a reload never mixes two configurations in one
// message.
type state struct {
	cfg       Config
	router    Router
	restorer  *headers.Restorer
	refMatch  headers.Matcher
	loopMatch headers.Matcher
	vendors   map[string]NextHop
}

// hopFor returns the next hop a route starts at.
func (st *state) hopFor(rt Route) NextHop {
	if rt.Action == ToVendors && len(rt.Vendors) > 0 {
		if h, ok := st.vendors[rt.Vendors[0]]; ok {
			return h
		}
	}
	return st.cfg.Target
}

// leg is one listener.
type leg struct {
	name   string // "tenant" or "return"
	lc     ListenerConfig
	policy legPolicy
	srv    *smtp.Server
	ln     net.Listener
	done   chan struct{}
}

// loopbackOnly reports whether the leg listens on a loopback address
// only, so that no other machine can reach it.
func (l *leg) loopbackOnly() bool {
	addr := l.lc.Addr
	if l.ln != nil {
		addr = l.ln.Addr().String()
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// New checks cfg and returns a Relay that is not yet listening.
func New(cfg Config) (*Relay, error) {
	st, err := newState(cfg)
	if err != nil {
		return nil, err
	}
	r := &Relay{cfg: st.cfg, sessions: map[*session]struct{}{}}
	r.obs = append(observers{LogObserver{Log: cfg.Log}}, cfg.Observers...)
	r.live.Store(st)
	r.tenant = &leg{name: "tenant", lc: cfg.Tenant.withDefaults(), policy: tenantPolicy{}}
	r.ret = &leg{name: "return", lc: cfg.Return.withDefaults(), policy: returnPolicy{}}
	return r, nil
}

// Reload replaces the configuration of a running relay: vendors, the
// tenant target, the router, the reference keys, the header selections and
// the policies. Sessions keep their connections; each transaction started
// after Reload returns uses the new configuration, and those in progress
// finish on the old one. cfg is checked as New checks it; an invalid cfg
// changes nothing. The listener settings (Tenant, Return), Hostname and Log
// are those the relay started with: changing them needs a restart.
func (r *Relay) Reload(cfg Config) error {
	st, err := newState(cfg)
	if err == nil {
		r.live.Store(st)
	}
	r.obs.Reloaded(err)
	return err
}

// routerOf is cfg's router, by default everything to the first vendor.
func routerOf(cfg Config) Router {
	if cfg.Router != nil {
		return cfg.Router
	}
	return defaultRouter{vendor: cfg.Vendors[0].Name}
}

// newState checks cfg and fills in its defaults.
func newState(cfg Config) (*state, error) {
	if cfg.Store == nil {
		return nil, errors.New("relay: no store")
	}
	if cfg.Signer == nil {
		return nil, errors.New("relay: no reference signer")
	}
	if len(cfg.Vendors) == 0 {
		return nil, errors.New("relay: no vendor")
	}
	cfg.Vendors = slices.Clone(cfg.Vendors)
	vendors := map[string]NextHop{}
	for i := range cfg.Vendors {
		h := &cfg.Vendors[i]
		if err := h.validate(); err != nil {
			return nil, fmt.Errorf("relay: vendor: %w", err)
		}
		if _, dup := vendors[h.Name]; dup {
			return nil, fmt.Errorf("relay: vendor %s listed twice", h.Name)
		}
		if h.Helo == "" {
			h.Helo = cfg.Hostname
			if h.Helo == "" {
				h.Helo = "localhost"
			}
		}
		*h = h.withDefaults()
		vendors[h.Name] = *h
	}
	if err := cfg.Target.validate(); err != nil {
		return nil, fmt.Errorf("relay: tenant target: %w", err)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.RefHeader == "" {
		cfg.RefHeader = headers.DefaultRefHeader
	}
	if err := headers.CheckFieldName(cfg.RefHeader); err != nil {
		return nil, fmt.Errorf("relay: reference header: %w", err)
	}
	if cfg.Capture == nil {
		m := headers.MustMatcher(headers.DefaultCapture...)
		cfg.Capture = &m
	}
	if cfg.Restore == nil {
		m := headers.MustMatcher(headers.DefaultRestore...)
		cfg.Restore = &m
	}
	if cfg.LoopMarker == nil {
		f, _ := headers.NewField("X-RecallRelay-Processed", "true")
		cfg.LoopMarker = &f
	}
	if !headers.ValidRawField(cfg.LoopMarker.Raw) {
		return nil, fmt.Errorf("relay: loop marker %q is not a valid header field", cfg.LoopMarker.Raw)
	}
	if cfg.RecordTTL <= 0 {
		cfg.RecordTTL = 72 * time.Hour
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Target.Helo == "" {
		cfg.Target.Helo = cfg.Hostname
	}
	cfg.Target = cfg.Target.withDefaults()
	if cfg.MaxDuplicateReturns <= 0 {
		cfg.MaxDuplicateReturns = 10
	}
	if cfg.ClaimLease <= 0 {
		t := cfg.Target
		cfg.ClaimLease = t.ConnectTimeout + t.CommandTimeout + t.FinalTimeout + t.DataTimeout
	}
	router := routerOf(cfg)
	cfg.Router = nil // the state's router is state.router
	return &state{
		cfg:       cfg,
		router:    router,
		restorer:  headers.NewRestorer(*cfg.Restore),
		vendors:   vendors,
		refMatch:  headers.MustMatcher(cfg.RefHeader),
		loopMatch: headers.MustMatcher(cfg.LoopMarker.Name),
	}, nil
}

// SetRouter replaces the router and nothing else; sessions pick it up
// with their next transaction, as with Reload.
func (r *Relay) SetRouter(rt Router) {
	for {
		cur := r.live.Load()
		next := *cur
		next.router = rt
		if r.live.CompareAndSwap(cur, &next) {
			return
		}
	}
}

// Start binds both listeners and serves them in the background.
func (r *Relay) Start() error {
	for _, l := range []*leg{r.tenant, r.ret} {
		ln, err := net.Listen("tcp", l.lc.Addr)
		if err != nil {
			r.closeListeners()
			return fmt.Errorf("relay: %s listener %s: %w", l.name, l.lc.Addr, err)
		}
		l.ln = ln
	}
	for _, l := range []*leg{r.tenant, r.ret} {
		l.srv = r.newServer(l)
		l.done = make(chan struct{})
		go func(l *leg) {
			defer close(l.done)
			gl := &guardedListener{Listener: l.ln, adm: newAdmission(l.lc), leg: l.name, obs: r.obs,
				maxCmds: l.lc.MaxCommandsWithoutMail}
			if err := l.srv.Serve(gl); err != nil {
				r.cfg.Log.Error().Str("leg", l.name).Err(err).Msg("listener stopped")
			}
		}(l)
		next := r.live.Load().cfg.Target.Address
		if l == r.tenant {
			next = r.live.Load().cfg.Vendors[0].Address
		}
		r.cfg.Log.Info().Str("leg", l.name).Str("listen", l.ln.Addr().String()).Str("next_hop", next).Msg("listening")
	}
	return nil
}

func (r *Relay) closeListeners() {
	for _, l := range []*leg{r.tenant, r.ret} {
		if l.ln != nil {
			l.ln.Close()
		}
	}
}

// TenantAddr is the tenant leg's listening address (after Start).
func (r *Relay) TenantAddr() string { return r.tenant.ln.Addr().String() }

// ReturnAddr is the return leg's listening address (after Start).
func (r *Relay) ReturnAddr() string { return r.ret.ln.Addr().String() }

// Shutdown stops accepting connections, answers 421 to every idle session
// and lets transactions in progress finish until ctx is done; then it answers
// 421 to the rest and closes them. A transaction cut off that way was never
// answered 250, so its sender still has the message.
func (r *Relay) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	r.closeSessions(false)

	var (
		errs []error
		emu  sync.Mutex
		wg   sync.WaitGroup
	)
	for _, l := range []*leg{r.tenant, r.ret} {
		if l.srv == nil {
			continue
		}
		wg.Add(1)
		go func(l *leg) {
			defer wg.Done()
			if err := l.srv.Shutdown(ctx); err != nil {
				r.closeSessions(true)
				l.srv.Close()
				if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
				}
			}
			<-l.done
		}(l)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// closeSessions answers 421 and closes idle sessions, or all when force.
// A busy one gets its 421 right after its transaction's final reply
// (session.Reset), and a MAIL FROM after the shutdown began gets 421.
func (r *Relay) closeSessions(force bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.sessions {
		if s.conn != nil && (force || !s.busy.Load()) {
			s.conn.sendReply(shutdownReply(r.cfg.Hostname))
		}
	}
}

func shutdownReply(hostname string) string {
	return "421 4.3.2 " + hostname + " shutting down; try again later"
}

func (r *Relay) track(s *session, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.sessions[s] = struct{}{}
	} else {
		delete(r.sessions, s)
	}
}

func (r *Relay) shuttingDown() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closing
}

func (r *Relay) newServer(l *leg) *smtp.Server {
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return r.newSession(l, c), nil
	}))
	s.Domain = r.cfg.Hostname
	s.TLSConfig = l.lc.TLS
	s.MaxMessageBytes = l.lc.MaxMessageBytes
	// The session counts recipients itself (with a log line); go-smtp's
	// limit is left off so that it does not answer first.
	s.MaxRecipients = 0
	s.MaxLineLength = l.lc.MaxLineLength
	s.ReadTimeout = l.lc.CommandTimeout
	s.WriteTimeout = l.lc.CommandTimeout
	s.EnableSMTPUTF8 = true
	s.ErrorLog = smtpLogger{r.cfg.Log.With().Str("leg", l.name).Logger()}
	return s
}

// smtpLogger routes go-smtp's internal error log into zerolog.
type smtpLogger struct{ l zerolog.Logger }

func (s smtpLogger) Printf(format string, v ...any) { s.l.Warn().Msgf(format, v...) }
func (s smtpLogger) Println(v ...any)               { s.l.Warn().Msg(fmt.Sprintln(v...)) }
