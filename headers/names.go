package headers

import (
	"fmt"
	"strings"
)

// Matcher matches header field names case-insensitively against a list of
// patterns. A pattern is either a field name ("Message-ID") or a prefix
// ending in "*" ("X-MS-Exchange-CrossPremises-*").
type Matcher struct {
	exact    map[string]bool
	prefixes []string
}

// NewMatcher compiles patterns. It rejects empty patterns, a "*" anywhere but
// at the end, and characters that cannot appear in a field name.
func NewMatcher(patterns []string) (Matcher, error) {
	m := Matcher{exact: make(map[string]bool)}
	for _, p := range patterns {
		if err := checkPattern(p); err != nil {
			return Matcher{}, err
		}
		lp := strings.ToLower(p)
		if strings.HasSuffix(lp, "*") {
			m.prefixes = append(m.prefixes, strings.TrimSuffix(lp, "*"))
		} else {
			m.exact[lp] = true
		}
	}
	return m, nil
}

// MustMatcher is NewMatcher for patterns known to be valid (the built-in
// defaults); it panics on an invalid pattern.
func MustMatcher(patterns ...string) Matcher {
	m, err := NewMatcher(patterns)
	if err != nil {
		panic(err)
	}
	return m
}

func checkPattern(p string) error {
	if p == "" || p == "*" {
		return fmt.Errorf("header name pattern %q: empty", p)
	}
	body := strings.TrimSuffix(p, "*")
	if strings.Contains(body, "*") {
		return fmt.Errorf("header name pattern %q: '*' is allowed only at the end", p)
	}
	if err := CheckFieldName(body); err != nil {
		return fmt.Errorf("header name pattern %q: %w", p, err)
	}
	return nil
}

// CheckFieldName reports whether name is a valid RFC 5322 field name:
// printable US-ASCII except ':' and space.
func CheckFieldName(name string) error {
	if name == "" {
		return fmt.Errorf("empty field name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 33 || c > 126 || c == ':' {
			return fmt.Errorf("byte %q at %d is not allowed in a field name", c, i)
		}
	}
	return nil
}

// Match reports whether name matches one of the patterns.
func (m Matcher) Match(name string) bool {
	return m.matchLower(strings.ToLower(name))
}

// matchLower is Match for a name already in lower case.
func (m Matcher) matchLower(ln string) bool {
	if m.exact[ln] {
		return true
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(ln, p) {
			return true
		}
	}
	return false
}

// matchBytes is Match for a name given as bytes. The name must be ASCII, as
// every name a Header parses is; it allocates nothing for names of up to 128
// bytes.
func (m Matcher) matchBytes(name []byte) bool {
	var buf [128]byte
	lower := buf[:0]
	if len(name) > len(buf) {
		lower = make([]byte, 0, len(name))
	}
	for _, c := range name {
		lower = append(lower, lowerASCII(c))
	}
	if m.exact[string(lower)] {
		return true
	}
	for _, p := range m.prefixes {
		if len(lower) >= len(p) && string(lower[:len(p)]) == p {
			return true
		}
	}
	return false
}

// Empty reports whether the matcher has no patterns.
func (m Matcher) Empty() bool { return len(m.exact) == 0 && len(m.prefixes) == 0 }

// Default header name sets. Facts behind them: ../shared/docs/exchange-round-trip.md.
var (
	// DefaultRestore is what the return leg puts back exactly as recorded
	// (removing what the vendor added, re-adding what it dropped or changed).
	// It must be a subset of the captured names.
	DefaultRestore = []string{
		"Message-ID",
		"X-MS-Exchange-CrossPremises-*",
		"X-OrganizationHeadersPreserved",
		"X-MS-TNEF-Correlator",
		"X-MS-Has-Attach",
		"Thread-Index",
		"Thread-Topic",
		"X-MS-Exchange-RecallReportGenerated",
		"X-MS-Exchange-RecallReportCfmGenerated",
		"X-MS-Exchange-Generated-Message-Source",
		// Exchange Online's DKIM signature covers it (h= of every Exchange
		// signature in the corpus): a vendor that drops it breaks the
		// tenant's DKIM even when it leaves the body alone.
		"X-MS-Exchange-SenderADCheck",
	}
	// DefaultCapture is what the tenant leg records of every message: what
	// it restores, plus, for tracing only, fields Exchange strips and
	// re-stamps on re-entry.
	DefaultCapture = append(append([]string(nil), DefaultRestore...),
		"X-MS-Exchange-CrossTenant-*",
		"X-OriginatorOrg",
	)
	// Restamped is what the return leg always removes from what the vendor
	// presents and never restores: the fields Exchange Online strips and
	// stamps anew when a message re-enters the tenant
	// (../shared/docs/exchange-round-trip.md, section 2). Restoring them
	// would add nothing, and passing them on would let a vendor present
	// forged tenant attribution (CrossTenant-AuthAs: Internal, another
	// X-OriginatorOrg). DefaultCapture still records them, for tracing.
	// It is not configurable: a restore list that names them is ignored
	// for them.
	Restamped = []string{
		"X-MS-Exchange-CrossTenant-*",
		"X-MS-Exchange-Transport-CrossTenantHeadersStamped",
		"X-OriginatorOrg",
	}
	// Firewall is what the return leg always removes from what the vendor
	// presents: the fields that would make Exchange treat mail as internal.
	// It is not configurable.
	Firewall = []string{
		"X-MS-Exchange-CrossPremises-*",
		"X-MS-Exchange-Organization-*",
		"X-OrganizationHeadersPreserved",
	}
)
