package relay

import (
	"errors"
	"io"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/headers"
)

// RouteAction is what the tenant leg does with a message.
type RouteAction int

const (
	// ToVendors sends the message along Route.Vendors, restoring it only
	// when it comes back from the last one.
	ToVendors RouteAction = iota
	// Bypass reinjects the message into the tenant without any vendor.
	Bypass
	// Refuse answers Route.Reply (a 4xx or 5xx).
	Refuse
)

// Route is a routing decision for one message on the tenant leg.
type Route struct {
	Action  RouteAction
	Vendors []string        // ToVendors: the chain, by vendor name
	Reply   *smtp.SMTPError // Refuse
	// SetHeaders are added (replacing fields of the same name) and
	// RemoveHeaders removed before the message leaves the tenant leg.
	SetHeaders    []headers.Field
	RemoveHeaders []string
	// Matched names the rules that decided, for the log line.
	Matched []string
	// Decision describes the decision for the log line ("route
	// signature → scanner; matched sign-external"), "" when the router
	// says nothing more than Action.
	Decision string
	// Notes are problems the router met while deciding (a body it could
	// not scan completely), for the log line.
	Notes []string
}

// Router decides where messages from the tenant go. It must be safe for
// concurrent use; the relay's router can be replaced while it runs
// (SetRouter).
type Router interface {
	// Envelope decides from the envelope alone. final is false when the
	// decision may change once the header block is known; the route is
	// then the best guess, used to open the next hop early.
	Envelope(from string, rcpts []string) (r Route, final bool)
	// NeedsBody reports whether Message needs the body of a message with
	// this header block; the relay then spools the body to disk first.
	NeedsBody(h *headers.Header) bool
	// Message decides once the header block (and, when NeedsBody said so,
	// the body) is known. body is nil when NeedsBody was false. size is the
	// message's exact size when the body was read, else the size the client
	// declared (SIZE), 0 when unknown.
	Message(from string, rcpts []string, size int64, h *headers.Header, body io.Reader) Route
}

// defaultRouter sends everything to the first vendor: a relay without rules.
type defaultRouter struct{ vendor string }

func (d defaultRouter) Envelope(string, []string) (Route, bool) {
	return Route{Action: ToVendors, Vendors: []string{d.vendor}}, true
}
func (d defaultRouter) NeedsBody(*headers.Header) bool { return false }
func (d defaultRouter) Message(string, []string, int64, *headers.Header, io.Reader) Route {
	return Route{Action: ToVendors, Vendors: []string{d.vendor}}
}

// switchHop moves the open transaction to another next hop: the relay
// decided the route only once the header block arrived. The new hop gets
// the same MAIL FROM and every recipient the client has been told is
// accepted; if it refuses any of them, the message fails with that reply,
// since the client can no longer be told per recipient.
func (s *session) switchHop(h NextHop) error {
	if s.hop != nil && !s.hop.broken && s.hop.hop.Name == h.Name && s.hop.hop.Address == h.Address {
		return nil
	}
	if s.deferred {
		// The client was told 250 to MAIL and RCPT without this hop's
		// verdicts: whatever it refuses now is a reason to try again
		// later, never to bounce.
		if connected, err := s.openHop(h); err != nil {
			switch {
			case !connected:
				s.hopFailed(h.Name, "connect", err)
			case !isVerdict(err):
				s.hopFailed(h.Name, "transaction replay", err)
			}
			msg := err.Error()
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				msg = se.Message
			}
			return Reply(451, smtp.EnhancedCode{4, 4, 1}, "%s", oneLine(msg))
		}
		s.deferred = false
		return nil
	}
	_, err := s.openHop(h)
	return err
}

// openHop connects to h and replays the transaction's MAIL and RCPT
// there; connected is false when no connection could be made.
func (s *session) openHop(h NextHop) (connected bool, err error) {
	s.closeHop()
	if connected, err := s.hopMail(h); err != nil {
		return connected, err
	}
	for _, rc := range s.rcpts {
		if err := s.hop.rcpt(rc); err != nil {
			return true, err
		}
	}
	return true, nil
}

// hopMail gives the transaction's MAIL FROM to h: on this session's own
// connection when it is still there and usable, else on one from the
// pool or a new one. A reused connection (this session's last one, or a
// pooled one) may have been closed by the next hop while idle: MAIL is
// then tried once more on a fresh one. connected is false when no
// connection could be made.
func (s *session) hopMail(h NextHop) (connected bool, err error) {
	for attempt := 0; ; attempt++ {
		reused := s.hop != nil && !s.hop.broken
		if !reused {
			s.closeHop()
			hc, err := s.r.hops.dial(h, attempt > 0)
			if err != nil {
				return false, err
			}
			s.hop = hc
			reused = hc.reused
		}
		err := s.hop.mail(s.from, &s.opts)
		if err != nil && reused && s.hop.broken && attempt == 0 {
			continue
		}
		return true, err
	}
}
