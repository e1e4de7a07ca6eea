package metrics

import (
	"strings"

	"github.com/recallrelay/recallrelay/relay"
)

// Label values are bounded: every label but hop (a configured next hop's
// name) and file (a configured certificate's path) takes its value from a
// fixed set, and a value the relay reports outside that set is counted as
// "other". Addresses, message ids, references, client addresses and reply
// texts never become label values. A value from the relay is written in
// snake_case (lower case, runs of other characters as one "_"), so the log's
// "limit":"too many recipients" is limit="too_many_recipients" here.

// other is the label value of anything outside a label's known set.
const other = "other"

// Legs, as relay.Outcome.Leg and the events name them.
const (
	legTenant = iota
	legReturn
	legOther
	numLegs
)

var legNames = [numLegs]string{"tenant", "return", other}

// legIndex returns the index of a relay leg name; legOther for any other.
func legIndex(leg string) int {
	switch leg {
	case "tenant":
		return legTenant
	case "return":
		return legReturn
	}
	return legOther
}

// Stages of relay.Stages, in the order of stageNames.
const (
	stageHeader = iota
	stageRoute
	stageStore
	stageTransfer
	stageHopReply
	numStages
)

var stageNames = [numStages]string{"header", "route", "store", "transfer", "hop_reply"}

// results are relay.Outcome.Result's values.
var results = knownSet("delivered", "bypassed", "forwarded", "suppressed", "tempfail", "rejected")

// matchedBy are relay.Outcome.MatchedBy's values.
var matchedBy = knownSet("reference", "message-id", "fingerprint", "none", "none-stripped")

// notApplicable is matched_by on the tenant leg, and on the return leg for
// a message refused before it was matched.
const notApplicable = "n/a"

// limits are the relay.LimitHit.Limit values the relay reports (relay's
// session.limitHit and guardedConn.logLimit calls).
var limits = knownSet(
	"too many commands before MAIL",
	"idle timeout waiting for a command",
	"message data too slow",
	"idle timeout during message data",
	"command line too long",
	"too many errors",
	"too many recipients",
)

// storeOps are the relay.StoreFailed.Op values the relay reports, and
// those relay.StoreFailed documents.
var storeOps = knownSet(
	"get", "put", "claim", "count returns", "settle claim",
	"lookup message-id", "lookup fingerprint",
	"lookup", "confirm", "release",
)

// hopStages are the relay.NextHopFailed.Stage values the relay reports,
// and those relay.NextHopFailed documents.
var hopStages = knownSet("connect", "MAIL FROM", "RCPT TO", "DATA", "message transfer", "end of data")

// Reasons a connection is refused at connect time.
var refusedReasons = []string{"allow_nets", "per_client", "total", other}

// refusedReason derives a bounded reason from a refused connection's reply
// (relay's admission.admit).
func refusedReason(reply string) string {
	switch {
	case strings.Contains(reply, "not allowed"):
		return "allow_nets"
	case strings.Contains(reply, "Too many connections from"):
		return "per_client"
	case strings.Contains(reply, "Too many connections"):
		return "total"
	}
	return other
}

// codeClass returns "2xx", "4xx" or "5xx" for an SMTP reply code, "other"
// for anything else.
func codeClass(code int) string {
	switch code / 100 {
	case 2:
		return "2xx"
	case 4:
		return "4xx"
	case 5:
		return "5xx"
	}
	return other
}

// matchedByValue returns the matched_by label of an outcome.
func matchedByValue(o *relay.Outcome) string {
	if o.Leg != "return" || o.MatchedBy == "" {
		return notApplicable
	}
	return matchedBy.value(o.MatchedBy)
}

// hopName returns the hop label: the configured next hop's name, which the
// configuration bounds; "unknown" when the event has none.
func hopName(hop string) string {
	if hop == "" {
		return "unknown"
	}
	return hop
}

// set maps each known relay string to its label value.
type set map[string]string

func knownSet(values ...string) set {
	s := make(set, len(values))
	for _, v := range values {
		s[v] = snake(v)
	}
	return s
}

// value returns v's label value, or "other" when v is not in the set.
func (s set) value(v string) string {
	if l, ok := s[v]; ok {
		return l
	}
	return other
}

// labels returns every label value of the set, "other" included.
func (s set) labels() []string {
	l := make([]string, 0, len(s)+1)
	for _, v := range s {
		l = append(l, v)
	}
	return append(l, other)
}

// snake lower-cases s and turns each run of characters other than ASCII
// letters and digits into one "_".
func snake(s string) string {
	var b strings.Builder
	sep := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			sep = false
			b.WriteRune(r)
			continue
		}
		sep = true
	}
	return b.String()
}
