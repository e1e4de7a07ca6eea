package relay

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// envelope is a return transaction's envelope, which a record must agree
// with before its fields may be restored onto the message.
type envelope struct {
	from  string
	rcpts []string
}

// mismatch says why env cannot carry rec's fields, or "" when it can: the
// same MAIL FROM, and recipients that are a subset of the recorded ones.
func (env envelope) mismatch(rec *headers.Record) string {
	if !headers.SameAddress(rec.MailFrom, env.from) {
		return "MAIL FROM differs from the recorded sender"
	}
	for _, rc := range env.rcpts {
		if !rec.HasRecipient(rc) {
			return "recipient " + rc + " was not a recipient of the recorded message"
		}
	}
	return ""
}

// recordMatcher finds the origin record of a message coming back from a
// vendor: the security-critical core of the return leg, with no SMTP in
// it. It is built per transaction from the pinned configuration.
type recordMatcher struct {
	store     Store
	signer    *headers.Signer
	refHeader string
	ttl       time.Duration
	now       func() time.Time
	// fallback allows matching without the reference (FallbackMatching
	// applied to this client).
	fallback bool
	// warn reports a refused reference or an ambiguous fallback match.
	warn func(msg, ref, reason string)
}

// match is a record found for a message.
type match struct {
	rec   *headers.Record // nil: no record qualifies
	keyID string          // the key that verified the reference
	hop   int             // the chain position the message was sent to
	how   string          // "reference", "message-id", "fingerprint", "none"
}

// find looks the message's origin record up: by the signed reference;
// when the vendor stripped it (and fallback matching is allowed), by
// Message-ID; when the vendor also rewrote that, by fingerprint. A
// reference that is present must verify, and every match must agree with
// env. A refusal is an *smtp.SMTPError (550 5.7.1); a store failure a
// *storeError. A message that went through a chain of vendors can only be
// matched by its reference: without it the relay cannot tell where in the
// chain it is.
func (m *recordMatcher) find(ctx context.Context, h *headers.Header, env envelope) (match, error) {
	res, err := m.lookup(ctx, h, env)
	if err == nil && res.rec != nil && res.how != "reference" && len(res.rec.Route) > 1 {
		return match{how: res.how}, Reply(550, smtp.EnhancedCode{5, 7, 1},
			"This message went through a chain of vendors and came back without its %s header; cannot tell where it is in the chain", m.refHeader)
	}
	return res, err
}

func (m *recordMatcher) lookup(ctx context.Context, h *headers.Header, env envelope) (match, error) {
	if values := h.Values(m.refHeader); len(values) > 0 {
		return m.byReference(ctx, values, env)
	}
	if !m.fallback {
		return match{how: "none"}, nil
	}
	if mid := h.MessageID(); mid != "" {
		recs, err := m.store.ByMessageID(ctx, mid)
		if err != nil {
			return match{how: "message-id"}, &storeError{op: "lookup message-id", ref: mid, err: err}
		}
		if rec := m.unique(recs, env); rec != nil {
			return match{rec: rec, how: "message-id"}, nil
		}
	}
	if fp := h.Fingerprint(); fp != "" {
		recs, err := m.store.ByFingerprint(ctx, fp)
		if err != nil {
			return match{how: "fingerprint"}, &storeError{op: "lookup fingerprint", ref: fp, err: err}
		}
		if rec := m.unique(recs, env); rec != nil {
			return match{rec: rec, how: "fingerprint"}, nil
		}
	}
	return match{how: "none"}, nil
}

// byReference verifies every reference field the message carries (they
// must all name the same record), then fetches the record.
func (m *recordMatcher) byReference(ctx context.Context, values []string, env envelope) (match, error) {
	refuse := func(format string, args ...any) (match, error) {
		return match{how: "reference"}, Reply(550, smtp.EnhancedCode{5, 7, 1}, "Reference refused: "+format, args...)
	}
	var ref, keyID string
	var hop int
	for _, v := range values {
		ver, err := m.signer.Verify(v)
		if err != nil {
			m.warn("reference refused", "", err.Error())
			return refuse("%s", refReason(err))
		}
		if ref != "" && ver.Ref != ref {
			return refuse("message carries references to different records")
		}
		if m.now().Sub(ver.Issued) > m.ttl {
			return refuse("expired (issued %s)", ver.Issued.UTC().Format("2006-01-02T15:04:05Z"))
		}
		ref, hop, keyID = ver.Ref, ver.Hop, ver.KeyID
	}
	rec, err := m.store.Get(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return match{how: "none"}, nil
	}
	if err != nil {
		return match{how: "reference"}, &storeError{op: "get", ref: ref, err: err}
	}
	if why := env.mismatch(rec); why != "" {
		m.warn("reference refused", ref, why)
		return refuse("%s", why)
	}
	return match{rec: rec, hop: hop, how: "reference", keyID: keyID}, nil
}

// unique returns the one candidate consistent with env. Records that
// differ only by when they were made (the tenant retried a message the
// vendor had in fact accepted) count as one: they restore the same fields.
func (m *recordMatcher) unique(recs []*headers.Record, env envelope) *headers.Record {
	var pick *headers.Record
	for _, rec := range recs {
		if env.mismatch(rec) != "" {
			continue
		}
		if pick != nil && !sameCapture(pick, rec) {
			m.warn("fallback match ambiguous; not used", pick.Ref, "other record "+rec.Ref)
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

// storeError is a failed store operation: the client gets errStore
// (451 4.3.0), and observers StoreFailed.
type storeError struct {
	op, ref string
	err     error
}

func (e *storeError) Error() string {
	if e.ref == "" {
		return "store " + e.op + ": " + e.err.Error()
	}
	return "store " + e.op + " " + e.ref + ": " + e.err.Error()
}

func (e *storeError) Unwrap() error { return e.err }
