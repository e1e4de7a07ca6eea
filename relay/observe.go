package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Observer is told what the relay does: the seam for logs, metrics, a
// status page or a test. The relay calls it synchronously on the
// connection's goroutine, so an Observer must be quick and safe for
// concurrent use; one that needs to do slow work hands it off.
//
// Embed NopObserver in an implementation so that it keeps compiling when
// methods are added.
type Observer interface {
	// MessageDone is called once per message per leg, when the client's
	// final reply is known.
	MessageDone(o *Outcome)
	// ConnectionRefused is called when a listener turns a connection away
	// at connect time (allow_nets, connection limits).
	ConnectionRefused(e ConnectionRefused)
	// LimitHit is called when a connection or transaction reaches a limit.
	LimitHit(e LimitHit)
	// NextHopFailed is called when a next hop cannot be reached or fails
	// before it gave a verdict on a message.
	NextHopFailed(e NextHopFailed)
	// StoreFailed is called when an origin-record store operation fails.
	StoreFailed(e StoreFailed)
	// Reloaded is called after each Reload, with its error (nil when the
	// new configuration took effect).
	Reloaded(err error)
}

// NopObserver does nothing; embed it in an Observer that cares about some
// events only.
type NopObserver struct{}

func (NopObserver) MessageDone(*Outcome)                {}
func (NopObserver) ConnectionRefused(ConnectionRefused) {}
func (NopObserver) LimitHit(LimitHit)                   {}
func (NopObserver) NextHopFailed(NextHopFailed)         {}
func (NopObserver) StoreFailed(StoreFailed)             {}
func (NopObserver) Reloaded(error)                      {}

// Outcome is what became of one message on one leg.
type Outcome struct {
	Leg string // "tenant" or "return"
	// Session identifies the SMTP connection the message came on: every
	// message of one connection has the same.
	Session string
	Client  string // the client's IP address
	Auth    string // "cert:<name>" or "user:<name>"; "" when not authenticated
	TLS     string // protocol and cipher suite; "" when plaintext

	// MessageID is the message's original Message-ID: as the tenant sent
	// it, on the return leg the recorded one (the one restored).
	MessageID string
	// ClientMessageID is the Message-ID the client sent, when it differs
	// from MessageID (a vendor that rewrote it).
	ClientMessageID string
	Ref             string // the origin record's reference; "" when none
	// KeyID is the reference key that signed (tenant leg) or verified
	// (return leg) the reference; "" when none did.
	KeyID string
	From  string
	Rcpts int
	// Recipients are the envelope's recipients, for observers that log
	// them as configured.
	Recipients []string
	Size       int64 // bytes of message data received

	// Route is where the message went: "vendor-a", "vendor-a>vendor-b",
	// "bypass", "refused"; "" before it was decided.
	Route string
	// Rules, Decision and RouteNotes explain a tenant-leg route: the rules
	// that decided, the router's account of the decision, and problems it
	// met (a body it could not scan completely).
	Rules      []string
	Decision   string
	RouteNotes []string

	// MatchedBy says how the return leg found the record: "reference",
	// "message-id", "fingerprint", "none", "none-stripped".
	MatchedBy string
	// Restored and Removed name the fields the return leg put back and
	// removed; Suppressed the recipients that already had the message.
	Restored, Removed, Suppressed []string
	// Hop is the next hop the message was streamed to ("" when it reached
	// none): the vendor or the tenant target, by name.
	Hop string
	// Forwarded: the return leg sent the message on to the next vendor of
	// its chain instead of the tenant.
	Forwarded bool
	// Unrecorded: the tenant leg sent the message on although its record
	// could not be written (pass_unrecorded).
	Unrecorded bool

	// Result is "delivered", "bypassed", "forwarded", "suppressed",
	// "tempfail" or "rejected"; Code the reply the client got, Err the
	// refusal (nil when Code is 250).
	Result string
	Code   int
	Err    error
	// HopReply is the next hop's reply text to end-of-data, when it gave
	// one.
	HopReply string

	Duration time.Duration // from the start of message data to the reply
	Stages   Stages
}

// Stages splits an Outcome's Duration. A stage that did not run is zero.
type Stages struct {
	Header   time.Duration // reading the header block
	Route    time.Duration // routing (tenant leg), including spooling the body
	Store    time.Duration // origin-record lookups, claims and writes
	Transfer time.Duration // streaming the message to the next hop
	HopReply time.Duration // the next hop's verdict on end-of-data
}

// ConnectionRefused describes a connection turned away at connect time.
type ConnectionRefused struct {
	Leg, Client string
	Reply       string // what the client was told
}

// LimitHit describes a limit a connection reached.
type LimitHit struct {
	Leg, Client string
	Limit       string // what was exceeded, e.g. "too many recipients"
	Reply       string // what the client was told
}

// NextHopFailed describes a next hop that failed.
type NextHopFailed struct {
	Leg, Client string
	Hop         string // the next hop's name
	Stage       string // "connect", "MAIL FROM", "end of data", …
	Code        int    // the reply the client got
	Err         error
}

// StoreFailed describes a failed origin-record store operation.
type StoreFailed struct {
	Leg, Client string
	Op          string // "get", "put", "lookup", "claim", "confirm", "release", …
	Ref         string
	Err         error
}

// observers calls each of a list of Observers in turn.
type observers []Observer

func (os observers) MessageDone(o *Outcome) {
	for _, ob := range os {
		ob.MessageDone(o)
	}
}

func (os observers) ConnectionRefused(e ConnectionRefused) {
	for _, ob := range os {
		ob.ConnectionRefused(e)
	}
}

func (os observers) LimitHit(e LimitHit) {
	for _, ob := range os {
		ob.LimitHit(e)
	}
}

func (os observers) NextHopFailed(e NextHopFailed) {
	for _, ob := range os {
		ob.NextHopFailed(e)
	}
}

func (os observers) StoreFailed(e StoreFailed) {
	for _, ob := range os {
		ob.StoreFailed(e)
	}
}

func (os observers) Reloaded(err error) {
	for _, ob := range os {
		ob.Reloaded(err)
	}
}

// LogObserver writes each event as one JSON line: the relay's log, with
// the same field names on both legs.
type LogObserver struct {
	Log zerolog.Logger
	// Recipients is how the message line shows the recipients.
	Recipients RecipientLogging
}

// RecipientLogging is how log lines show recipients: not at all (the
// default), as the first 12 hex digits of each address's SHA-256 (enough
// to follow one address through the log without writing it down), or in
// full.
type RecipientLogging string

const (
	RecipientsNone RecipientLogging = "none"
	RecipientsHash RecipientLogging = "hash"
	RecipientsFull RecipientLogging = "full"
)

// Check reports a value that is none of the enum's.
func (r RecipientLogging) Check() error {
	return checkEnum(r, RecipientsNone, RecipientsHash, RecipientsFull)
}

// MessageDone writes the one line per message per leg.
func (l LogObserver) MessageDone(o *Outcome) {
	level := zerolog.InfoLevel
	if o.Err != nil {
		level = zerolog.WarnLevel
	}
	e := l.Log.WithLevel(level).Str("leg", o.Leg).Str("session", o.Session).Str("client", o.Client)
	if o.Auth != "" {
		e = e.Str("auth", o.Auth)
	}
	if o.TLS != "" {
		e = e.Str("tls", o.TLS)
	}
	e = e.Str("message_id", o.MessageID)
	if o.ClientMessageID != "" {
		e = e.Str("client_message_id", o.ClientMessageID)
	}
	if o.KeyID != "" {
		e = e.Str("key_id", o.KeyID)
	}
	switch l.Recipients {
	case RecipientsFull:
		e = e.Strs("rcpts", o.Recipients)
	case RecipientsHash:
		hs := make([]string, len(o.Recipients))
		for i, r := range o.Recipients {
			sum := sha256.Sum256([]byte(strings.ToLower(r)))
			hs[i] = hex.EncodeToString(sum[:6])
		}
		e = e.Strs("rcpt_hashes", hs)
	}
	e = e.Str("ref", o.Ref).
		Str("from", o.From).
		Int("rcpt_count", o.Rcpts).
		Int64("size", o.Size).
		Str("vendor", o.Route).
		Int64("duration_ms", o.Duration.Milliseconds()).
		Str("result", o.Result).
		Int("code", o.Code)
	if len(o.Rules) > 0 {
		e = e.Strs("rules", o.Rules)
	}
	if o.Decision != "" {
		e = e.Str("decision", o.Decision)
	}
	if len(o.RouteNotes) > 0 {
		e = e.Strs("route_notes", o.RouteNotes)
	}
	if o.Leg == "return" {
		e = e.Str("matched_by", o.MatchedBy).Strs("restored", o.Restored).Strs("removed", o.Removed)
		if len(o.Suppressed) > 0 {
			e = e.Strs("suppressed", o.Suppressed)
		}
	}
	if o.Unrecorded {
		e = e.Bool("unrecorded", true)
	}
	if o.Hop != "" {
		e = e.Str("next_hop", o.Hop)
	}
	if o.HopReply != "" {
		e = e.Str("next_hop_reply", o.HopReply)
	}
	if o.Err != nil {
		e = e.Str("error", o.Err.Error())
	}
	e.Msg("message")
}

// ConnectionRefused logs a refused connection.
func (l LogObserver) ConnectionRefused(e ConnectionRefused) {
	l.Log.Warn().Str("leg", e.Leg).Str("client", e.Client).Str("reply", e.Reply).Msg("connection refused")
}

// LimitHit logs a limit; idle timeouts at info level, since senders keep
// idle connections open and that is no misdeed.
func (l LogObserver) LimitHit(e LimitHit) {
	level := zerolog.WarnLevel
	if len(e.Limit) >= 4 && e.Limit[:4] == "idle" {
		level = zerolog.InfoLevel
	}
	l.Log.WithLevel(level).Str("leg", e.Leg).Str("client", e.Client).Str("limit", e.Limit).Str("reply", e.Reply).Msg("limit reached")
}

// NextHopFailed logs a next hop that failed.
func (l LogObserver) NextHopFailed(e NextHopFailed) {
	l.Log.Warn().Str("leg", e.Leg).Str("client", e.Client).Str("vendor", e.Hop).Str("stage", e.Stage).
		Int("code", e.Code).Err(e.Err).Msg("next hop unavailable")
}

// StoreFailed logs a failed store operation.
func (l LogObserver) StoreFailed(e StoreFailed) {
	ev := l.Log.Error().Str("leg", e.Leg).Str("client", e.Client).Str("op", e.Op)
	if e.Ref != "" {
		ev = ev.Str("ref", e.Ref)
	}
	ev.Err(e.Err).Msg("store failed")
}

// Reloaded logs a reload at debug level: whoever called Reload knows which
// file it came from and logs the outcome with that (recallrelay serve
// does, on SIGHUP).
func (l LogObserver) Reloaded(err error) {
	if err != nil {
		l.Log.Debug().Err(err).Msg("reload refused")
		return
	}
	l.Log.Debug().Msg("reloaded")
}

// MemoryObserver keeps every event in memory, for tests and for programs
// that report on a run (the demo, the recall-survival report). It is safe
// for concurrent use.
type MemoryObserver struct {
	mu       sync.Mutex
	outcomes []Outcome
	refused  []ConnectionRefused
	limits   []LimitHit
	hops     []NextHopFailed
	stores   []StoreFailed
	reloads  []error
	changed  chan struct{}
}

func (m *MemoryObserver) record(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f()
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
}

// MessageDone keeps a copy of o.
func (m *MemoryObserver) MessageDone(o *Outcome) {
	m.record(func() { m.outcomes = append(m.outcomes, *o) })
}

// ConnectionRefused keeps e.
func (m *MemoryObserver) ConnectionRefused(e ConnectionRefused) {
	m.record(func() { m.refused = append(m.refused, e) })
}

// LimitHit keeps e.
func (m *MemoryObserver) LimitHit(e LimitHit) { m.record(func() { m.limits = append(m.limits, e) }) }

// NextHopFailed keeps e.
func (m *MemoryObserver) NextHopFailed(e NextHopFailed) {
	m.record(func() { m.hops = append(m.hops, e) })
}

// StoreFailed keeps e.
func (m *MemoryObserver) StoreFailed(e StoreFailed) {
	m.record(func() { m.stores = append(m.stores, e) })
}

// Reloaded keeps err.
func (m *MemoryObserver) Reloaded(err error) { m.record(func() { m.reloads = append(m.reloads, err) }) }

// Outcomes returns the messages' outcomes so far, in the order they ended.
func (m *MemoryObserver) Outcomes() []Outcome {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Outcome(nil), m.outcomes...)
}

// Refused returns the connections refused so far.
func (m *MemoryObserver) Refused() []ConnectionRefused {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ConnectionRefused(nil), m.refused...)
}

// Limits returns the limits hit so far.
func (m *MemoryObserver) Limits() []LimitHit {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]LimitHit(nil), m.limits...)
}

// HopFailures returns the next-hop failures so far.
func (m *MemoryObserver) HopFailures() []NextHopFailed {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]NextHopFailed(nil), m.hops...)
}

// StoreFailures returns the store failures so far.
func (m *MemoryObserver) StoreFailures() []StoreFailed {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]StoreFailed(nil), m.stores...)
}

// Reloads returns each reload's error (nil for one that took effect).
func (m *MemoryObserver) Reloads() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]error(nil), m.reloads...)
}

// ErrWaitTimeout is returned by Wait when its condition did not hold in time.
var ErrWaitTimeout = errors.New("relay: observer wait timed out")

// Wait blocks until cond holds for the observer (it is called after every
// event, without the observer's lock), or timeout passes.
func (m *MemoryObserver) Wait(timeout time.Duration, cond func(m *MemoryObserver) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		ch := m.changed
		m.mu.Unlock()
		if cond(m) {
			return nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			if cond(m) {
				return nil
			}
			return ErrWaitTimeout
		}
	}
}
