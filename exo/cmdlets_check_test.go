package exo

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// call is one parsed cmdlet invocation.
type call struct {
	line   int // first line, 1-based
	cmdlet string
	args   []arg
}

// arg is one named parameter and its values (nil for a bare switch).
type arg struct {
	name   string
	colon  bool     // -Name:value
	values []string // unquoted strings; $true/$false and bare words as written
	quoted []bool
}

// parseScript parses the PowerShell subset the generator writes: comment
// lines, blank lines, the one assignment $ErrorActionPreference = 'Stop',
// and cmdlet invocations continued with a trailing backtick, whose
// arguments are -Name value or -Name:value, a value being a single-quoted
// string (quotes doubled inside), a comma-separated list of them, $true,
// $false or a bare word. Anything else is an error: the generator must
// stay inside what this parser (and so the test) understands.
func parseScript(script string) ([]call, error) {
	lines := strings.Split(script, "\n")
	var calls []call
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.TrimSpace(l) == "", strings.HasPrefix(l, "#"):
			continue
		case l == "$ErrorActionPreference = 'Stop'":
			continue
		}
		start := i
		cmd := l
		for strings.HasSuffix(cmd, " `") {
			if i+1 >= len(lines) {
				return nil, fmt.Errorf("line %d: continuation at end of script", i+1)
			}
			i++
			cmd = strings.TrimSuffix(cmd, "`") + strings.TrimLeft(lines[i], " ")
		}
		c, err := parseCall(cmd)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", start+1, err)
		}
		c.line = start + 1
		calls = append(calls, c)
	}
	return calls, nil
}

func parseCall(s string) (call, error) {
	var c call
	name, rest, _ := strings.Cut(s, " ")
	if !isCmdletName(name) {
		return c, fmt.Errorf("%q is not a Verb-Noun cmdlet name", name)
	}
	c.cmdlet = name
	for rest = strings.TrimLeft(rest, " "); rest != ""; rest = strings.TrimLeft(rest, " ") {
		if rest[0] != '-' {
			return c, fmt.Errorf("%s: expected -Parameter at %q", name, rest)
		}
		j := 1
		for j < len(rest) && isWordByte(rest[j]) {
			j++
		}
		a := arg{name: rest[1:j]}
		if a.name == "" {
			return c, fmt.Errorf("%s: empty parameter name at %q", name, rest)
		}
		rest = rest[j:]
		if strings.HasPrefix(rest, ":") {
			a.colon = true
			rest = rest[1:]
		} else if rest == "" || strings.HasPrefix(rest, " -") {
			c.args = append(c.args, a) // a bare switch
			continue
		} else if rest[0] != ' ' {
			return c, fmt.Errorf("%s -%s: unexpected %q", name, a.name, rest)
		} else {
			rest = rest[1:]
		}
		for {
			var v string
			var q bool
			var err error
			v, q, rest, err = parseValue(rest)
			if err != nil {
				return c, fmt.Errorf("%s -%s: %v", name, a.name, err)
			}
			a.values = append(a.values, v)
			a.quoted = append(a.quoted, q)
			if !strings.HasPrefix(rest, ",") {
				break
			}
			rest = rest[1:]
		}
		if rest != "" && rest[0] != ' ' {
			return c, fmt.Errorf("%s -%s: unexpected %q after the value", name, a.name, rest)
		}
		c.args = append(c.args, a)
	}
	return c, nil
}

// parseValue reads one value: 'quoted', $true, $false or a bare word.
func parseValue(s string) (v string, quoted bool, rest string, err error) {
	switch {
	case strings.HasPrefix(s, "'"):
		var b strings.Builder
		rs := []rune(s)
		for i := 1; i < len(rs); i++ {
			if isSingleQuote(rs[i]) {
				if i+1 < len(rs) && isSingleQuote(rs[i+1]) {
					b.WriteRune(rs[i])
					i++
					continue
				}
				return b.String(), true, string(rs[i+1:]), nil
			}
			b.WriteRune(rs[i])
		}
		return "", false, "", fmt.Errorf("unterminated string %q", s)
	case strings.HasPrefix(s, "$true"), strings.HasPrefix(s, "$false"):
		n := len("$true")
		if strings.HasPrefix(s, "$false") {
			n = len("$false")
		}
		return s[:n], false, s[n:], nil
	}
	j := 0
	for j < len(s) && isWordByte(s[j]) {
		j++
	}
	if j == 0 {
		return "", false, "", fmt.Errorf("no value at %q", s)
	}
	return s[:j], false, s[j:], nil
}

func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

func isCmdletName(s string) bool {
	verb, noun, ok := strings.Cut(s, "-")
	return ok && verb != "" && noun != "" && !strings.ContainsFunc(verb+noun, func(r rune) bool { return r > 127 || !isWordByte(byte(r)) })
}

// arrayTypes take a comma-separated list; other string types one value.
func isArrayType(t string) bool {
	return strings.HasSuffix(t, "[]") || t == "MultiValuedProperty"
}

// documentedPairs: parameters Microsoft documents as used together
// ("you also need to use", "specifies the name of header field ... when
// searching for the words specified by"), each needing the other.
var documentedPairs = map[string][][2]string{
	"New-TransportRule": {
		{"HeaderContainsMessageHeader", "HeaderContainsWords"},
		{"HeaderMatchesMessageHeader", "HeaderMatchesPatterns"},
		{"ExceptIfHeaderContainsMessageHeader", "ExceptIfHeaderContainsWords"},
		{"ExceptIfHeaderMatchesMessageHeader", "ExceptIfHeaderMatchesPatterns"},
		{"SetHeaderName", "SetHeaderValue"},
	},
}

// checkCall checks c against the documented tables and returns every
// problem found.
func checkCall(c call) []string {
	var probs []string
	bad := func(format string, a ...any) {
		probs = append(probs, fmt.Sprintf("line %d: %s: ", c.line, c.cmdlet)+fmt.Sprintf(format, a...))
	}
	params, ok := documentedParams[c.cmdlet]
	if !ok {
		bad("not a cmdlet of the documented tables")
		return probs
	}
	seen := map[string]arg{}
	for _, a := range c.args {
		typ, ok := params[a.name]
		if !ok {
			// PowerShell matches names case-insensitively; the scripts
			// must use the documented spelling all the same.
			for p := range params {
				if strings.EqualFold(p, a.name) {
					bad("-%s is spelt -%s in Microsoft's documentation", a.name, p)
					ok = true
				}
			}
			if !ok {
				bad("-%s is not a documented parameter", a.name)
			}
			continue
		}
		if _, dup := seen[a.name]; dup {
			bad("-%s given twice", a.name)
		}
		seen[a.name] = a
		switch {
		case typ == "SwitchParameter":
			if a.values != nil && (!a.colon || len(a.values) != 1 || (a.values[0] != "$true" && a.values[0] != "$false")) {
				bad("switch -%s takes no value or :$true/:$false, not %q", a.name, a.values)
			}
			continue
		case a.colon:
			bad("-%s:value is for switches only", a.name)
		case a.values == nil:
			bad("-%s needs a value", a.name)
			continue
		}
		if valid := documentedEnums[c.cmdlet][a.name]; valid != nil {
			for i, v := range a.values {
				if a.quoted[i] || !slices.Contains(valid, v) {
					bad("-%s %s is not one of the documented values %s", a.name, v, strings.Join(valid, ", "))
				}
			}
			if len(a.values) > 1 && !isArrayType(typ) {
				bad("-%s takes one value", a.name)
			}
			continue
		}
		switch typ {
		case "Boolean":
			if len(a.values) != 1 || (a.values[0] != "$true" && a.values[0] != "$false") {
				bad("-%s takes $true or $false, not %q", a.name, a.values)
			}
		case "Int32", "DateTime", "Guid", "ByteQuantifiedSize", "SclValue":
			bad("-%s (%s): the scripts use no such parameter; add a check before using one", a.name, typ)
		default:
			if strings.HasSuffix(typ, "Scope") || strings.Contains(typ, "Type") || strings.HasSuffix(typ, "Mode") ||
				strings.HasSuffix(typ, "Level") || strings.HasSuffix(typ, "Source") || strings.HasSuffix(typ, "Location") {
				bad("-%s (%s) is enumerated but its documented values are not in documentedEnums", a.name, typ)
				continue
			}
			for i := range a.values {
				if !a.quoted[i] {
					bad("-%s (%s): value %q must be a quoted string", a.name, typ, a.values[i])
				}
			}
			if len(a.values) > 1 && !isArrayType(typ) {
				bad("-%s (%s) takes one value, got %d", a.name, typ, len(a.values))
			}
		}
	}
	// Required parameters ([-Name] <String>, -SenderDomains, [-Identity]).
	for _, req := range requiredParams[c.cmdlet] {
		if _, ok := seen[req]; !ok {
			bad("required parameter -%s missing", req)
		}
	}
	for _, pr := range documentedPairs[c.cmdlet] {
		_, a := seen[pr[0]]
		_, b := seen[pr[1]]
		if a != b {
			bad("-%s and -%s go together", pr[0], pr[1])
		}
	}
	if c.cmdlet == "New-OutboundConnector" {
		// "SmartHosts ... is required if you set the UseMxRecord parameter
		// to $false"; TlsDomain "is only used if the TlsSettings parameter
		// is set to DomainValidation".
		if u, ok := seen["UseMXRecord"]; ok && u.values[0] == "$false" {
			if _, ok := seen["SmartHosts"]; !ok {
				bad("-UseMXRecord $false needs -SmartHosts")
			}
		}
		if _, ok := seen["TlsDomain"]; ok {
			if t, ok := seen["TlsSettings"]; !ok || t.values[0] != "DomainValidation" {
				bad("-TlsDomain is used only with -TlsSettings DomainValidation")
			}
		}
	}
	if strings.HasPrefix(c.cmdlet, "Remove-") {
		if cf, ok := seen["Confirm"]; !ok || len(cf.values) != 1 || cf.values[0] != "$false" {
			bad("a script's Remove-* must say -Confirm:$false, or it stops at a prompt")
		}
	}
	return probs
}

// requiredParams are the documented required parameters.
var requiredParams = map[string][]string{
	"New-OutboundConnector":    {"Name"},
	"New-InboundConnector":     {"Name", "SenderDomains"},
	"New-TransportRule":        {"Name"},
	"Remove-TransportRule":     {"Identity"},
	"Remove-OutboundConnector": {"Identity"},
	"Remove-InboundConnector":  {"Identity"},
}

// checkScript parses script and checks every invocation in it.
func checkScript(t *testing.T, script string) []string {
	t.Helper()
	calls, err := parseScript(script)
	if err != nil {
		return []string{"parse: " + err.Error()}
	}
	if len(calls) == 0 {
		return []string{"no cmdlet invocation found"}
	}
	var probs []string
	for _, c := range calls {
		probs = append(probs, checkCall(c)...)
	}
	return probs
}

func TestScriptsUseOnlyDocumentedParameters(t *testing.T) {
	for _, top := range []Topology{Direct, ViaTenant} {
		s := testSetup(t, top)
		for what, gen := range map[string]func() (string, error){"setup": s.SetupScript, "removal": s.RemovalScript} {
			script, err := gen()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range checkScript(t, script) {
				t.Errorf("%s %s: %s", top, what, p)
			}
		}
	}
}

// TestCheckerCatches proves the check fails on what it is there to catch,
// from a generated script changed the way a typo would change it.
func TestCheckerCatches(t *testing.T) {
	s := testSetup(t, Direct)
	script, err := s.SetupScript()
	if err != nil {
		t.Fatal(err)
	}
	removal, err := s.RemovalScript()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, script, old, new, want string
	}{
		{"misspelt parameter", script, "    -TlsSettings DomainValidation", "    -TlsSetting DomainValidation", "-TlsSetting is not a documented parameter"},
		{"misspelt rule parameter", script, "    -ExceptIfHeaderContainsWords", "    -ExceptIfHeaderContainWords", "-ExceptIfHeaderContainWords is not a documented parameter"},
		{"on-premises-only parameter", removal, "-Confirm:$false", "-DomainController 'dc1' `\n    -Confirm:$false", "-DomainController is not a documented parameter"},
		{"wrong case", script, "    -UseMXRecord", "    -UseMxRecord", "-UseMxRecord is spelt -UseMXRecord"},
		{"invalid ConnectorType", script, "    -ConnectorType OnPremises", "    -ConnectorType OnPremise", "-ConnectorType OnPremise is not one of the documented values"},
		{"invalid TlsSettings", script, "    -TlsSettings DomainValidation", "    -TlsSettings DomainValidated", "-TlsSettings DomainValidated is not one of the documented values"},
		{"invalid FromScope", script, "    -FromScope InOrganization", "    -FromScope Internal", "-FromScope Internal is not one of the documented values"},
		{"quoted enum", script, "    -ConnectorType OnPremises", "    -ConnectorType 'Partner'", "-ConnectorType Partner is not one of the documented values"},
		{"boolean as word", script, "    -RequireTls $true", "    -RequireTls true", "-RequireTls takes $true or $false"},
		{"unpaired header condition", script, "    -ExceptIfHeaderContainsWords 'true' `\n", "", "go together"},
		{"remove without -Confirm:$false", removal, " `\n    -Confirm:$false", "", "must say -Confirm:$false"},
		{"unknown cmdlet", script, "New-InboundConnector", "New-InboundConector", "not a cmdlet of the documented tables"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(tt.script, tt.old) {
				t.Fatalf("the script has no %q", tt.old)
			}
			probs := checkScript(t, strings.Replace(tt.script, tt.old, tt.new, 1))
			if !slices.ContainsFunc(probs, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("want a problem containing %q, got %q", tt.want, probs)
			}
		})
	}
}

func TestParseScriptRefusesOtherSyntax(t *testing.T) {
	for _, s := range []string{
		"New-TransportRule -Name \"x\"\n",          // double quotes expand $variables
		"New-TransportRule -Name 'x'; Remove-X\n",  // a second statement
		"New-TransportRule -Name 'unterminated\n",  // a broken string
		"Get-Thing | Remove-Thing -Confirm:$false", // a pipeline
		"$x = 1\n",
	} {
		if _, err := parseScript(s); err == nil {
			t.Errorf("parseScript(%q) accepted it", s)
		}
	}
}
