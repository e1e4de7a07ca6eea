package rules

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/recallrelay/recallrelay/internal/yamlconf"
)

// The schema of a rules file, as decoded by yaml with KnownFields(true).
// Semantic checks happen afterwards, in compileFile, so that every problem
// gets its field path.

type fileSchema struct {
	Organization orgSchema      `yaml:"organization"`
	Defaults     defaultsSchema `yaml:"defaults"`
	DefaultRoute []string       `yaml:"default_route"`
	Rules        []ruleSchema   `yaml:"rules"`
}

type orgSchema struct {
	AcceptedDomains []string `yaml:"accepted_domains"`
}

type defaultsSchema struct {
	RecallBypass     *bool    `yaml:"recall_bypass"`
	LoopProtection   *bool    `yaml:"loop_protection"`
	NullSenderBypass *bool    `yaml:"null_sender_bypass"`
	CalendarBypass   *bool    `yaml:"calendar_bypass"`
	VendorMarkers    []string `yaml:"vendor_markers"`
	ScanIncomplete   string   `yaml:"scan_incomplete"`
}

type ruleSchema struct {
	Name     string        `yaml:"name"`
	Priority *int          `yaml:"priority"`
	When     condSchema    `yaml:"when"`
	Except   condSchema    `yaml:"except"`
	Actions  actionsSchema `yaml:"actions"`
	Stop     bool          `yaml:"stop"`
}

type condSchema struct {
	HeaderExists                  []string              `yaml:"header_exists"`
	HeaderContains                *headerWordsSchema    `yaml:"header_contains"`
	HeaderMatches                 *headerPatternsSchema `yaml:"header_matches"`
	Sender                        *addressSchema        `yaml:"sender"`
	Recipient                     *addressSchema        `yaml:"recipient"`
	SenderInOrganization          *bool                 `yaml:"sender_in_organization"`
	RecipientsOutsideOrganization string                `yaml:"recipients_outside_organization"`
	SubjectContains               []string              `yaml:"subject_contains"`
	SubjectMatches                []string              `yaml:"subject_matches"`
	SizeOver                      yaml.Node             `yaml:"size_over"`
	AttachmentExtension           []string              `yaml:"attachment_extension"`
	AttachmentContentType         []string              `yaml:"attachment_content_type"`
	MessageClass                  []string              `yaml:"message_class"`
	Predicate                     []string              `yaml:"predicate"`
}

type headerWordsSchema struct {
	Header string   `yaml:"header"`
	Words  []string `yaml:"words"`
}

type headerPatternsSchema struct {
	Header   string   `yaml:"header"`
	Patterns []string `yaml:"patterns"`
}

type addressSchema struct {
	Addresses []string `yaml:"addresses"`
	Domains   []string `yaml:"domains"`
	Patterns  []string `yaml:"patterns"`
}

type actionsSchema struct {
	Route        []string          `yaml:"route"`
	Bypass       bool              `yaml:"bypass"`
	SetHeader    []setHeaderSchema `yaml:"set_header"`
	RemoveHeader []string          `yaml:"remove_header"`
	Reject       *replySchema      `yaml:"reject"`
	Tempfail     *replySchema      `yaml:"tempfail"`
}

type setHeaderSchema struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

type replySchema struct {
	Code     int    `yaml:"code"`
	Enhanced string `yaml:"enhanced"`
	Text     string `yaml:"text"`
}

// Problem is one problem with one field of a rules file, found by Parse or
// by Compile.
type Problem struct {
	// Rule is the name of the rule the field belongs to, or "" for a field
	// outside the rules or of a rule without a valid name.
	Rule string
	// Path is the field's YAML path: relative to the rule when Rule is set
	// ("when.header_matches.patterns[0]"), from the top of the file
	// otherwise ("defaults.vendor_markers[1]", "rules[2].name"). Keys are
	// joined by "." and list indexes are in brackets. Empty for a problem
	// with the file as a whole.
	Path string
	// Line is the line of the field in the file, or of its closest ancestor
	// present there; 0 when unknown.
	Line int
	// Msg describes the problem.
	Msg string
}

// Error formats p as `rule "name": path: msg (line N)`, leaving out the
// parts that are empty.
func (p Problem) Error() string {
	var b strings.Builder
	if p.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", p.Rule)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	if p.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", p.Line)
	}
	return b.String()
}

// Error is returned by Parse, Load and Compile. It lists every problem
// found, in file order.
type Error struct {
	// Source names the rules file, as given to Parse.
	Source   string
	Problems []Problem
}

// Error lists the problems one per line, each prefixed with the source:
// `rules.yaml: rule "sign": when.header_matches.patterns[0]: error parsing
// regexp: missing closing ]: `[a` (line 12)`.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.Source + ": " + p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, for errors.As.
func (e *Error) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p
	}
	return out
}

// Load reads the rules file at path and parses it with Parse, naming it by
// its path in errors.
func Load(path string) (*Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and checks a rules file; source names it in errors.
//
// Decoding is strict: an unknown or repeated key, a value of the wrong
// type or a second YAML document is an error. Every value is then checked
// (header names, regular expressions, sizes, reply codes, header values,
// unique rule names, ...). The error is an *Error listing every problem with
// its rule, field path and line.
//
// Route targets are checked against the relay's vendors by Compile, which
// knows them.
func Parse(data []byte, source string) (*Set, error) {
	p := &parser{source: source, ruleNames: make(map[int]string)}
	var f fileSchema
	var diags []yamlconf.Diag
	p.pos, diags = yamlconf.Decode(data, &f, yamlconf.Options{Document: "a rules file",
		Limit: maxLocated, Mapping: p.ruleName, Unknown: unknownField})
	for _, d := range diags {
		p.problems = append(p.problems, withLine(p.locate(d.Path, d.Msg), d.Line))
	}
	if len(p.problems) > 0 {
		return nil, p.err()
	}

	// Then the values.
	s := p.compileFile(&f)
	if len(p.problems) > 0 {
		return nil, p.err()
	}
	return s, nil
}

// parser collects the problems of one file and knows where its fields are.
type parser struct {
	source    string
	problems  []Problem
	pos       *yamlconf.Index
	ruleNames map[int]string // index in rules → name as written
}

func (p *parser) err() error {
	return &Error{Source: p.source, Problems: p.problems}
}

// maxLocated bounds the fields the index records, so that aliases cannot
// make it expand a small file exponentially; a real rules file has a few
// thousand.
const maxLocated = 100_000

// ruleName records the name of the rule n when it is one (path "rules[i]").
// It sees the mappings merged into a rule before the rule itself, so the
// rule's own name wins.
func (p *parser) ruleName(path string, n *yaml.Node) {
	idx, ok := ruleIndex(path)
	if !ok || path != "rules["+strconv.Itoa(idx)+"]" {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
			p.ruleNames[idx] = n.Content[i+1].Value
		}
	}
}

// ruleIndex returns i when path is "rules[i]" or below it.
func ruleIndex(path string) (int, bool) {
	rest, ok := strings.CutPrefix(path, "rules[")
	if !ok {
		return 0, false
	}
	end := strings.IndexByte(rest, ']')
	if end < 0 {
		return 0, false
	}
	i, err := strconv.Atoi(rest[:end])
	if err != nil || i < 0 {
		return 0, false
	}
	return i, true
}

// problem records a problem with the field at path (from the top of the
// file), splitting off the rule it belongs to.
func (p *parser) problem(path, format string, args ...any) {
	p.problems = append(p.problems, p.locate(path, fmt.Sprintf(format, args...)))
}

// locate builds the Problem for msg about the field at path.
func (p *parser) locate(path, msg string) Problem {
	pr := Problem{Path: path, Line: p.pos.Line(path), Msg: msg}
	if i, ok := ruleIndex(path); ok {
		prefix := "rules[" + strconv.Itoa(i) + "]"
		if name := p.ruleNames[i]; validRuleName(name) == nil && path != prefix {
			pr.Rule = name
			pr.Path = strings.TrimPrefix(strings.TrimPrefix(path, prefix), ".")
		}
	}
	return pr
}

// unknownField words the error for a key no field of the schema type
// typeName has.
func unknownField(_, _, typeName string) string {
	msg := "unknown field"
	if keys := schemaKeys(typeName); len(keys) > 0 {
		msg += "; valid here: " + strings.Join(keys, ", ")
	}
	return msg
}

func withLine(pr Problem, line int) Problem {
	pr.Line = line
	return pr
}

// schemaKeys lists the YAML keys of the schema struct yaml calls typeName
// ("rules.condSchema"), or nil.
func schemaKeys(typeName string) []string {
	for _, v := range []any{fileSchema{}, orgSchema{}, defaultsSchema{}, ruleSchema{}, condSchema{},
		headerWordsSchema{}, headerPatternsSchema{}, addressSchema{}, actionsSchema{}, setHeaderSchema{}, replySchema{}} {
		t := reflect.TypeOf(v)
		if t.String() != typeName {
			continue
		}
		keys := make([]string, 0, t.NumField())
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			keys = append(keys, name)
		}
		return keys
	}
	return nil
}
