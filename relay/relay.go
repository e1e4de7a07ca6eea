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
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// Store keeps origin records between the two legs, and the delivery state
// that suppresses duplicate returns (store.Store; store.Redis and
// store.Bolt implement it). The relay never closes it: whoever opened it
// does.
type Store = store.Store

// Relay is a running pair of legs.
type Relay struct {
	// cfg is what the relay holds for its life; the policy in force is
	// live, which Reload replaces.
	cfg  Static
	live atomic.Pointer[state]
	obs  observers

	tenant, ret *leg
	// hops keeps idle next-hop connections for later sessions.
	hops *hopPool
	// stamped remembers when each recent reference was first stamped, so
	// that a message sent again gets the same time stamps without a store
	// read (see stampTime).
	stamped *lru.Cache[string, time.Time]

	mu       sync.Mutex
	closing  bool
	sessions map[*session]struct{}
}

// state is the part of the configuration that Reload can replace while
// the relay runs, the router included. A transaction reads one state from
// MAIL FROM to its end, so a reload never mixes two configurations in one
// message.
type state struct {
	cfg       Policy
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
	addr := l.lc.Listen
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
	if cfg.Store == nil {
		return nil, errors.New("relay: no store")
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	st, err := newState(cfg.Static, cfg.Policy)
	if err != nil {
		return nil, err
	}
	stamped, err := lru.New[string, time.Time](stampedEntries)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &Relay{cfg: cfg.Static, sessions: map[*session]struct{}{}, hops: newHopPool(cfg.HopPool), stamped: stamped}
	if err := cfg.LogRecipients.Check(); err != nil {
		return nil, fmt.Errorf("relay: log recipients: %w", err)
	}
	r.obs = append(observers{LogObserver{Log: cfg.Log, Recipients: cfg.LogRecipients}}, cfg.Observers...)
	r.live.Store(st)
	r.tenant = &leg{name: "tenant", lc: cfg.Tenant.withDefaults(), policy: tenantPolicy{}}
	r.ret = &leg{name: "return", lc: cfg.Return.withDefaults(), policy: returnPolicy{}}
	return r, nil
}

// Reload replaces the policy of a running relay: vendors, the tenant
// target, the router, the reference keys, the header selections and the
// policies. Sessions keep their connections; each transaction started
// after Reload returns uses the new policy, and those in progress finish
// on the old one. p is checked as New checks it; an invalid p changes
// nothing. What Static holds needs a restart.
func (r *Relay) Reload(p Policy) error {
	st, err := newState(r.cfg, p)
	if err == nil {
		r.live.Store(st)
		// Idle connections were made with the old settings.
		r.hops.flush()
	}
	r.obs.Reloaded(err)
	return err
}

// newState checks p and fills in its defaults.
func newState(static Static, p Policy) (*state, error) {
	if p.Signer == nil {
		return nil, errors.New("relay: no reference signer")
	}
	if len(p.Vendors) == 0 {
		return nil, errors.New("relay: no vendor")
	}
	for _, c := range []interface{ Check() error }{p.ReturnWithoutRecord, p.FallbackMatching, p.Duplicates} {
		if err := c.Check(); err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
	}
	p.Vendors = slices.Clone(p.Vendors)
	vendors := map[string]NextHop{}
	for i := range p.Vendors {
		h := &p.Vendors[i]
		if err := h.validate(); err != nil {
			return nil, fmt.Errorf("relay: vendor: %w", err)
		}
		if _, dup := vendors[h.Name]; dup {
			return nil, fmt.Errorf("relay: vendor %s listed twice", h.Name)
		}
		*h = h.withDefaults(static.Hostname)
		vendors[h.Name] = *h
	}
	if err := p.Target.validate(); err != nil {
		return nil, fmt.Errorf("relay: tenant target: %w", err)
	}
	p.Target = p.Target.withDefaults(static.Hostname)
	if p.RefHeader == "" {
		p.RefHeader = headers.DefaultRefHeader
	}
	if err := headers.CheckFieldName(p.RefHeader); err != nil {
		return nil, fmt.Errorf("relay: reference header: %w", err)
	}
	if p.Capture == nil {
		m := headers.MustMatcher(headers.DefaultCapture...)
		p.Capture = &m
	}
	if p.Restore == nil {
		m := headers.MustMatcher(headers.DefaultRestore...)
		p.Restore = &m
	}
	if p.LoopMarker == nil {
		f, _ := headers.NewField(DefaultLoopMarkerName, DefaultLoopMarkerValue)
		p.LoopMarker = &f
	}
	if !headers.ValidRawField(p.LoopMarker.Raw) {
		return nil, fmt.Errorf("relay: loop marker %q is not a valid header field", p.LoopMarker.Raw)
	}
	if p.RecordTTL <= 0 {
		p.RecordTTL = DefaultRecordTTL
	}
	if p.StoreTimeout <= 0 {
		p.StoreTimeout = DefaultStoreTimeout
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.ReturnWithoutRecord == "" {
		p.ReturnWithoutRecord = ReturnReject
	}
	if p.FallbackMatching == "" {
		p.FallbackMatching = FallbackTrusted
	}
	if p.Duplicates == "" {
		p.Duplicates = DuplicatesSuppress
	}
	if p.MaxDuplicateReturns <= 0 {
		p.MaxDuplicateReturns = DefaultMaxDuplicateReturns
	}
	if p.ClaimLease <= 0 {
		t := p.Target
		p.ClaimLease = t.ConnectTimeout + t.CommandTimeout + t.FinalTimeout + t.DataTimeout
	}
	router := p.Router
	if router == nil {
		router = defaultRouter{vendor: p.Vendors[0].Name}
	}
	p.Router = nil // the state's router is state.router
	return &state{
		cfg:       p,
		router:    router,
		restorer:  headers.NewRestorer(*p.Restore),
		vendors:   vendors,
		refMatch:  headers.MustMatcher(p.RefHeader),
		loopMatch: headers.MustMatcher(p.LoopMarker.Name),
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
		ln, err := net.Listen("tcp", l.lc.Listen)
		if err != nil {
			r.closeListeners()
			return fmt.Errorf("relay: %s listener %s: %w%s", l.name, l.lc.Listen, err, listenHint(err))
		}
		l.ln = ln
	}
	for _, l := range []*leg{r.tenant, r.ret} {
		l.srv = r.newServer(l)
		l.done = make(chan struct{})
		go func(l *leg) {
			defer close(l.done)
			gl := &guardedListener{Listener: l.ln, adm: newAdmission(l.lc), leg: l.name, obs: r.obs,
				maxCmds: l.lc.MaxCommandsBeforeMail}
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
	r.hops.start()
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
			// go-smtp's Serve registers its listener only once it runs: a
			// Shutdown right after Start can come first and close nothing.
			// The listener is the relay's own; closing it ends Serve.
			l.ln.Close()
			<-l.done
		}(l)
	}
	wg.Wait()
	r.hops.close()
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
	s.MaxMessageBytes = l.lc.MaxMessageSize
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

// Printf logs at warn level, except what a peer going away causes: a
// health check that connects and closes at once, a client that drops the
// connection. go-smtp (v0.25) reports those only as "error handling
// ADDR: ERR" with the network error as text; they are logged at debug
// (TestBareProbeIsQuiet pins it).
func (s smtpLogger) Printf(format string, v ...any) {
	level := zerolog.WarnLevel
	if format == "error handling %v: %s" && len(v) == 2 && peerGone(v[1]) {
		level = zerolog.DebugLevel
	}
	s.l.WithLevel(level).Msgf(format, v...)
}

// peerGone reports whether err is the peer closing or resetting the
// connection.
func peerGone(v any) bool {
	err, ok := v.(error)
	return ok && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed))
}
func (s smtpLogger) Println(v ...any) { s.l.Warn().Msg(fmt.Sprintln(v...)) }

// Sessions returns the number of open SMTP sessions per leg ("tenant",
// "return").
func (r *Relay) Sessions() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{"tenant": 0, "return": 0}
	for s := range r.sessions {
		n[s.leg.name]++
	}
	return n
}

// ListenerInfo describes one of the relay's listeners as it runs.
type ListenerInfo struct {
	Leg string // "tenant" or "return"
	// Addr is the address it listens on ("" before Start).
	Addr string
	// Config is its configuration with the defaults filled in.
	Config ListenerConfig
	// Sessions is the number of SMTP sessions open on it now.
	Sessions int
}

// Listeners describes both listeners, tenant first.
func (r *Relay) Listeners() []ListenerInfo {
	open := r.Sessions()
	var out []ListenerInfo
	for _, l := range []*leg{r.tenant, r.ret} {
		li := ListenerInfo{Leg: l.name, Config: l.lc, Sessions: open[l.name]}
		if l.ln != nil {
			li.Addr = l.ln.Addr().String()
		}
		out = append(out, li)
	}
	return out
}

// NextHops returns the next hops of the policy in force, defaults filled
// in: the vendors in their configured order, then the tenant target.
func (r *Relay) NextHops() (vendors []NextHop, target NextHop) {
	st := r.live.Load()
	return slices.Clone(st.cfg.Vendors), st.cfg.Target
}

// ErrNotReady is wrapped by Ready's errors.
var ErrNotReady = errors.New("relay: not ready")

// Ready reports whether the relay should be sent mail: both listeners are
// up, it is not shutting down, and its store answers within ctx. A load
// balancer takes an instance whose store is down out of rotation on it.
func (r *Relay) Ready(ctx context.Context) error {
	if r.shuttingDown() {
		return fmt.Errorf("%w: shutting down", ErrNotReady)
	}
	for _, l := range []*leg{r.tenant, r.ret} {
		if l.ln == nil {
			return fmt.Errorf("%w: %s listener not started", ErrNotReady, l.name)
		}
	}
	if err := r.cfg.Store.Ping(ctx); err != nil {
		return fmt.Errorf("%w: store: %v", ErrNotReady, err)
	}
	return nil
}

// listenHint is advice for a listener that could not bind: ports below
// 1024, SMTP's 25 among them, need a privilege.
func listenHint(err error) string {
	if !errors.Is(err, syscall.EACCES) {
		return ""
	}
	return " (ports below 1024 need root or CAP_NET_BIND_SERVICE: setcap cap_net_bind_service=+ep on the binary, or AmbientCapabilities=CAP_NET_BIND_SERVICE in its systemd unit)"
}
