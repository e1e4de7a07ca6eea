package conformance

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ReportVersion is the version of the report's JSON layout; it changes only
// when a field is renamed, removed or changes meaning.
const ReportVersion = 1

// Report is the outcome of Run. Its JSON encoding is documented in the
// package documentation.
type Report struct {
	Version         int          `json:"version"`
	Started         time.Time    `json:"started"`
	DurationSeconds float64      `json:"duration_seconds"`
	Params          Params       `json:"params"`
	Cases           []CaseResult `json:"cases"`
}

// Params records how a run was made.
type Params struct {
	Messages      int    `json:"messages"`
	MessageSource string `json:"message_source"`
	// Vendor is "fake" or the external vendor's host:port.
	Vendor       string `json:"vendor"`
	ReturnListen string `json:"return_listen,omitempty"`
	// SenderDomain is the generated messages' domain when not the
	// default.
	SenderDomain string `json:"sender_domain,omitempty"`
	// EHLO is the name given to an external vendor when not the default.
	EHLO string `json:"ehlo,omitempty"`
	// VendorTLS reports that the vendor was spoken to with STARTTLS only,
	// ReturnTLS that ReturnListen offered STARTTLS.
	VendorTLS     bool   `json:"vendor_starttls,omitempty"`
	ReturnTLS     bool   `json:"return_starttls,omitempty"`
	Paths         []Path `json:"paths"`
	Senders       int    `json:"senders"`
	SettleMS      int64  `json:"settle_ms"`
	CellTimeoutMS int64  `json:"cell_timeout_ms"`
}

// CaseResult is one row of the matrix. A path that was not run is nil.
type CaseResult struct {
	Name      string      `json:"name"`
	Behaviors string      `json:"behaviors"`
	Direct    *CellResult `json:"direct,omitempty"`
	Relay     *CellResult `json:"relay,omitempty"`
}

// Cell returns the result of path p, nil if it was not run.
func (c CaseResult) Cell(p Path) *CellResult {
	switch p {
	case PathDirect:
		return c.Direct
	case PathRelay:
		return c.Relay
	}
	return nil
}

// CellResult is what arrived at the tenant in one cell. Recipient counts
// are over (message, recipient) pairs; message counts over sent messages.
type CellResult struct {
	// Sent is the number of messages sent; NotAccepted how many of them
	// the first hop never accepted.
	Sent        int `json:"sent"`
	NotAccepted int `json:"not_accepted"`
	// Recipients is the number of (message, recipient) pairs sent;
	// DeliveredOnce, Lost and Duplicated split them by how many
	// deliveries the tenant recorded for the pair: 1, 0 or more.
	Recipients    int `json:"recipients"`
	DeliveredOnce int `json:"delivered_once"`
	Lost          int `json:"lost"`
	Duplicated    int `json:"duplicated"`
	// Deliveries is the number of transactions the tenant recorded;
	// Unmatched those whose fingerprint matches no sent message;
	// ExtraRecipients the recipients of matched deliveries that the
	// message was not sent to.
	Deliveries      int `json:"deliveries"`
	Unmatched       int `json:"unmatched"`
	ExtraRecipients int `json:"extra_recipients"`
	// IdentityIntact counts the messages delivered at least once whose
	// every delivery kept the recall identity (relaytest.CompareIdentity).
	IdentityIntact int `json:"identity_intact"`
	// Survived counts the messages with their identity intact and
	// delivered exactly once to every recipient; SurvivalPercent is
	// 100 × Survived / Sent.
	Survived        int     `json:"survived"`
	SurvivalPercent float64 `json:"survival_percent"`
	// DKIMIntact counts the messages delivered at least once whose every
	// delivery still carries a valid DKIM signature of the tenant (the
	// report signs each message before sending it, over the fields
	// Exchange Online signs). It is not part of survival: what a vendor
	// does to the body, the relay does not undo.
	DKIMIntact int `json:"dkim_intact"`
	// RecallToVendor counts the recall traffic the vendor received; nil
	// when it cannot be observed (an external vendor behind the relay).
	RecallToVendor *RecallCount `json:"recall_to_vendor"`
	// Damage summarizes why messages did not survive.
	Damage Damage `json:"damage"`
	// Messages has one entry per sent message, in sending order.
	Messages []MessageResult `json:"messages"`
	// Incomplete, when not empty, says why the cell stopped waiting
	// before the vendor was idle and deliveries had settled.
	Incomplete      string  `json:"incomplete,omitempty"`
	DurationSeconds float64 `json:"duration_seconds"`
}

// Complete reports whether every message survived.
func (c *CellResult) Complete() bool { return c.Sent > 0 && c.Survived == c.Sent }

// RecallCount counts recall traffic.
type RecallCount struct {
	Requests int `json:"requests"`
	Reports  int `json:"reports"`
}

func (rc *RecallCount) add(k RecallKind) {
	switch k {
	case RecallRequest:
		rc.Requests++
	case RecallReport:
		rc.Reports++
	}
}

// MessageResult is the fate of one sent message in one cell.
type MessageResult struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Recall classifies the sent message (see ClassifyRecall).
	Recall RecallKind `json:"recall,omitempty"`
	// Accepted reports that the first hop accepted the message;
	// SendError is the sender's error when it did not.
	Accepted  bool   `json:"accepted"`
	SendError string `json:"send_error,omitempty"`
	// Recipients counts the deliveries per envelope recipient.
	Recipients []RecipientResult `json:"recipients"`
	// IdentityIntact reports that the message was delivered and every
	// delivery kept its recall identity. Identity is
	// relaytest.IdentityResult.String() of the union over all deliveries
	// ("intact", "not delivered", "missing [...]; changed [...]").
	IdentityIntact bool   `json:"identity_intact"`
	Identity       string `json:"identity"`
	// Missing, Changed and Added are the identity fields (lower case) some
	// delivery lacked, carried changed or carried in addition;
	// TNEFLost and TNEFChanged tell whether some delivery lost or changed
	// a winmail.dat part.
	Missing     []string `json:"missing,omitempty"`
	Changed     []string `json:"changed,omitempty"`
	Added       []string `json:"added,omitempty"`
	TNEFLost    bool     `json:"tnef_lost"`
	TNEFChanged bool     `json:"tnef_changed"`
	// Survived: identity intact and delivered exactly once to every
	// recipient.
	Survived bool `json:"survived"`
	// DKIMIntact: delivered, and every delivery's tenant DKIM signature
	// verifies.
	DKIMIntact bool `json:"dkim_intact"`
}

// RecipientResult is the number of deliveries to one recipient.
type RecipientResult struct {
	Address    string `json:"address"`
	Deliveries int    `json:"deliveries"`
}

// Damage aggregates a cell's identity damage over the delivered messages.
// The maps count messages by lower-case field name; TNEFLost and
// TNEFChanged count messages. Summary says in one line why the cell is
// below 100 %, or "none".
type Damage struct {
	Missing     map[string]int `json:"missing,omitempty"`
	Changed     map[string]int `json:"changed,omitempty"`
	Added       map[string]int `json:"added,omitempty"`
	TNEFLost    int            `json:"tnef_lost"`
	TNEFChanged int            `json:"tnef_changed"`
	Summary     string         `json:"summary"`
}

// damageCounter builds a Damage from MessageResults.
type damageCounter struct {
	d Damage
	// per family (CrossPremises fields folded into one), for the summary
	missing, changed, added map[string]int
	damaged, delivered      int
}

func newDamageCounter() *damageCounter {
	return &damageCounter{
		d:       Damage{Missing: map[string]int{}, Changed: map[string]int{}, Added: map[string]int{}},
		missing: map[string]int{}, changed: map[string]int{}, added: map[string]int{},
	}
}

// add counts a delivered message.
func (c *damageCounter) add(m *MessageResult) {
	c.delivered++
	if !m.IdentityIntact {
		c.damaged++
	}
	for _, x := range []struct {
		names       []string
		fields, fam map[string]int
	}{
		{m.Missing, c.d.Missing, c.missing},
		{m.Changed, c.d.Changed, c.changed},
		{m.Added, c.d.Added, c.added},
	} {
		fams := map[string]bool{}
		for _, n := range x.names {
			x.fields[n]++
			fams[fieldFamily(n)] = true
		}
		for f := range fams {
			x.fam[f]++
		}
	}
	if m.TNEFLost {
		c.d.TNEFLost++
	}
	if m.TNEFChanged {
		c.d.TNEFChanged++
	}
}

// damage returns the Damage with its Summary for the cell res.
func (c *damageCounter) damage(res *CellResult) Damage {
	d := c.d
	for _, m := range []*map[string]int{&d.Missing, &d.Changed, &d.Added} {
		if len(*m) == 0 {
			*m = nil
		}
	}
	var parts []string
	if res.NotAccepted > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d messages not accepted by the first hop", res.NotAccepted, res.Sent))
	}
	if res.Lost > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d recipients lost", res.Lost, res.Recipients))
	}
	if res.Duplicated > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d recipients duplicated", res.Duplicated, res.Recipients))
	}
	if c.damaged > 0 {
		var ids []string
		for _, x := range []struct {
			verb string
			fam  map[string]int
		}{{"missing", c.missing}, {"changed", c.changed}, {"added", c.added}} {
			if len(x.fam) > 0 {
				ids = append(ids, x.verb+" "+topFields(x.fam, 4))
			}
		}
		if d.TNEFLost > 0 {
			ids = append(ids, fmt.Sprintf("winmail.dat lost in %d", d.TNEFLost))
		}
		if d.TNEFChanged > 0 {
			ids = append(ids, fmt.Sprintf("winmail.dat changed in %d", d.TNEFChanged))
		}
		parts = append(parts, fmt.Sprintf("identity damaged in %d of %d delivered: %s", c.damaged, c.delivered, strings.Join(ids, "; ")))
	}
	if res.Unmatched > 0 {
		parts = append(parts, fmt.Sprintf("%d deliveries matched no sent message", res.Unmatched))
	}
	if len(parts) == 0 {
		d.Summary = "none"
	} else {
		d.Summary = strings.Join(parts, "; ")
	}
	return d
}

// topFields formats the n most frequent families as "Name (count), ...".
func topFields(fam map[string]int, n int) string {
	type kv struct {
		k string
		v int
	}
	var list []kv
	for k, v := range fam {
		list = append(list, kv{k, v})
	}
	slices.SortFunc(list, func(a, b kv) int {
		return cmp.Or(cmp.Compare(b.v, a.v), cmp.Compare(a.k, b.k))
	})
	var out []string
	for i, e := range list {
		if i == n {
			out = append(out, fmt.Sprintf("+%d more", len(list)-n))
			break
		}
		out = append(out, fmt.Sprintf("%s (%d)", e.k, e.v))
	}
	return strings.Join(out, ", ")
}

// fieldFamily names a lower-case identity field as a reader knows it,
// folding every CrossPremises field into one family.
func fieldFamily(name string) string {
	if strings.HasPrefix(name, "x-ms-exchange-crosspremises-") {
		return "X-MS-Exchange-CrossPremises-*"
	}
	switch name {
	case "message-id":
		return "Message-ID"
	case "x-organizationheaderspreserved":
		return "X-OrganizationHeadersPreserved"
	case "x-ms-tnef-correlator":
		return "X-MS-TNEF-Correlator"
	case "x-ms-has-attach":
		return "X-MS-Has-Attach"
	case "x-ms-exchange-recallreportgenerated":
		return "X-MS-Exchange-RecallReportGenerated"
	case "x-ms-exchange-recallreportcfmgenerated":
		return "X-MS-Exchange-RecallReportCfmGenerated"
	case "x-ms-exchange-generated-message-source":
		return "X-MS-Exchange-Generated-Message-Source"
	}
	return name
}
