package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/rules"
	"github.com/recallrelay/recallrelay/store"
)

// decideRoute asks the router where the message goes. When the router
// needs the body (attachments, a winmail.dat's message class), the body is
// spooled to a temporary file first: bodies are never held in memory. The
// returned reader replaces body; cleanup removes the spool file.
func (s *session) decideRoute(h *headers.Header, body io.Reader) (Route, io.Reader, func(), error) {
	if s.routeFinal {
		return s.route, body, nil, nil
	}
	router := s.r.routerNow()
	if !router.NeedsBody(h) {
		return router.Message(s.from, s.rcpts, s.opts.Size, h, nil), body, nil, nil
	}
	spoolErr := func(err error) error {
		s.log(zerolog.ErrorLevel).Err(err).Msg("cannot spool message body")
		return Reply(451, smtp.EnhancedCode{4, 3, 1}, "Cannot spool the message for routing; try again later")
	}
	f, err := os.CreateTemp(s.st.cfg.SpoolDir, "recallrelay-spool-*")
	if err != nil {
		return Route{}, nil, nil, spoolErr(err)
	}
	cleanup := func() {
		f.Close()
		os.Remove(f.Name())
	}
	cw := &countWriter{w: f}
	if err := copyBody(cw, body); err != nil {
		var rerr readErr
		if errors.As(err, &rerr) {
			return Route{}, nil, cleanup, s.readError(rerr.error)
		}
		return Route{}, nil, cleanup, spoolErr(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Route{}, nil, cleanup, spoolErr(err)
	}
	size := int64(h.Size()) + cw.n
	rt := s.r.routerNow().Message(s.from, s.rcpts, size, h, bufio.NewReaderSize(f, 32<<10))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Route{}, nil, cleanup, spoolErr(err)
	}
	return rt, f, cleanup, nil
}

// prepareTenant applies the route. A message for vendors gets its origin
// recorded and the reference stamped; the record is written only after the
// whole message has been received and before the vendor is told the
// message is complete, so the vendor can never send back a message the
// relay has no record of. A bypassed message goes straight to the tenant,
// marked so the tenant's transport rule does not send it out again.
func (s *session) prepareTenant(h *headers.Header, rt Route, o *outcome) (*prepared, error) {
	o.rules, o.decision, o.notes = rt.Matched, rt.Decision, rt.Notes
	switch rt.Action {
	case Refuse:
		o.route = "refused"
		if rt.Reply == nil {
			return nil, Reply(550, smtp.EnhancedCode{5, 7, 1}, "Refused by rule")
		}
		return nil, rt.Reply
	case Bypass:
		o.route = "bypass"
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
	o.route = strings.Join(rt.Vendors, ">")
	if err := s.switchHop(first); err != nil {
		return nil, err
	}

	// The same message sent again (Exchange retrying after a 4xx or a lost
	// reply) gets the same reference and, from its record, the same time
	// stamps: it reaches the vendor byte-identical, and both copies map to
	// one record, so duplicate suppression works across the retry.
	ref := s.st.cfg.Signer.DeriveRef(messageMaterial(s.from, s.rcpts, h))
	now := s.st.cfg.Now()
	ctx, cancel := context.WithTimeout(context.Background(), s.st.cfg.StoreTimeout)
	prev, err := s.st.cfg.Store.Get(ctx, ref)
	cancel()
	switch {
	case err == nil && prev.MailFrom == s.from:
		now = prev.ReceivedAt
	case err != nil && !errors.Is(err, store.ErrNotFound) && !s.st.cfg.PassUnrecorded:
		return nil, fmt.Errorf("get %s: %w", ref, err)
	}
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
		Listener:    s.leg.lc.Addr,
		ClientAddr:  s.remote,
		Helo:        s.helo,
		TLS:         s.tls,
		MessageID:   h.MessageID(),
		Fingerprint: h.Fingerprint(),
		Fields:      h.Capture(*s.st.cfg.Capture),
		Route:       append([]string(nil), rt.Vendors...),
	}
	o.ref = rec.Ref
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
		if err := s.st.cfg.Store.Put(ctx, rec, s.st.cfg.RecordTTL); err != nil {
			return fmt.Errorf("record %s: %w", rec.Ref, err)
		}
		return nil
	}}, nil
}

// countWriter counts what passes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
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

// forward sends a message that came back from vendor hop-1 of its chain on
// to vendor hop, with a fresh reference for that hop. Nothing is restored
// yet: that happens when it returns from the last vendor.
func (s *session) forward(h *headers.Header, rec *headers.Record, hop int, o *outcome) (*prepared, error) {
	next, ok := s.st.vendors[rec.Route[hop]]
	if !ok {
		s.log(zerolog.ErrorLevel).Str("ref", rec.Ref).Str("vendor", rec.Route[hop]).Msg("chain names a vendor no longer configured")
		return nil, Reply(451, smtp.EnhancedCode{4, 3, 5}, "Routing error: vendor %q of this message's chain is not configured", rec.Route[hop])
	}
	if err := s.switchHop(next); err != nil {
		return nil, err
	}
	o.forwarded = true
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

// prepareReturn finds the origin record and repairs the header block.
func (s *session) prepareReturn(h *headers.Header, o *outcome) (*prepared, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.st.cfg.StoreTimeout)
	defer cancel()
	rec, hop, how, err := s.findRecord(ctx, h)
	o.matchedBy = how
	if err != nil {
		return nil, err // a store error becomes 451 4.3.0 in data
	}
	if rec == nil {
		if s.st.cfg.WithoutRecord == RejectUnrecorded {
			return nil, Reply(550, smtp.EnhancedCode{5, 7, 1},
				"No origin record for this message: it did not leave through this relay (or its record expired)")
		}
		o.matchedBy = "none-stripped"
	} else {
		o.ref = rec.Ref
		o.route = strings.Join(rec.Route, ">")
		if hop+1 < len(rec.Route) {
			return s.forward(h, rec, hop+1, o)
		}
	}
	p := &prepared{}
	if rec != nil && !s.st.cfg.KeepDuplicates {
		if err := s.claim(ctx, rec, p, o); err != nil {
			return nil, err
		}
		if p.skip {
			return p, nil
		}
	}
	rep := s.st.restorer.Restore(h, rec) // rec == nil: firewall only
	o.restored, o.removed = rep.Restored, rep.Removed

	h.Remove(s.st.refMatch)
	h.Remove(s.st.loopMatch)
	h.Prepend(*s.st.cfg.LoopMarker)
	s.addReceived(h, o.ref, s.st.cfg.Now())
	return p, nil
}

// claim takes the delivery of rec to each recipient of this transaction.
// Recipients the tenant already accepted the message for are suppressed
// (acknowledged, not delivered again); if another copy is being delivered
// right now, the vendor is told to try later. Claims are confirmed when the
// tenant answers 250 and released otherwise, so a failed delivery is never
// suppressed.
func (s *session) claim(ctx context.Context, rec *headers.Record, p *prepared, o *outcome) error {
	st := s.st.cfg.Store
	var claimed []string
	release := func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.st.cfg.StoreTimeout)
		defer cancel()
		for _, rc := range claimed {
			if err := st.Release(ctx, rec.Ref, rc); err != nil {
				s.log(zerolog.WarnLevel).Str("ref", rec.Ref).Err(err).Msg("release claim failed; it lapses with its lease")
			}
		}
	}
	for _, rc := range s.rcpts {
		res, err := st.Claim(ctx, rec.Ref, rc, s.st.cfg.ClaimLease)
		if err != nil {
			release()
			return fmt.Errorf("claim %s for %s: %w", rec.Ref, rc, err)
		}
		switch res {
		case store.Claimed:
			claimed = append(claimed, rc)
		case store.AlreadyDelivered:
			o.suppressed = append(o.suppressed, rc)
		default:
			release()
			return Reply(451, smtp.EnhancedCode{4, 3, 0}, "Another copy of this message is being delivered to %s right now; try again later", rc)
		}
	}
	if len(claimed) == 0 {
		n, err := st.CountReturn(ctx, rec.Ref)
		if err != nil {
			return fmt.Errorf("count returns of %s: %w", rec.Ref, err)
		}
		if n > int64(s.st.cfg.MaxDuplicateReturns) {
			s.log(zerolog.WarnLevel).Str("ref", rec.Ref).Int64("copies", n).Msg("duplicate returns over the limit; refused")
			return Reply(550, smtp.EnhancedCode{5, 7, 1}, "This message was already delivered and came back %d times; further copies refused", n)
		}
		p.skip = true
		return nil
	}
	if len(o.suppressed) > 0 {
		// The tenant transaction names recipients that already have the
		// message: open it again for the others only.
		s.hop.reset()
		err := s.hop.mail(s.from, &s.opts)
		for i := 0; err == nil && i < len(claimed); i++ {
			err = s.hop.rcpt(claimed[i])
		}
		if err != nil {
			release()
			return err
		}
	}
	p.settle = func(res hopResult) {
		switch res {
		case notDelivered:
			release()
			return
		case unknown:
			// The tenant may have the message: releasing would let a
			// later copy through as a second delivery. The claim lapses
			// with its lease instead, after which a copy is delivered.
			s.log(zerolog.WarnLevel).Str("ref", rec.Ref).Dur("lease", s.st.cfg.ClaimLease).
				Msg("tenant's verdict on end of data unknown; claims kept until their lease lapses")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.st.cfg.StoreTimeout)
		defer cancel()
		for _, rc := range claimed {
			if err := st.Confirm(ctx, rec.Ref, rc); err != nil {
				s.log(zerolog.WarnLevel).Str("ref", rec.Ref).Str("rcpt", rc).Err(err).Msg("confirm failed: a later duplicate may be delivered")
			}
		}
	}
	return nil
}

// addReceived prepends the relay's Received trace field.
func (s *session) addReceived(h *headers.Header, id string, now time.Time) {
	if s.st.cfg.NoReceived {
		return
	}
	with := "ESMTP"
	if s.tls != "" {
		with = "ESMTPS"
	}
	var rcpt string
	if len(s.rcpts) == 1 {
		rcpt = s.rcpts[0]
	}
	h.Prepend(headers.Trace{Helo: s.helo, ClientIP: s.remote, By: s.st.cfg.Hostname, With: with,
		TLS: s.tls, ID: id, For: rcpt, At: now}.Field())
}

// findRecord looks the message's origin record up: by the signed reference;
// when the vendor stripped it, by Message-ID; when the vendor also rewrote
// that, by fingerprint. A reference that is present must verify, and every
// match must agree with the envelope: the same MAIL FROM and recipients that
// are a subset of the recorded ones. It returns (nil, "none", nil) when no
// record qualifies, and an *smtp.SMTPError for a reference that must be
// refused. hop is the chain position the message was sent to.
func (s *session) findRecord(ctx context.Context, h *headers.Header) (rec *headers.Record, hop int, how string, err error) {
	rec, hop, how, err = s.lookup(ctx, h)
	if err == nil && rec != nil && how != "reference" && len(rec.Route) > 1 {
		// Without the reference, the relay cannot tell which vendor of the
		// chain this came back from; guessing could skip a scanner or loop.
		return nil, 0, how, Reply(550, smtp.EnhancedCode{5, 7, 1},
			"This message went through a chain of vendors and came back without its %s header; cannot tell where it is in the chain", s.st.cfg.RefHeader)
	}
	return rec, hop, how, err
}

func (s *session) lookup(ctx context.Context, h *headers.Header) (*headers.Record, int, string, error) {
	st := s.st.cfg.Store
	if values := h.Values(s.st.cfg.RefHeader); len(values) > 0 {
		var ref string
		var hop int
		for _, v := range values {
			ver, err := s.st.cfg.Signer.Verify(v)
			if err != nil {
				s.log(zerolog.WarnLevel).Str("reason", err.Error()).Msg("reference refused")
				return nil, 0, "reference", Reply(550, smtp.EnhancedCode{5, 7, 1}, "Reference refused: %s", refReason(err))
			}
			if ref != "" && ver.Ref != ref {
				return nil, 0, "reference", Reply(550, smtp.EnhancedCode{5, 7, 1}, "Reference refused: message carries references to different records")
			}
			if s.st.cfg.Now().Sub(ver.Issued) > s.st.cfg.RecordTTL {
				return nil, 0, "reference", Reply(550, smtp.EnhancedCode{5, 7, 1}, "Reference refused: expired (issued %s)", ver.Issued.UTC().Format("2006-01-02T15:04:05Z"))
			}
			ref, hop = ver.Ref, ver.Hop
		}
		rec, err := st.Get(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			return nil, 0, "none", nil
		}
		if err != nil {
			return nil, 0, "reference", fmt.Errorf("get %s: %w", ref, err)
		}
		if why := s.envelopeMismatch(rec); why != "" {
			s.log(zerolog.WarnLevel).Str("ref", ref).Str("reason", why).Msg("reference refused")
			return nil, 0, "reference", Reply(550, smtp.EnhancedCode{5, 7, 1}, "Reference refused: %s", why)
		}
		return rec, hop, "reference", nil
	}

	if !s.fallbackAllowed() {
		return nil, 0, "none", nil
	}
	if mid := h.MessageID(); mid != "" {
		recs, err := st.ByMessageID(ctx, mid)
		if err != nil {
			return nil, 0, "message-id", fmt.Errorf("lookup message-id %s: %w", mid, err)
		}
		if rec := s.unique(recs); rec != nil {
			return rec, 0, "message-id", nil
		}
	}
	if fp := h.Fingerprint(); fp != "" {
		recs, err := st.ByFingerprint(ctx, fp)
		if err != nil {
			return nil, 0, "fingerprint", fmt.Errorf("lookup fingerprint %s: %w", fp, err)
		}
		if rec := s.unique(recs); rec != nil {
			return rec, 0, "fingerprint", nil
		}
	}
	return nil, 0, "none", nil
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

// unique returns the one candidate consistent with the envelope. Records
// that differ only by when they were made (the tenant retried a message the
// vendor had in fact accepted) count as one: they restore the same fields.
func (s *session) unique(recs []*headers.Record) *headers.Record {
	var pick *headers.Record
	for _, rec := range recs {
		if s.envelopeMismatch(rec) != "" {
			continue
		}
		if pick != nil && !sameCapture(pick, rec) {
			s.log(zerolog.WarnLevel).Str("ref", pick.Ref).Str("other_ref", rec.Ref).Msg("fallback match ambiguous; not used")
			return nil
		}
		if pick == nil || rec.ReceivedAt.After(pick.ReceivedAt) {
			pick = rec
		}
	}
	return pick
}

func sameCapture(a, b *headers.Record) bool {
	if len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		if !bytes.Equal(a.Fields[i].Raw, b.Fields[i].Raw) {
			return false
		}
	}
	return true
}

// envelopeMismatch says why the current envelope cannot carry rec's fields,
// or "" when it can.
func (s *session) envelopeMismatch(rec *headers.Record) string {
	if !headers.SameAddress(rec.MailFrom, s.from) {
		return "MAIL FROM differs from the recorded sender"
	}
	for _, rc := range s.rcpts {
		if !rec.HasRecipient(rc) {
			return "recipient " + rc + " was not a recipient of the recorded message"
		}
	}
	return ""
}

// refReason is the client-facing part of a verification error.
func refReason(err error) string {
	switch {
	case errors.Is(err, headers.ErrRefUnknownKey):
		return "unknown key id"
	case errors.Is(err, headers.ErrRefBadSignature):
		return "signature invalid"
	default:
		return "malformed"
	}
}
