package relay

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
)

// returnPolicy is the return leg: mail coming back from a vendor is
// matched to its origin record, repaired and reinjected into the tenant,
// or sent on to the next vendor of its chain.
type returnPolicy struct{}

func (returnPolicy) hopKind() string { return "tenant" }

// mayDefer: the return leg's next hop is the tenant whatever the message,
// so there is nothing to wait for.
func (returnPolicy) mayDefer(*session) bool { return false }

// mailHop opens the tenant: where nearly all returning mail goes. A
// message that must go on to the next vendor of a chain moves there once
// its reference is read (switchHop).
func (returnPolicy) mailHop(s *session, _ string) (NextHop, error) {
	return s.st.cfg.Target, nil
}

// prepare finds the origin record and repairs the header block.
func (returnPolicy) prepare(s *session, h *headers.Header, body io.Reader, o *Outcome) (*prepared, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), s.st.cfg.StoreTimeout)
	defer cancel()
	defer func() { o.Stages.Store += time.Since(start) }()

	m := s.matcher()
	res, err := m.find(ctx, h, envelope{from: s.from, rcpts: s.rcpts})
	o.MatchedBy, o.KeyID = res.how, res.keyID
	if err != nil {
		return nil, err
	}
	rec := res.rec
	if rec != nil && rec.MessageID != "" && rec.MessageID != o.MessageID {
		// The log and observers follow the message by its original id.
		o.ClientMessageID, o.MessageID = o.MessageID, rec.MessageID
	}
	if rec == nil {
		if s.st.cfg.ReturnWithoutRecord == ReturnReject {
			return nil, Reply(550, smtp.EnhancedCode{5, 7, 1},
				"No origin record for this message: it did not leave through this relay (or its record expired)")
		}
		o.MatchedBy = "none-stripped"
	} else {
		o.Ref = rec.Ref
		o.Route = strings.Join(rec.Route, ">")
		if res.hop+1 < len(rec.Route) {
			p, err := s.forward(h, rec, res.hop+1, o)
			if p != nil {
				p.body = body
			}
			return p, err
		}
	}
	p := &prepared{body: body}
	if rec != nil && s.st.cfg.Duplicates != DuplicatesDeliver {
		c := s.claim(rec)
		skip, err := c.take(ctx, s.rcpts)
		o.Suppressed = c.suppressed
		if err != nil {
			return nil, err
		}
		if skip {
			p.skip = true
			return p, nil
		}
		if len(c.suppressed) > 0 {
			// The tenant transaction names recipients that already have
			// the message: open it again for the others only.
			if err := s.reopenHop(c.claimed); err != nil {
				c.release()
				return nil, err
			}
		}
		p.settle = c.settle
	}
	rep := s.st.restorer.Restore(h, rec) // rec == nil: firewall only
	o.Restored, o.Removed = rep.Restored, rep.Removed

	h.Remove(s.st.refMatch)
	h.Remove(s.st.loopMatch)
	h.Prepend(*s.st.cfg.LoopMarker)
	s.addReceived(h, o.Ref, s.st.cfg.Now())
	return p, nil
}

// matcher is this transaction's record matcher.
func (s *session) matcher() *recordMatcher {
	return &recordMatcher{
		store:     s.r.cfg.Store,
		signer:    s.st.cfg.Signer,
		refHeader: s.st.cfg.RefHeader,
		ttl:       s.st.cfg.RecordTTL,
		now:       s.st.cfg.Now,
		fallback:  s.fallbackAllowed(),
		warn: func(msg, ref, reason string) {
			e := s.log(zerolog.WarnLevel).Str("reason", reason)
			if ref != "" {
				e = e.Str("ref", ref)
			}
			e.Msg(msg)
		},
	}
}

// claim is this transaction's delivery claim on rec.
func (s *session) claim(rec *headers.Record) *deliveryClaim {
	return &deliveryClaim{
		store:      s.r.cfg.Store,
		rec:        rec,
		lease:      s.st.cfg.ClaimLease,
		timeout:    s.st.cfg.StoreTimeout,
		maxReturns: s.st.cfg.MaxDuplicateReturns,
		warn: func(msg string, err error) {
			if err != nil {
				s.storeFailed(&storeError{op: "settle claim", ref: rec.Ref, err: err})
			}
			s.log(zerolog.WarnLevel).Str("ref", rec.Ref).Int64("lease_ms", s.st.cfg.ClaimLease.Milliseconds()).Msg(msg)
		},
	}
}

// fallbackAllowed says whether this client's mail may be matched without
// the reference (FallbackMatching): anyone who knows a recorded message's
// Message-ID and sender could otherwise deliver other content under its
// restored headers.
func (s *session) fallbackAllowed() bool {
	switch s.st.cfg.FallbackMatching {
	case FallbackAny:
		return true
	case FallbackTrusted:
		return s.auth() != "" || len(s.leg.lc.AllowNets) > 0 || s.leg.loopbackOnly()
	}
	return false
}

// reopenHop starts the next-hop transaction again for rcpts only.
func (s *session) reopenHop(rcpts []string) error {
	s.hop.reset()
	err := s.hop.mail(s.from, &s.opts)
	for i := 0; err == nil && i < len(rcpts); i++ {
		err = s.hop.rcpt(rcpts[i])
	}
	return err
}

// forward sends a message that came back from vendor hop-1 of its chain on
// to vendor hop, with a fresh reference for that hop. Nothing is restored
// yet: that happens when it returns from the last vendor.
func (s *session) forward(h *headers.Header, rec *headers.Record, hop int, o *Outcome) (*prepared, error) {
	next, ok := s.st.vendors[rec.Route[hop]]
	if !ok {
		s.log(zerolog.ErrorLevel).Str("ref", rec.Ref).Str("vendor", rec.Route[hop]).Msg("chain names a vendor no longer configured")
		return nil, Reply(451, smtp.EnhancedCode{4, 3, 5}, "Routing error: vendor %q of this message's chain is not configured", rec.Route[hop])
	}
	if err := s.switchHop(next); err != nil {
		return nil, err
	}
	o.Forwarded = true
	now := s.st.cfg.Now()
	h.Remove(s.st.refMatch)
	ref, err := headers.NewField(s.st.cfg.RefHeader, s.st.cfg.Signer.Stamp(rec.Ref, hop, now))
	if err != nil {
		return nil, fmt.Errorf("stamp %s: %w", rec.Ref, err)
	}
	h.Prepend(ref)
	s.addReceived(h, rec.Ref, now)
	return &prepared{}, nil
}
