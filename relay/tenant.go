package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/rules"
)

// tenantPolicy is the tenant leg: mail from the tenant's outbound
// connector is routed (vendors, bypass or refusal), recorded and stamped.
type tenantPolicy struct{}

func (tenantPolicy) hopKind() string { return "vendor" }

// mayDefer: while the route is only a guess, mail the rules will keep off
// the vendors must not wait for an unreachable vendor.
func (tenantPolicy) mayDefer(s *session) bool { return !s.routeFinal }

// mailHop opens the hop the message most likely goes to, so the client
// hears that hop's verdict on each recipient; the route may change once
// the header block is known (switchHop).
func (tenantPolicy) mailHop(s *session, from string) (NextHop, error) {
	s.route, s.routeFinal = s.st.router.Envelope(from, nil)
	if s.routeFinal && s.route.Action == Refuse {
		return NextHop{}, s.route.Reply
	}
	return s.st.hopFor(s.route), nil
}

// prepare routes the message and applies the route. A message for
// vendors gets its origin recorded and the reference stamped; the record
// is written only after the whole message has been received and before the
// vendor is told the message is complete (prepared.commit), so the vendor
// can never send back a message the relay has no record of. A bypassed
// message goes straight to the tenant, marked so the tenant's transport
// rule does not send it out again.
func (tenantPolicy) prepare(s *session, h *headers.Header, body io.Reader, o *Outcome) (*prepared, error) {
	start := time.Now()
	rt, body, cleanup, err := s.decideRoute(h, body)
	o.Stages.Route = time.Since(start)
	if err != nil {
		return &prepared{cleanup: cleanup}, err
	}
	p, err := s.applyRoute(h, rt, o)
	if p == nil {
		p = &prepared{}
	}
	p.body, p.cleanup = body, cleanup
	return p, err
}

// decideRoute asks the router where the message goes. When the router
// needs the body (attachments, a winmail.dat's message class), the body is
// spooled to a temporary file first (spoolBody): bodies are never held in
// memory. The returned reader replaces body; cleanup removes the spool
// file.
func (s *session) decideRoute(h *headers.Header, body io.Reader) (Route, io.Reader, func(), error) {
	if s.routeFinal {
		return s.route, body, nil, nil
	}
	router := s.st.router
	if !router.NeedsBody(h) {
		return router.Message(s.from, s.rcpts, s.opts.Size, h, nil), body, nil, nil
	}
	sp, err := s.spoolBody(body)
	if err != nil {
		return Route{}, nil, sp.remove, err
	}
	r, err := sp.reader()
	if err != nil {
		return Route{}, nil, sp.remove, s.spoolError(err)
	}
	rt := router.Message(s.from, s.rcpts, int64(h.Size())+sp.size, h, r)
	r, err = sp.reader()
	if err != nil {
		return Route{}, nil, sp.remove, s.spoolError(err)
	}
	return rt, r, sp.remove, nil
}

// applyRoute carries the route out on the header block and the next hop.
func (s *session) applyRoute(h *headers.Header, rt Route, o *Outcome) (*prepared, error) {
	o.Rules, o.Decision, o.RouteNotes = rt.Matched, rt.Decision, rt.Notes
	switch rt.Action {
	case Refuse:
		o.Route = "refused"
		if rt.Reply == nil {
			return nil, Reply(550, smtp.EnhancedCode{5, 7, 1}, "Refused by rule")
		}
		return nil, rt.Reply
	case Bypass:
		o.Route = "bypass"
		if err := s.switchHop(s.st.cfg.Target); err != nil {
			return nil, err
		}
		s.applyHeaderActions(h, rt)
		h.Remove(s.st.refMatch)
		h.Remove(s.st.loopMatch)
		h.Prepend(*s.st.cfg.LoopMarker)
		s.addReceived(h, "", s.st.cfg.Now())
		return &prepared{}, nil
	}
	if len(rt.Vendors) == 0 || len(rt.Vendors) > headers.MaxHop+1 {
		return nil, Reply(451, smtp.EnhancedCode{4, 3, 5}, "Routing error: a vendor chain of %d vendors", len(rt.Vendors))
	}
	first, ok := s.st.vendors[rt.Vendors[0]]
	if !ok {
		s.log(zerolog.ErrorLevel).Strs("route", rt.Vendors).Msg("route names an unknown vendor")
		return nil, Reply(451, smtp.EnhancedCode{4, 3, 5}, "Routing error: unknown vendor %q", rt.Vendors[0])
	}
	o.Route = strings.Join(rt.Vendors, ">")
	if err := s.switchHop(first); err != nil {
		return nil, err
	}

	// The same message sent again (Exchange retrying after a 4xx or a lost
	// reply) gets the same reference and, from the time it was first
	// stamped, the same time stamps: it reaches the vendor byte-identical,
	// and both copies map to one record, so duplicate suppression works
	// across the retry. The time comes from the relay's memory of recent
	// references, not from a store read: one store round trip per message.
	ref := s.st.cfg.Signer.DeriveRef(messageMaterial(s.from, s.rcpts, h))
	now := s.r.stampTime(ref, s.st.cfg.Now())
	rec := &headers.Record{
		Ref:      ref,
		MailFrom: s.from,
		Params: headers.MailParams{
			Size:     s.opts.Size,
			Body:     string(s.opts.Body),
			SMTPUTF8: s.opts.UTF8,
		},
		Rcpts:       append([]string(nil), s.rcpts...),
		ReceivedAt:  now.UTC(),
		Listener:    s.leg.lc.Listen,
		ClientAddr:  s.remote,
		Helo:        s.helo,
		TLS:         s.tls,
		MessageID:   h.MessageID(),
		Fingerprint: h.Fingerprint(),
		Fields:      h.Capture(*s.st.cfg.Capture),
		Route:       append([]string(nil), rt.Vendors...),
	}
	o.Ref, o.KeyID = rec.Ref, s.st.cfg.Signer.SigningKeyID()
	s.applyHeaderActions(h, rt)

	// A reference the tenant's message already carries is stale (a message
	// that looped) or forged; only the one stamped now counts.
	h.Remove(s.st.refMatch)
	refField, err := headers.NewField(s.st.cfg.RefHeader, s.st.cfg.Signer.Stamp(rec.Ref, 0, now))
	if err != nil {
		return nil, fmt.Errorf("stamp %s: %w", rec.Ref, err)
	}
	h.Prepend(refField)
	s.addReceived(h, rec.Ref, now)

	return &prepared{commit: func(ctx context.Context) error {
		err := s.r.cfg.Store.Put(ctx, rec, s.st.cfg.RecordTTL)
		if err != nil && s.st.cfg.PassUnrecorded {
			s.storeFailed(&storeError{op: "put", ref: rec.Ref, err: err})
			s.log(zerolog.ErrorLevel).Str("ref", rec.Ref).Msg("passing the message on unrecorded (pass_unrecorded)")
			o.Unrecorded = true
			return nil
		}
		if err != nil {
			return &storeError{op: "put", ref: rec.Ref, err: err}
		}
		s.r.stamped.Add(rec.Ref, rec.ReceivedAt)
		return nil
	}}, nil
}

// messageMaterial identifies a message for DeriveRef: its envelope and its
// header block exactly as the tenant sent it.
func messageMaterial(from string, rcpts []string, h *headers.Header) []byte {
	var b bytes.Buffer
	b.WriteString(from + "\x00")
	for _, r := range rcpts {
		b.WriteString(r + "\x00")
	}
	for _, f := range h.Fields() {
		b.Write(f.Raw)
	}
	return b.Bytes()
}

// applyHeaderActions applies a route's set-header and remove-header
// actions. They name fields exactly; rules refuses patterns and protected
// names when it compiles, and, should a Router hand over one anyway, the
// relay skips it here too (rules.Protected): no routing decision removes or
// sets what recall and the round trip depend on.
func (s *session) applyHeaderActions(h *headers.Header, rt Route) {
	protected := func(name string) bool {
		if rules.Protected(name, s.st.cfg.LoopMarker.Name, s.st.cfg.RefHeader) {
			s.log(zerolog.ErrorLevel).Str("field", name).Msg("header action on a protected field skipped")
			return true
		}
		return false
	}
	for _, name := range rt.RemoveHeaders {
		if protected(name) {
			continue
		}
		h.Remove(headers.MustMatcher(name))
	}
	for i := len(rt.SetHeaders) - 1; i >= 0; i-- {
		f := rt.SetHeaders[i]
		if protected(f.Name) || !headers.ValidRawField(f.Raw) {
			continue
		}
		h.Remove(headers.MustMatcher(f.Name))
		h.Prepend(f)
	}
}

// stampedEntries bounds the relay's memory of recent references: about
// 100 bytes each, a few MiB at most. How far back it reaches depends on the
// traffic: about 18 minutes at 30 messages a second, 40 s at 840. Byte-
// identical retries are therefore best effort (see stampTime); the
// reference, and with it the record and duplicate suppression, does not
// depend on it.
const stampedEntries = 32768

// stampTime returns the time a message with reference ref is stamped
// with: the time its first attempt was recorded, when this relay recorded
// it recently, else now.
//
// A retry that reaches another instance, this one after a restart, or this
// one after stampedEntries other messages is stamped anew. That costs only
// byte-identity towards the vendor: the reference derives from the envelope and the header block, so both
// copies still map to one record and duplicates are still suppressed
// (TestRetryOtherInstance).
func (r *Relay) stampTime(ref string, now time.Time) time.Time {
	if t, ok := r.stamped.Get(ref); ok {
		return t
	}
	return now
}
