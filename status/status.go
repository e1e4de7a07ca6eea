// Package status keeps what an administrator looks at first — the
// newest message outcomes, each next hop's last success and last failure,
// totals since start, the store's last error — and serves it as one
// server-rendered HTML page (Page), with a search over the kept outcomes
// by Message-ID, reference or address.
//
// Recorder is a relay.Observer: add it to relay.Static.Observers. It keeps
// a fixed number of outcomes (Config.Keep) in a ring, so its memory is
// bounded whatever the traffic; older messages are in the log and, while
// their records live, in `recallrelay trace`.
package status

import (
	"strings"
	"sync"
	"time"

	"github.com/recallrelay/recallrelay/relay"
)

// DefaultKeep is how many outcomes a Recorder keeps by default.
const DefaultKeep = 1000

// Config configures a Recorder.
type Config struct {
	// Keep is how many outcomes are kept, the newest; default DefaultKeep.
	Keep int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Message is one kept outcome: what the page shows and searches.
type Message struct {
	At        time.Time
	Leg       string
	Session   string
	MessageID string
	// ClientMessageID is the Message-ID the client sent when it differs
	// (a vendor that rewrote it).
	ClientMessageID string
	Ref             string
	From            string
	Recipients      []string // as the envelope gave them
	Route           string
	Hop             string
	MatchedBy       string
	Result          string
	Code            int
	// Reply is the refusal the client got, or the next hop's reply text
	// when it accepted.
	Reply    string
	Size     int64
	Duration time.Duration
}

// HopState is what a Recorder saw of one next hop.
type HopState struct {
	Name                 string
	Successes, Failures  int
	LastSuccess          time.Time // zero: never
	LastSuccessReply     string
	LastFailure          time.Time // zero: never
	LastFailureStage     string
	LastFailureReply     string
	LastFailureMessageID string // "" for a failure before a message (connect, MAIL FROM)
}

// StoreState is what a Recorder saw of the store's failures.
type StoreState struct {
	Failures    int
	LastFailure time.Time // zero: never
	LastOp      string
	LastError   string
}

// Totals counts messages since start by leg and result.
type Totals map[string]map[string]int

// Count returns the messages of leg with result ("" for every result).
func (t Totals) Count(leg, result string) int {
	if result != "" {
		return t[leg][result]
	}
	n := 0
	for _, c := range t[leg] {
		n += c
	}
	return n
}

// Recorder keeps the relay's recent events for the status page (a
// relay.Observer). It is safe for concurrent use.
type Recorder struct {
	relay.NopObserver
	cfg Config

	mu        sync.Mutex
	ring      []Message // capacity cfg.Keep; next is where the next goes
	next      int
	full      bool
	totals    Totals
	hops      map[string]*HopState
	store     StoreState
	reloads   int
	reloadErr string
	reloadAt  time.Time
}

// New returns an empty Recorder.
func New(cfg Config) *Recorder {
	if cfg.Keep <= 0 {
		cfg.Keep = DefaultKeep
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Recorder{
		cfg:    cfg,
		ring:   make([]Message, cfg.Keep),
		totals: Totals{},
		hops:   map[string]*HopState{},
	}
}

// hop returns the state of the hop name, creating it. Callers hold mu.
func (r *Recorder) hop(name string) *HopState {
	h := r.hops[name]
	if h == nil {
		h = &HopState{Name: name}
		r.hops[name] = h
	}
	return h
}

// MessageDone keeps o and counts it; the hop it was streamed to is marked
// successful when it accepted the message, failed when it refused it.
func (r *Recorder) MessageDone(o *relay.Outcome) {
	now := r.cfg.Now()
	m := Message{
		At: now, Leg: o.Leg, Session: o.Session, MessageID: o.MessageID, ClientMessageID: o.ClientMessageID,
		Ref: o.Ref, From: o.From, Recipients: append([]string(nil), o.Recipients...), Route: o.Route, Hop: o.Hop,
		MatchedBy: o.MatchedBy, Result: o.Result, Code: o.Code, Reply: o.HopReply, Size: o.Size, Duration: o.Duration,
	}
	if o.Err != nil {
		m.Reply = o.Err.Error()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring[r.next] = m
	r.next = (r.next + 1) % len(r.ring)
	if r.next == 0 {
		r.full = true
	}
	byResult := r.totals[o.Leg]
	if byResult == nil {
		byResult = map[string]int{}
		r.totals[o.Leg] = byResult
	}
	byResult[o.Result]++
	if o.Hop == "" {
		return
	}
	h := r.hop(o.Hop)
	switch {
	case o.Code == 250 && o.HopReply != "":
		h.Successes++
		h.LastSuccess, h.LastSuccessReply = now, o.HopReply
	case o.Code >= 400 && o.HopReply != "":
		// The next hop's own verdict on the message: a refusal.
		h.Failures++
		h.LastFailure, h.LastFailureStage, h.LastFailureReply = now, "end of data", o.HopReply
		h.LastFailureMessageID = o.MessageID
	}
}

// NextHopFailed marks the hop failed: unreachable, or gone before its
// verdict.
func (r *Recorder) NextHopFailed(e relay.NextHopFailed) {
	now := r.cfg.Now()
	reply := ""
	if e.Err != nil {
		reply = e.Err.Error()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hop(e.Hop)
	h.Failures++
	h.LastFailure, h.LastFailureStage, h.LastFailureReply, h.LastFailureMessageID = now, e.Stage, reply, ""
}

// StoreFailed keeps the store's last failure.
func (r *Recorder) StoreFailed(e relay.StoreFailed) {
	now := r.cfg.Now()
	msg := ""
	if e.Err != nil {
		msg = e.Err.Error()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.store.Failures++
	r.store.LastFailure, r.store.LastOp, r.store.LastError = now, e.Op, msg
}

// Reloaded counts reloads and keeps the last one's error.
func (r *Recorder) Reloaded(err error) {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reloads++
	r.reloadAt = now
	r.reloadErr = ""
	if err != nil {
		r.reloadErr = err.Error()
	}
}

// Snapshot is a consistent copy of a Recorder's state.
type Snapshot struct {
	// Messages are the kept outcomes, newest first.
	Messages []Message
	// Kept is how many outcomes the Recorder keeps at most.
	Kept   int
	Totals Totals
	Hops   map[string]HopState
	Store  StoreState
	// Reloads counts reloads; ReloadError is the last one's error ("" when
	// it took effect), ReloadAt when it happened.
	Reloads     int
	ReloadError string
	ReloadAt    time.Time
}

// Snapshot copies the Recorder's state.
func (r *Recorder) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.ring)
	}
	s := Snapshot{
		Messages: make([]Message, 0, n), Kept: len(r.ring), Totals: Totals{}, Hops: map[string]HopState{},
		Store: r.store, Reloads: r.reloads, ReloadError: r.reloadErr, ReloadAt: r.reloadAt,
	}
	for i := 1; i <= n; i++ {
		s.Messages = append(s.Messages, r.ring[(r.next-i+len(r.ring))%len(r.ring)])
	}
	for leg, byResult := range r.totals {
		c := map[string]int{}
		for k, v := range byResult {
			c[k] = v
		}
		s.Totals[leg] = c
	}
	for name, h := range r.hops {
		s.Hops[name] = *h
	}
	return s
}

// Search returns the messages of ms that q finds, in their order: q is a
// Message-ID (with or without its angle brackets; the original or the one
// a vendor sent), a reference, or an address or part of one (the sender's
// or a recipient's), compared without regard to case. An empty q finds
// every message.
func Search(ms []Message, q string) []Message {
	q = strings.ToLower(strings.TrimSpace(q))
	q = strings.TrimSuffix(strings.TrimPrefix(q, "<"), ">")
	if q == "" {
		return ms
	}
	var out []Message
	for _, m := range ms {
		if m.matches(q) {
			out = append(out, m)
		}
	}
	return out
}

func (m *Message) matches(q string) bool {
	if containsFold(m.MessageID, q) || containsFold(m.ClientMessageID, q) || containsFold(m.From, q) {
		return true
	}
	if m.Ref != "" && strings.EqualFold(m.Ref, q) {
		return true
	}
	for _, rc := range m.Recipients {
		if containsFold(rc, q) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case q, ignoring case.
func containsFold(s, q string) bool {
	return s != "" && strings.Contains(strings.ToLower(s), q)
}
