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
	// Intact reports that nothing below went wrong.
	Intact bool
	// Missing, Changed and Added name the identity fields (lower case,
	// sorted) that the delivered message lacks entirely, carries with
	// different bytes or a different count, or carries although the sent
	// message did not.
	Missing, Changed, Added []string
	// TNEFLost reports that the delivered message has fewer TNEF parts than
	// the sent one; TNEFChanged that a TNEF part's decoded content differs
	// (compared in order) or that TNEF parts were added.
	TNEFLost, TNEFChanged bool
}

// String summarizes r in one line, e.g. "intact" or
// "missing [x-ms-exchange-crosspremises-authas]; changed [message-id]".
func (r IdentityResult) String() string {
	if r.Intact {
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
//   - the decoded content of every application/ms-tnef part, in order.
//
// Fields are grouped by their case-insensitive name; the position of a field
// in the header does not matter.
func CompareIdentity(sent, delivered []byte) IdentityResult {
	var r IdentityResult
	s, d := identityFields(sent), identityFields(delivered)
	for name, sv := range s {
		dv, ok := d[name]
		switch {
		case !ok:
			r.Missing = append(r.Missing, name)
		case !sameMultiset(sv, dv):
			r.Changed = append(r.Changed, name)
		}
	}
	for name := range d {
		if _, ok := s[name]; !ok {
			r.Added = append(r.Added, name)
		}
	}
	sort.Strings(r.Missing)
	sort.Strings(r.Changed)
	sort.Strings(r.Added)

	st, dt := tnefParts(sent), tnefParts(delivered)
	for i := 0; i < len(st) && i < len(dt); i++ {
		if !bytes.Equal(st[i], dt[i]) {
			r.TNEFChanged = true
		}
	}
	r.TNEFLost = len(dt) < len(st)
	if len(dt) > len(st) {
		r.TNEFChanged = true
	}
	r.Intact = len(r.Missing) == 0 && len(r.Changed) == 0 && len(r.Added) == 0 && !r.TNEFLost && !r.TNEFChanged
	return r
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

// tnefParts returns the decoded content of every TNEF part of msg in
// document order. It uses go-message's parser, independent of the
// byte-preserving tree the transforms use. A message that cannot be parsed
// has no TNEF parts.
func tnefParts(msg []byte) [][]byte {
	e, err := message.Read(bytes.NewReader(msg))
	if e == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
		return nil
	}
	var out [][]byte
	_ = e.Walk(func(_ []int, part *message.Entity, err error) error {
		if part == nil {
			return nil
		}
		t, _, _ := part.Header.ContentType()
		if !isTNEFMediaType(strings.ToLower(t)) {
			return nil
		}
		b, rerr := io.ReadAll(part.Body)
		if rerr != nil {
			b = append(b, "\x00<unreadable>"...)
		}
		out = append(out, b)
		return nil
	})
	return out
}
