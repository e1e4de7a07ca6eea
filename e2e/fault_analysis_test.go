package e2e

// The fault suite's report: every delivery matched to the message it came
// from, every message checked against what was delivered, a summary table,
// and the checks that fail the test.

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/recallrelay/recallrelay/relaytest"
)

// faultReport is the outcome of a run.
type faultReport struct {
	messages, recipients int
	attempts             int
	vendorCopies         int // messages the vendor accepted (all copies)
	returnAttempts       int
	returnDrops          int // send-back attempts the vendor cut off mid-DATA
	deliveries           int

	lost       []string // "message → rcpt"
	laundered  []string // deliveries that carry what the tenant did not send
	damaged    []string // deliveries whose recall identity (other than CrossPremises) changed
	gaveUp     []string // messages the sender gave up on, with their replies
	duplicates int
	dupDetail  []string // one line per duplicated (message, rcpt)
	unexplain  []string // duplicates not accounted for by an ambiguous attempt
	vendorLost []string // send-backs the vendor gave up on

	rogues         []rogueResult
	rogueAccepted  []string
	rogueNot5xx    []string
	rogueDelivered []string // forged messages that reached the tenant without organization fields

	seed           uint64
	wall, sendTime time.Duration
	slowest        int    // index of the message that took the sender longest
	slowestText    string // its name, time, attempts and replies
}

// analyze matches every tenant delivery to the message it came from and
// checks every message against what was delivered. results and took are
// what sending each message came to and how long it took.
func analyze(msgs []faultMessage, results []relaytest.Result, took []time.Duration, h *faultHarness, rogues []rogueResult) *faultReport {
	r := &faultReport{messages: len(msgs), rogues: rogues}
	byID := make(map[string]int, len(msgs))
	for i, m := range msgs {
		byID[m.id] = i
		r.recipients += len(m.To)
		r.attempts += results[i].Attempts
		if took[i] > took[r.slowest] {
			r.slowest = i
		}
	}
	r.slowestText = fmt.Sprintf("%s, %v over %d attempts: %q", msgs[r.slowest].Name,
		took[r.slowest].Round(time.Millisecond), results[r.slowest].Attempts, results[r.slowest].Replies)

	// The vendor's copies and send-backs, tied to messages by the reference
	// the relay stamped (the vendor rewrites Message-ID on the way back).
	copies := make([]int, len(msgs))
	ambReturn := make([]int, len(msgs))
	byRef := map[string]int{}
	for _, d := range h.vendor.Received() {
		r.vendorCopies++
		id, _ := readMessageID(d.Data)
		i, ok := byID[id]
		if !ok {
			continue
		}
		copies[i]++
		if ref := headerValue(d.Data, refHeader); ref != "" {
			byRef[ref] = i
		}
	}
	for _, o := range h.vendor.Returned() {
		r.returnAttempts += o.Result.Attempts
		for _, rep := range o.Result.Replies {
			if strings.Contains(rep, "fault injection") {
				r.returnDrops++
			}
		}
		i, ok := byRef[headerValue(o.Delivery.Data, refHeader)]
		if !ok {
			continue
		}
		ambReturn[i] += countAmbiguous(o.Result.Replies)
		if !o.Result.Accepted {
			r.vendorLost = append(r.vendorLost, fmt.Sprintf("%s → %v after %d attempts: %q", msgs[i].Name, o.Delivery.Rcpts, o.Result.Attempts, o.Result.Replies))
		}
	}

	// Every delivery: whose is it, and is it what the tenant sent?
	type key struct {
		msg  int
		rcpt string
	}
	delivered := map[key]int{}
	for _, d := range h.tenant.Deliveries() {
		r.deliveries++
		desc := fmt.Sprintf("delivery from %s to %v at %s", d.MailFrom, d.Rcpts, d.At.Format("15:04:05.000"))
		if v := headerValue(d.Data, rogueHeader); v != "" {
			if org := orgFields(d.Data); len(org) > 0 {
				r.laundered = append(r.laundered, fmt.Sprintf("%s: forged message %s reached the tenant carrying %q", desc, v, org))
			} else {
				r.rogueDelivered = append(r.rogueDelivered, fmt.Sprintf("%s: forged message %s reached the tenant (without organization fields)", desc, v))
			}
			continue
		}
		id, err := readMessageID(d.Data)
		i, ok := byID[id]
		if err != nil || !ok {
			r.laundered = append(r.laundered, fmt.Sprintf("%s: Message-ID %q matches no message sent (%v)", desc, id, err))
			continue
		}
		m := msgs[i]
		desc = m.Name + ": " + desc
		if !strings.EqualFold(d.MailFrom, m.From) {
			r.laundered = append(r.laundered, fmt.Sprintf("%s: MAIL FROM %s, sent as %s", desc, d.MailFrom, m.From))
		}
		for _, rc := range d.Rcpts {
			if !slices.ContainsFunc(m.To, func(s string) bool { return strings.EqualFold(s, rc) }) {
				r.laundered = append(r.laundered, fmt.Sprintf("%s: recipient %s was not a recipient of the message", desc, rc))
			}
			delivered[key{i, strings.ToLower(rc)}]++
		}
		if bad := organizationFieldsAdded(m.Data, d.Data); len(bad) > 0 {
			r.laundered = append(r.laundered, fmt.Sprintf("%s: carries organization fields the tenant did not send: %q", desc, bad))
		}
		if id := relaytest.CompareIdentity(m.Data, d.Data); !id.Intact {
			if touchesOrgHeaders(id) {
				r.laundered = append(r.laundered, fmt.Sprintf("%s: CrossPremises/organization fields differ from what the tenant sent: %s", desc, id))
			} else {
				r.damaged = append(r.damaged, fmt.Sprintf("%s: recall identity %s", desc, id))
			}
		}
	}

	// Every message: accepted ⇒ delivered to every recipient not refused.
	for i, m := range msgs {
		res := results[i]
		switch {
		case res.Attempts == 0:
			r.gaveUp = append(r.gaveUp, m.Name+": never sent (out of time)")
		case !res.Accepted:
			r.gaveUp = append(r.gaveUp, fmt.Sprintf("%s after %d attempts: %v; replies %q", m.Name, res.Attempts, res.Err, res.Replies))
		}
		ambTenant := countAmbiguous(res.Replies)
		for _, rc := range m.To {
			if _, refused := res.RejectedRcpts[rc]; refused {
				continue
			}
			n := delivered[key{i, strings.ToLower(rc)}]
			if res.Accepted && n == 0 {
				r.lost = append(r.lost, fmt.Sprintf("%s → %s (sender: %d attempts, %q; vendor copies %d)", m.Name, rc, res.Attempts, res.Replies, copies[i]))
			}
			if n <= 1 {
				continue
			}
			r.duplicates += n - 1
			line := fmt.Sprintf("%s → %s: %d deliveries; sender attempts %d (%d ambiguous), vendor copies %d, ambiguous send-backs %d",
				m.Name, rc, n, res.Attempts, ambTenant, copies[i], ambReturn[i])
			r.dupDetail = append(r.dupDetail, line)
			if res.Attempts < 2 || n-1 > ambTenant+ambReturn[i] {
				r.unexplain = append(r.unexplain, line+fmt.Sprintf("; sender replies %q", res.Replies))
			}
		}
	}

	for _, rg := range rogues {
		last := ""
		if len(rg.res.Replies) > 0 {
			last = rg.res.Replies[len(rg.res.Replies)-1]
		}
		switch {
		case rg.res.Accepted:
			r.rogueAccepted = append(r.rogueAccepted, fmt.Sprintf("%s: accepted: %q", rg.name, rg.res.Replies))
		case !strings.HasPrefix(last, "550 5.7.1"):
			r.rogueNot5xx = append(r.rogueNot5xx, fmt.Sprintf("%s: %q", rg.name, rg.res.Replies))
		}
	}
	return r
}

// countAmbiguous counts the attempts whose outcome the client could not
// know: the connection broke after the message data was sent (a client-side
// error at the DATA stage other than the test's own mid-DATA cut), or the
// relay reported that its next hop's connection failed or timed out at end
// of data. Only such an attempt can have been committed downstream although
// the client did not see a 250; a refusal the next hop spoke ("answered end
// of data: 451"), a failure before the final dot or a cut inside DATA
// cannot.
func countAmbiguous(replies []string) int {
	n := 0
	for _, rep := range replies {
		switch {
		case strings.HasPrefix(rep, "250"):
		case len(rep) >= 3 && rep[0] >= '2' && rep[0] <= '5' && rep[1] >= '0' && rep[1] <= '9':
			if strings.Contains(rep, " at end of data") && !strings.Contains(rep, "answered end of data") {
				n++
			}
		case strings.Contains(rep, "fault injection"):
		case strings.HasPrefix(rep, "data:"):
			n++
		}
	}
	return n
}

// orgFields returns the raw fields of the message's header that make
// Exchange treat mail as internal: X-MS-Exchange-CrossPremises-*,
// X-MS-Exchange-Organization-* and X-OrganizationHeadersPreserved. A header
// that cannot be read yields a marker entry, so that it is never taken for
// a clean one.
func orgFields(data []byte) []string {
	h, err := readHeader(data)
	if err != nil {
		return []string{"(unreadable header: " + err.Error() + ")"}
	}
	var out []string
	for _, f := range h.Fields() {
		if hasPrefixFold(f.Name, "X-MS-Exchange-CrossPremises-") || hasPrefixFold(f.Name, "X-MS-Exchange-Organization-") ||
			strings.EqualFold(f.Name, "X-OrganizationHeadersPreserved") {
			out = append(out, string(f.Raw))
		}
	}
	return out
}

// organizationFieldsAdded returns the X-MS-Exchange-Organization-* fields of
// delivered that sent does not carry byte for byte. (CompareIdentity covers
// CrossPremises and X-OrganizationHeadersPreserved.)
func organizationFieldsAdded(sent, delivered []byte) []string {
	have := orgFields(sent)
	var bad []string
	for _, f := range orgFields(delivered) {
		if hasPrefixFold(f, "X-MS-Exchange-Organization-") && !slices.Contains(have, f) {
			bad = append(bad, strings.TrimSpace(f))
		}
	}
	return bad
}

// touchesOrgHeaders reports whether an identity difference concerns the
// fields that make Exchange treat mail as internal.
func touchesOrgHeaders(r relaytest.IdentityResult) bool {
	for _, list := range [][]string{r.Missing, r.Changed, r.Added} {
		for _, name := range list {
			if strings.HasPrefix(name, "x-ms-exchange-crosspremises-") || name == "x-organizationheaderspreserved" {
				return true
			}
		}
	}
	return false
}

// table renders the summary.
func (r *faultReport) table(h *faultHarness) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	row("seed", r.seed)
	row("messages", r.messages)
	row("recipients (message × rcpt)", r.recipients)
	row("sender attempts total", r.attempts)
	row("vendor copies accepted", r.vendorCopies)
	row("vendor send-back attempts", r.returnAttempts)
	row("tenant deliveries", r.deliveries)
	row("faults: redis restarts (SIGTERM / SIGKILL)", fmt.Sprintf("%d (%d / %d)", h.redisStops.Load()+h.redisKills.Load(), h.redisStops.Load(), h.redisKills.Load()))
	row("faults: relay SIGKILLs", h.relayKills.Load())
	row("faults: proxy resets (→vendor / →return / →tenant)", fmt.Sprintf("%d (%d / %d / %d) of %d connections",
		h.toVendor.Resets()+h.toReturn.Resets()+h.toTenant.Resets(), h.toVendor.Resets(), h.toReturn.Resets(), h.toTenant.Resets(),
		h.toVendor.Connections()+h.toReturn.Connections()+h.toTenant.Connections()))
	row("faults: tenant 451s", h.tenant451s.Load())
	row("faults: vendor tempfails", h.vendorTempfails.Count())
	row("faults: vendor send-backs cut mid-DATA", r.returnDrops)
	row("rogue messages sent / refused 550 5.7.1", fmt.Sprintf("%d / %d", len(r.rogues), len(r.rogues)-len(r.rogueAccepted)-len(r.rogueNot5xx)))
	row("LOST (accepted, never delivered)", len(r.lost))
	row("LAUNDERED", len(r.laundered))
	row("forged messages delivered", len(r.rogueDelivered))
	row("recall identity damaged", len(r.damaged))
	row("duplicates (unexplained)", fmt.Sprintf("%d (%d)", r.duplicates, len(r.unexplain)))
	row("gave up", len(r.gaveUp))
	row("vendor send-backs given up", len(r.vendorLost))
	row("sending time", r.sendTime.Round(100*time.Millisecond))
	row("wall time", r.wall.Round(100*time.Millisecond))
	w.Flush()
	return b.String()
}

// check asserts the outcome, listing every offending message.
func (r *faultReport) check(t *testing.T, h *faultHarness) {
	t.Helper()
	// What must not have happened, each listed message by message.
	for _, f := range []struct {
		what  string
		items []string
	}{
		{"LOST: accepted by the relay, never delivered to the tenant", r.lost},
		{"LAUNDERED: delivered carrying what the tenant did not send", r.laundered},
		{"recall identity damaged", r.damaged},
		{"the sender gave up (every reply shown)", r.gaveUp},
		{"duplicates not accounted for by an ambiguous attempt", r.unexplain},
		{"forged messages delivered to the tenant (return_without_record is reject)", r.rogueDelivered},
		{"forged messages accepted by the return leg", r.rogueAccepted},
		{"forged messages not refused with 550 5.7.1", r.rogueNot5xx},
	} {
		if len(f.items) == 0 {
			continue
		}
		items := slices.Sorted(slices.Values(f.items))
		const show = 40
		total, more := len(items), ""
		if total > show {
			items, more = items[:show], fmt.Sprintf("\n  … and %d more", len(items)-show)
		}
		t.Errorf("%s: %d\n  %s%s", f.what, total, strings.Join(items, "\n  "), more)
	}
	if len(r.dupDetail) > 0 {
		sort.Strings(r.dupDetail)
		t.Logf("duplicates and the attempts that account for them:\n  %s", strings.Join(r.dupDetail, "\n  "))
	}
	if len(r.vendorLost) > 0 {
		sort.Strings(r.vendorLost)
		t.Logf("send-backs the vendor gave up on (the message was delivered by another copy, or is counted as lost above):\n  %s", strings.Join(r.vendorLost, "\n  "))
	}
	byKind := map[string]string{}
	for _, rg := range r.rogues {
		if k := rogueKindNames[rg.kind]; byKind[k] == "" && len(rg.res.Replies) > 0 {
			byKind[k] = rg.res.Replies[len(rg.res.Replies)-1]
		}
	}
	var kinds []string
	for k, reply := range byKind {
		kinds = append(kinds, fmt.Sprintf("%-27s %s", k, reply))
	}
	sort.Strings(kinds)
	t.Logf("what the return leg answered forged messages, one per kind:\n  %s", strings.Join(kinds, "\n  "))
	if len(r.rogues) != faultRogueMessages {
		t.Errorf("only %d of %d forged messages were sent", len(r.rogues), faultRogueMessages)
	}

	// A run in which a fault never happened proves nothing about it.
	for _, f := range []struct {
		name string
		n    int64
	}{
		{"relay SIGKILLs", h.relayKills.Load()},
		{"redis restarts", h.redisStops.Load() + h.redisKills.Load()},
		{"resets relay→vendor", h.toVendor.Resets()},
		{"resets vendor→relay", h.toReturn.Resets()},
		{"resets relay→tenant", h.toTenant.Resets()},
		{"tenant 451s", h.tenant451s.Load()},
		{"vendor tempfails", int64(h.vendorTempfails.Count())},
		{"vendor mid-DATA cuts", int64(r.returnDrops)},
	} {
		if f.n == 0 {
			t.Errorf("no %s were injected: the run proves nothing about them", f.name)
		}
	}
}
