package rules

import (
	"strings"

	"github.com/recallrelay/recallrelay/headers"
)

// Protected reports whether a header action (set_header, remove_header)
// must leave the header field name alone. Names compare ignoring case. It
// is true for:
//
//   - a name holding '*', or one that is not a valid field name: header
//     actions take exact field names, and a name a relay could take for a
//     pattern might cover any of the fields below;
//   - the fields recall and the round trip depend on: headers.DefaultRestore
//     and headers.Firewall (Message-ID, X-MS-Exchange-CrossPremises-*,
//     X-MS-Exchange-Organization-*, X-OrganizationHeadersPreserved,
//     X-MS-TNEF-Correlator, ...);
//   - the MIME structure: Content-* and MIME-Version;
//   - the fields Exchange strips and re-stamps when a message comes back
//     in: X-MS-Exchange-CrossTenant-*,
//     X-MS-Exchange-Transport-CrossTenantHeadersStamped, X-OriginatorOrg;
//   - loopMarker, the relay's loop marker ("" when it stamps none), and
//     refHeader, its reference header ("" means headers.DefaultRefHeader).
//
// Parse and Compile refuse every rule whose header actions name such a
// field; the relay checks each header action of a Decision with Protected
// again before it applies it, as defence in depth.
func Protected(name, loopMarker, refHeader string) bool {
	if isPattern(name) || headers.CheckFieldName(name) != nil {
		return true
	}
	return fixedProtection(name) != "" || relayField(name, loopMarker, refHeader) != ""
}

// isPattern reports whether a header action's name is written as a
// pattern.
func isPattern(name string) bool { return strings.Contains(name, "*") }

// protectedGroup is a set of protected field names (exact, or prefixes
// ending in "*") with the reason a rule may not touch them.
type protectedGroup struct {
	names []string
	why   string
}

// protectedGroups lists the fields no header action may touch, whatever the
// relay's configuration.
func protectedGroups() []protectedGroup {
	return []protectedGroup{
		{headers.DefaultRestore, "the round trip and recall depend on it"},
		{headers.Firewall, "the round trip and recall depend on it"},
		{[]string{"Content-*", "MIME-Version"}, "it describes the MIME structure of the body"},
		{[]string{"X-MS-Exchange-CrossTenant-*", "X-MS-Exchange-Transport-CrossTenantHeadersStamped", "X-OriginatorOrg"},
			"Exchange strips and re-stamps it when the message comes back"},
	}
}

// fixedProtection returns why no header action may touch the field name,
// whatever the relay's configuration, or "" when one may.
func fixedProtection(name string) string {
	for _, g := range protectedGroups() {
		for _, pat := range g.names {
			if matchName(pat, name) {
				return g.why
			}
		}
	}
	return ""
}

// relayField returns what the field name is to the relay, "loop marker" or
// "reference header", or "" when it is neither.
func relayField(name, loopMarker, refHeader string) string {
	if refHeader == "" {
		refHeader = headers.DefaultRefHeader
	}
	switch {
	case loopMarker != "" && strings.EqualFold(name, loopMarker):
		return "loop marker"
	case strings.EqualFold(name, refHeader):
		return "reference header"
	}
	return ""
}

// matchName reports whether name matches pat, a field name or a prefix
// ending in "*", ignoring case.
func matchName(pat, name string) bool {
	if prefix, ok := strings.CutSuffix(pat, "*"); ok {
		return hasPrefixFold(name, prefix)
	}
	return strings.EqualFold(pat, name)
}
