package exo

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Quote returns s as a PowerShell single-quoted string literal: no
// variable expansion and no escape sequences, so the only character to
// escape is the quote itself, which is doubled. PowerShell takes the
// typographic single quotes U+2018, U+2019, U+201A and U+201B for quote
// characters too (a string pasted from a word processor), so those are
// doubled as well, each with itself, as PowerShell's own
// CodeGeneration.EscapeSingleQuotedStringContent does.
//
// Quote refuses what a one-line script value cannot carry: invalid UTF-8,
// control characters (C0, DEL, C1: a line break would end the command and
// let the rest run as code), and the Unicode line and paragraph
// separators.
func Quote(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%q is not valid UTF-8", s)
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return "", fmt.Errorf("%q contains the control character %U, which a PowerShell command line cannot carry", s, r)
		case r == '\u2028' || r == '\u2029':
			return "", fmt.Errorf("%q contains the line separator %U", s, r)
		case isSingleQuote(r):
			b.WriteRune(r)
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String(), nil
}

// isSingleQuote reports whether PowerShell's tokenizer takes r for a
// single quote.
func isSingleQuote(r rune) bool {
	switch r {
	case '\'', '\u2018', '\u2019', '\u201a', '\u201b':
		return true
	}
	return false
}

// value is one parameter value as it appears in a script.
type value interface{ render() (string, error) }

// str is a string value, always single-quoted.
type str string

func (s str) render() (string, error) { return Quote(string(s)) }

// strs is a list of strings: 'a','b'.
type strs []string

func (l strs) render() (string, error) {
	if len(l) == 0 {
		return "", fmt.Errorf("empty list")
	}
	out := make([]string, len(l))
	for i, s := range l {
		q, err := Quote(s)
		if err != nil {
			return "", err
		}
		out[i] = q
	}
	return strings.Join(out, ","), nil
}

// boolean is $true or $false.
type boolean bool

func (v boolean) render() (string, error) {
	if v {
		return "$true", nil
	}
	return "$false", nil
}

// enum is a bare word from a parameter's documented set of values.
type enum string

func (e enum) render() (string, error) {
	for _, r := range e {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return "", fmt.Errorf("enumerated value %q is not a bare word", string(e))
		}
	}
	if e == "" {
		return "", fmt.Errorf("empty enumerated value")
	}
	return string(e), nil
}

// switchValue is a switch parameter given a value: -Confirm:$false.
type switchValue bool

func (v switchValue) render() (string, error) { return boolean(v).render() }

// param is one named parameter with the comment that explains it.
type param struct {
	name  string
	value value
	why   string // one comment line; "" for none
}

// invocation is one cmdlet call.
type invocation struct {
	cmdlet string
	intro  []string // comment lines before the call
	params []param
}

// render writes inv as a commented, backtick-continued command. Every
// problem with a value is returned, naming the cmdlet and parameter.
func (inv invocation) render(b *strings.Builder) error {
	var errs []string
	for _, l := range inv.intro {
		comment(b, l)
	}
	for _, p := range inv.params {
		if p.why != "" {
			comment(b, "-"+p.name+": "+p.why)
		}
	}
	b.WriteString(inv.cmdlet)
	for _, p := range inv.params {
		v, err := p.value.render()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s -%s: %v", inv.cmdlet, p.name, err))
			continue
		}
		b.WriteString(" `\n    -")
		b.WriteString(p.name)
		if _, ok := p.value.(switchValue); ok {
			b.WriteString(":" + v)
		} else {
			b.WriteString(" " + v)
		}
	}
	b.WriteString("\n\n")
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// comment writes text as PowerShell comment lines, wrapped at about 76
// columns. Comment text comes from this package and from configuration
// values that were checked before; a line break in it cannot escape the
// comment because each line gets its own "#".
func comment(b *strings.Builder, text string) {
	if text == "" {
		b.WriteString("#\n")
		return
	}
	const width = 76
	indent := ""
	if strings.HasPrefix(text, "-") || strings.HasPrefix(text, "  ") {
		indent = "    "
	}
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			b.WriteString("# " + line + "\n")
			line = indent + w
			continue
		}
		if line == "" {
			line = w
		} else {
			line += " " + w
		}
	}
	if line != "" {
		b.WriteString("# " + line + "\n")
	}
}
