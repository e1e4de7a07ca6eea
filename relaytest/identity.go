package relaytest

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/emersion/go-message"
)

// identityField reports whether a header field is part of a message's recall
// identity.
func identityField(name string) bool {
	switch strings.ToLower(name) {
	case "message-id", "x-organizationheaderspreserved", "x-ms-tnef-correlator",
		"x-ms-has-attach", "x-ms-exchange-recallreportgenerated",
		"x-ms-exchange-recallreportcfmgenerated", "x-ms-exchange-generated-message-source":
		return true
	}
	return hasPrefixFold(name, "X-MS-Exchange-CrossPremises-")
}

// IdentityResult is the outcome of CompareIdentity.
type IdentityResult struct {
	// Intact reports that nothing below went wrong. It is also true when
	// there was nothing to compare (see NoIdentity).
	Intact bool
	// NoIdentity reports that the sent message carries no identity field
	// and no TNEF part: recall could not have found it in the first place,
	// so Intact says nothing about the path it took. Plain fixtures without
	// a Message-ID and data that is not a message end up here.
	NoIdentity bool
	// Missing, Changed and Added name the identity fields (lower case,
	// sorted) that the delivered message lacks entirely, carries with
	// different bytes or a different count, or carries although the sent
	// message did not.
	Missing, Changed, Added []string
	// Changes holds the sent and delivered bytes of every field named in
	// Missing, Changed and Added, sorted by name.
	Changes []FieldChange
	// TNEFLost reports that the delivered message has fewer TNEF parts than
	// the sent one; TNEFChanged that a TNEF part's decoded content differs
	// (compared in order) or that TNEF parts were added.
	TNEFLost, TNEFChanged bool
	// TNEF describes every TNEF part that was lost, changed or added, in
	// document order.
	TNEF []TNEFChange
	// Fields is the number of identity fields of the sent message and
	// TNEFParts the number of its TNEF parts.
	Fields, TNEFParts int
}

// A ChangeKind says what happened to an identity field.
type ChangeKind int

// Kinds of change.
const (
	FieldMissing ChangeKind = iota + 1 // sent, not delivered
	FieldChanged                       // delivered with other bytes or another count
	FieldAdded                         // delivered, not sent
)

// String returns "missing", "changed" or "added".
func (k ChangeKind) String() string {
	switch k {
	case FieldMissing:
		return "missing"
	case FieldChanged:
		return "changed"
	case FieldAdded:
		return "added"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// FieldChange is what happened to the identity fields of one name.
type FieldChange struct {
	// Name is the field name in lower case.
	Name string
	// Kind says whether the fields went missing, changed or were added.
	Kind ChangeKind
	// Sent and Delivered are the raw fields of that name (any case) in the
	// order they appear in each header, name, folding and line endings
	// included; nil where there is none.
	Sent, Delivered []string
}

// TNEFChange is what happened to one TNEF (winmail.dat) part.
type TNEFChange struct {
	// Index is the part's position among the TNEF parts, from 0.
	Index int
	// Kind is FieldMissing for a part the delivered message lacks,
	// FieldChanged for one whose decoded content differs or that was
	// relabeled, and FieldAdded for one the sent message lacked.
	Kind ChangeKind
	// SentBytes and DeliveredBytes are the decoded sizes, -1 where the
	// part is absent.
	SentBytes, DeliveredBytes int
	// FirstDiff is the offset of the first differing byte of a part whose
	// content changed (the shorter length when one is a prefix of the
	// other), -1 otherwise.
	FirstDiff int
	// Relabeled reports that a part present in both messages has a TNEF
	// media type in one and not in the other: a winmail.dat delivered as
	// application/octet-stream, say, which a mail client no longer decodes
	// as TNEF.
	Relabeled bool
}

// String summarizes r in one line, e.g. "intact", "no identity fields" or
// "missing [x-ms-exchange-crosspremises-authas]; changed [message-id]".
func (r IdentityResult) String() string {
	if r.Intact {
		if r.NoIdentity {
			return "no identity fields"
		}
		return "intact"
	}
	var parts []string
	if len(r.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("missing %v", r.Missing))
	}
	if len(r.Changed) > 0 {
		parts = append(parts, fmt.Sprintf("changed %v", r.Changed))
	}
	if len(r.Added) > 0 {
		parts = append(parts, fmt.Sprintf("added %v", r.Added))
	}
	if r.TNEFLost {
		parts = append(parts, "TNEF part lost")
	}
	if r.TNEFChanged {
		parts = append(parts, "TNEF part changed")
	}
	return strings.Join(parts, "; ")
}

// Explain describes r in several lines for a test failure or a log: a
// summary line, then for every field that went missing, changed or was
// added its sent and delivered bytes (quoted with %q, so that a changed
// line ending or blank shows), then every TNEF part that was lost, changed
// or added. The text ends with a line ending.
func (r IdentityResult) Explain() string {
	var b strings.Builder
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	switch {
	case r.Intact && r.NoIdentity:
		b.WriteString("no identity fields: the sent message has no Message-ID, X-MS-Exchange-CrossPremises-*, " +
			"X-OrganizationHeadersPreserved, X-MS-TNEF-Correlator or other field recall uses, and no TNEF part; nothing was compared\n")
		return b.String()
	case r.Intact:
		fmt.Fprintf(&b, "intact: %s and %s delivered as sent\n",
			plural(r.Fields, "identity field", "identity fields"), plural(r.TNEFParts, "TNEF part", "TNEF parts"))
		return b.String()
	}
	var what []string
	for _, c := range []struct {
		n    int
		verb string
	}{{len(r.Missing), "missing"}, {len(r.Changed), "changed"}, {len(r.Added), "added"}} {
		if c.n > 0 {
			what = append(what, fmt.Sprintf("%s %s", plural(c.n, "field", "fields"), c.verb))
		}
	}
	if r.TNEFLost {
		what = append(what, "TNEF part lost")
	}
	if r.TNEFChanged {
		what = append(what, "TNEF part changed")
	}
	fmt.Fprintf(&b, "identity broken: %s (%s and %s sent)\n", strings.Join(what, ", "),
		plural(r.Fields, "identity field", "identity fields"), plural(r.TNEFParts, "TNEF part", "TNEF parts"))
	if r.NoIdentity {
		b.WriteString("the sent message had no identity field and no TNEF part\n")
	}
	show := func(label string, raws []string) {
		if len(raws) == 0 {
			fmt.Fprintf(&b, "  %s (none)\n", label)
			return
		}
		for _, raw := range raws {
			fmt.Fprintf(&b, "  %s %q\n", label, raw)
		}
	}
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "%s %s:\n", c.Kind, c.Name)
		show("sent:     ", c.Sent)
		show("delivered:", c.Delivered)
	}
	for _, t := range r.TNEF {
		switch t.Kind {
		case FieldMissing:
			fmt.Fprintf(&b, "TNEF part %d lost (%d bytes decoded)\n", t.Index+1, t.SentBytes)
		case FieldAdded:
			fmt.Fprintf(&b, "TNEF part %d added (%d bytes decoded)\n", t.Index+1, t.DeliveredBytes)
		default:
			if t.FirstDiff < 0 {
				fmt.Fprintf(&b, "TNEF part %d relabeled: a TNEF media type in one message only (%d bytes decoded, identical)\n",
					t.Index+1, t.SentBytes)
				break
			}
			fmt.Fprintf(&b, "TNEF part %d changed: %d bytes sent, %d delivered, first difference at byte %d",
				t.Index+1, t.SentBytes, t.DeliveredBytes, t.FirstDiff)
			if t.Relabeled {
				b.WriteString(", relabeled")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// CompareIdentity compares what makes recall work between a message as it
// was sent and as it was delivered:
//
//   - the header fields Message-ID, X-MS-Exchange-CrossPremises-*,
//     X-OrganizationHeadersPreserved, X-MS-TNEF-Correlator, X-MS-Has-Attach,
//     X-MS-Exchange-RecallReportGenerated,
//     X-MS-Exchange-RecallReportCfmGenerated and
//     X-MS-Exchange-Generated-Message-Source of the top-level header, as
//     multisets of raw field bytes: name spelling, folding and line endings
//     must be byte-identical, and none of these fields may be added;
//   - the decoded content of every TNEF part, in order, and whether its
//     media type is a TNEF one. A TNEF part is one Part.IsTNEF reports
//     (application/ms-tnef, application/vnd.ms-tnef, or named
//     winmail.dat), so that a winmail.dat delivered under another media
//     type is compared with the part it was and reported relabeled.
//
// Fields are grouped by their case-insensitive name; the position of a field
// in the header does not matter. Other fields (TestNameHeader among them)
// are not compared. The result carries the bytes of every difference; its
// Explain method prints them.
func CompareIdentity(sent, delivered []byte) IdentityResult {
	var r IdentityResult
	s, d := identityFields(sent), identityFields(delivered)
	for name, sv := range s {
		r.Fields += len(sv)
		dv, ok := d[name]
		switch {
		case !ok:
			r.Missing = append(r.Missing, name)
			r.Changes = append(r.Changes, FieldChange{Name: name, Kind: FieldMissing, Sent: sv})
		case !sameMultiset(sv, dv):
			r.Changed = append(r.Changed, name)
			r.Changes = append(r.Changes, FieldChange{Name: name, Kind: FieldChanged, Sent: sv, Delivered: dv})
		}
	}
	for name, dv := range d {
		if _, ok := s[name]; !ok {
			r.Added = append(r.Added, name)
			r.Changes = append(r.Changes, FieldChange{Name: name, Kind: FieldAdded, Delivered: dv})
		}
	}
	sort.Strings(r.Missing)
	sort.Strings(r.Changed)
	sort.Strings(r.Added)
	sort.Slice(r.Changes, func(i, j int) bool { return r.Changes[i].Name < r.Changes[j].Name })

	st, dt := tnefParts(sent), tnefParts(delivered)
	r.TNEFParts = len(st)
	for i := 0; i < len(st) || i < len(dt); i++ {
		c := TNEFChange{Index: i, SentBytes: -1, DeliveredBytes: -1, FirstDiff: -1}
		switch {
		case i >= len(dt):
			c.Kind, c.SentBytes = FieldMissing, len(st[i].data)
			r.TNEFLost = true
		case i >= len(st):
			c.Kind, c.DeliveredBytes = FieldAdded, len(dt[i].data)
			r.TNEFChanged = true
		case !bytes.Equal(st[i].data, dt[i].data) || st[i].typed != dt[i].typed:
			c.Kind, c.SentBytes, c.DeliveredBytes = FieldChanged, len(st[i].data), len(dt[i].data)
			if !bytes.Equal(st[i].data, dt[i].data) {
				c.FirstDiff = firstDiff(st[i].data, dt[i].data)
			}
			c.Relabeled = st[i].typed != dt[i].typed
			r.TNEFChanged = true
		default:
			continue
		}
		r.TNEF = append(r.TNEF, c)
	}
	r.NoIdentity = len(s) == 0 && len(st) == 0
	r.Intact = len(r.Missing) == 0 && len(r.Changed) == 0 && len(r.Added) == 0 && !r.TNEFLost && !r.TNEFChanged
	return r
}

// firstDiff returns the offset of the first byte where a and b differ, or
// the shorter length when one is a prefix of the other.
func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// identityFields returns the raw bytes of every identity field of msg,
// grouped by lower-case name.
func identityFields(msg []byte) map[string][]string {
	out := make(map[string][]string)
	for _, f := range exactFields(msg) {
		if f.Name != "" && identityField(f.Name) {
			k := strings.ToLower(f.Name)
			out[k] = append(out[k], string(f.Raw))
		}
	}
	return out
}

func sameMultiset(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tnefPart is one TNEF part of a message, as CompareIdentity compares it.
type tnefPart struct {
	data  []byte // decoded content
	typed bool   // of a TNEF media type, not only named winmail.dat
}

// tnefParts returns every TNEF part of msg (by the rule of Part.IsTNEF) in
// document order. It uses go-message's parser, independent of the
// byte-preserving tree the transforms use. A message that cannot be parsed
// has no TNEF parts.
func tnefParts(msg []byte) []tnefPart {
	e, err := message.Read(bytes.NewReader(msg))
	if e == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
		return nil
	}
	var out []tnefPart
	_ = e.Walk(func(_ []int, part *message.Entity, err error) error {
		if part == nil {
			return nil
		}
		t, _, _ := part.Header.ContentType()
		t = strings.ToLower(t)
		if !isTNEF(t, fileName(part.Header)) {
			return nil
		}
		b, rerr := io.ReadAll(part.Body)
		if rerr != nil {
			b = append(b, "\x00<unreadable>"...)
		}
		out = append(out, tnefPart{data: b, typed: isTNEFMediaType(t)})
		return nil
	})
	return out
}
