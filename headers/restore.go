package headers

import (
	"bytes"
	"sort"
	"strings"
)

// Restorer repairs the header block of a message coming back from a vendor.
type Restorer struct {
	restore   Matcher
	firewall  Matcher
	restamped Matcher
}

// NewRestorer returns a Restorer that puts back the recorded fields restore
// matches. The firewall (Firewall) is always applied on top, and the fields
// Exchange re-stamps (Restamped) are always removed and never put back,
// whatever restore matches.
func NewRestorer(restore Matcher) *Restorer {
	return &Restorer{restore: restore, firewall: MustMatcher(Firewall...), restamped: MustMatcher(Restamped...)}
}

// restores reports whether Restore puts back recorded fields named ln (in
// lower case).
func (r *Restorer) restores(ln string) bool {
	return r.restore.matchLower(ln) && !r.restamped.matchLower(ln)
}

// RestoreReport says what Restore changed, by lower-case field name.
type RestoreReport struct {
	// Restored names fields the vendor dropped or changed and that were put
	// back as recorded.
	Restored []string
	// Removed names fields the vendor added (or forged) that the record
	// does not have, including every firewalled field, and every Restamped
	// field the vendor presents.
	Removed []string
	// Intact names recorded fields that came back byte-identical.
	Intact []string
}

// Changed reports whether Restore modified anything.
func (r RestoreReport) Changed() bool { return len(r.Restored)+len(r.Removed) > 0 }

// Restore makes the fields of h that the restore set or the firewall
// matches exactly equal to the record's: for each field name, if what the
// vendor presents is byte-identical to what was recorded (same fields, same
// order), it is left where it is; otherwise every field of that name is
// removed and the recorded ones are inserted at the top of the header block,
// in recorded order. Firewalled names that were not recorded (for example
// X-MS-Exchange-Organization-*) are always removed, and so are Restamped
// names, recorded or not. Every other field is left exactly as the vendor
// sent it.
//
// With rec == nil (a message without a record), every firewalled and
// Restamped field is removed and nothing is added.
func (r *Restorer) Restore(h *Header, rec *Record) RestoreReport {
	// Names are lowered once per field and matched as they are.
	guarded := func(ln string) bool {
		return r.restore.matchLower(ln) || r.firewall.matchLower(ln) || r.restamped.matchLower(ln)
	}
	if rec == nil {
		guarded = func(ln string) bool { return r.firewall.matchLower(ln) || r.restamped.matchLower(ln) }
	}

	// Group the vendor's and the record's guarded fields by lower-case name.
	vendor := map[string][][]byte{}
	for _, f := range h.Fields() {
		if k := strings.ToLower(f.Name); guarded(k) {
			vendor[k] = append(vendor[k], f.Raw)
		}
	}
	recorded := map[string][][]byte{}
	if rec != nil {
		for _, f := range rec.Fields {
			if k := strings.ToLower(f.Name); r.restores(k) {
				recorded[k] = append(recorded[k], f.Raw)
			}
		}
	}

	var rep RestoreReport
	replace := map[string]bool{}
	for k, vs := range vendor {
		rs, ok := recorded[k]
		switch {
		case ok && sameFields(vs, rs):
			rep.Intact = append(rep.Intact, k)
		case ok:
			replace[k] = true
			rep.Restored = append(rep.Restored, k)
		default:
			replace[k] = true
			rep.Removed = append(rep.Removed, k)
		}
	}
	for k := range recorded {
		if _, ok := vendor[k]; !ok {
			replace[k] = true
			rep.Restored = append(rep.Restored, k)
		}
	}
	sort.Strings(rep.Restored)
	sort.Strings(rep.Removed)
	sort.Strings(rep.Intact)
	if len(replace) == 0 {
		return rep
	}

	h.Remove(nameSet(replace))
	if rec != nil {
		var add []Field
		for _, f := range rec.Fields {
			k := strings.ToLower(f.Name)
			if replace[k] && r.restores(k) && ValidRawField(f.Raw) {
				add = append(add, Field{Name: f.Name, Raw: bytes.Clone(f.Raw)})
			}
		}
		h.Prepend(add...)
	}
	return rep
}

func sameFields(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// nameSet is a Matcher over exact lower-case names.
func nameSet(names map[string]bool) Matcher {
	return Matcher{exact: names}
}

// ValidRawField reports whether raw is one complete header field as the
// relay may write it: a valid name, a colon, and lines that end in CRLF where
// every line after the first starts with a blank (a folded continuation),
// with no other CR, LF or NUL. Recorded fields always pass, since they were
// parsed from a header block; the check makes sure that nothing read back
// from a store can split or end a header block.
func ValidRawField(raw []byte) bool {
	i := bytes.IndexByte(raw, ':')
	if i <= 0 || CheckFieldName(string(bytes.TrimRight(raw[:i], " \t"))) != nil {
		return false
	}
	if !bytes.HasSuffix(raw, []byte("\r\n")) || bytes.IndexByte(raw, 0) >= 0 {
		return false
	}
	body := raw[:len(raw)-2]
	for {
		j := bytes.IndexAny(body, "\r\n")
		if j < 0 {
			return true
		}
		if body[j] != '\r' || j+1 >= len(body) || body[j+1] != '\n' {
			return false
		}
		rest := body[j+2:]
		if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			return false
		}
		if len(bytes.Trim(lineOf(rest), " \t")) == 0 {
			return false // a blank continuation line would end the header block
		}
		body = rest
	}
}

func lineOf(b []byte) []byte {
	if j := bytes.IndexAny(b, "\r\n"); j >= 0 {
		return b[:j]
	}
	return b
}
