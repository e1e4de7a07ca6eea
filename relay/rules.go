package relay

import (
	"io"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/rules"
)

// RulesRouter routes messages by a rules.Engine: the relay's Router for
// mail-flow rules. The zero ScanLimits select rules' defaults.
type RulesRouter struct {
	Engine *rules.Engine
	Scan   rules.ScanLimits
}

// NewRulesRouter returns a Router that decides by e.
func NewRulesRouter(e *rules.Engine) *RulesRouter { return &RulesRouter{Engine: e} }

// Envelope decides at MAIL time when the rules allow it (the null-sender
// bypass, envelope-only rules), and otherwise guesses, so the relay opens
// the likely next hop early.
func (rr *RulesRouter) Envelope(from string, rcpts []string) (Route, bool) {
	d, final := rr.Engine.DecideEnvelope(from, rcpts)
	return routeOf(d), final
}

// NeedsBody is true when the decision may depend on the body: the TNEF
// message class of a winmail.dat part, attachments, signed or encrypted
// parts, or the size.
func (rr *RulesRouter) NeedsBody(h *headers.Header) bool { return rr.Engine.NeedsBodyFor(h) }

// Message decides on the whole message. A body that cannot be scanned
// completely (malformed MIME, a broken winmail.dat, a scan limit) might
// hide recall traffic: Decide then applies the scan-incomplete fail-safe
// (by default, the message bypasses the vendors), and the problem is noted
// in Route.Notes for the log.
func (rr *RulesRouter) Message(from string, rcpts []string, size int64, h *headers.Header, body io.Reader) Route {
	m := &rules.Message{From: from, Rcpts: rcpts, Size: size, Header: h}
	var notes []string
	if body != nil {
		info, err := rules.ScanBody(h, body, rr.Scan)
		m.Body = info
		if err != nil {
			notes = append(notes, err.Error())
		}
	}
	rt := routeOf(rr.Engine.Decide(m))
	rt.Notes = notes
	return rt
}

// routeOf maps a rules decision onto a Route.
func routeOf(d rules.Decision) Route {
	rt := Route{SetHeaders: d.SetHeaders, RemoveHeaders: d.RemoveHeaders, Matched: d.Matched, Decision: d.String()}
	switch d.Action {
	case rules.Route:
		rt.Action, rt.Vendors = ToVendors, d.Route
	case rules.Bypass:
		rt.Action = Bypass
	default: // Reject, Tempfail
		rt.Action = Refuse
		rt.Reply = &smtp.SMTPError{
			Code:         d.Code,
			EnhancedCode: smtp.EnhancedCode{d.Enhanced[0], d.Enhanced[1], d.Enhanced[2]},
			Message:      d.Text,
		}
	}
	return rt
}
