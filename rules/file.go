package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
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
	p := &parser{source: source, lines: make(map[string]int), vals: make(map[string]*yaml.Node),
		ruleNames: make(map[int]string), active: make(map[*yaml.Node]bool)}

	// First pass: the node tree, for positions and syntax errors.
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		p.syntaxError(err)
		return nil, p.err()
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		p.problems = append(p.problems, Problem{Line: line, Msg: "more than one YAML document; a rules file holds exactly one"})
		return nil, p.err()
	}
	p.walk(&root, "")
	if p.overflow {
		p.problems = append(p.problems, Problem{Msg: fmt.Sprintf("more than %d fields after expanding aliases", maxLocated)})
		return nil, p.err()
	}

	// Second pass: strict decoding into the schema.
	var f fileSchema
	sdec := yaml.NewDecoder(bytes.NewReader(data))
	sdec.KnownFields(true)
	if err := sdec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			p.syntaxError(err)
			return nil, p.err()
		}
		for _, msg := range te.Errors {
			p.typeError(msg)
		}
		return nil, p.err()
	}

	// Third pass: the values.
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
	lines     map[string]int        // field path → line of its key or list item
	vals      map[string]*yaml.Node // field path → its value
	nodes     []located
	ruleNames map[int]string // index in rules → name as written

	active   map[*yaml.Node]bool // aliases being expanded
	overflow bool                // more than maxLocated fields
}

// located is one mapping value or list item of the file.
type located struct {
	path string
	key  string // last path segment, "" for list items
	line int
	val  *yaml.Node
}

func (p *parser) err() error {
	return &Error{Source: p.source, Problems: p.problems}
}

// maxLocated bounds the fields walk records, so that aliases cannot make
// it expand a small file exponentially; a real rules file has a few
// thousand.
const maxLocated = 100_000

// walk records the position of every field below n, whose path is path.
// Aliases are followed (fields set through them are set), except into
// themselves.
func (p *parser) walk(n *yaml.Node, path string) {
	if p.overflow {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			p.walk(c, path)
		}
	case yaml.AliasNode:
		if n.Alias != nil && !p.active[n.Alias] {
			p.active[n.Alias] = true
			p.walk(n.Alias, path)
			delete(p.active, n.Alias)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				p.walk(v, path)
				continue
			}
			kp := k.Value
			if path != "" {
				kp = path + "." + k.Value
			}
			p.add(located{path: kp, key: k.Value, line: k.Line, val: v})
			p.walk(v, kp)
		}
		if idx, ok := ruleIndex(path); ok && path == "rules["+strconv.Itoa(idx)+"]" {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
					p.ruleNames[idx] = n.Content[i+1].Value
				}
			}
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			ip := path + "[" + strconv.Itoa(i) + "]"
			p.add(located{path: ip, line: v.Line, val: v})
			p.walk(v, ip)
		}
	}
}

func (p *parser) add(l located) {
	if len(p.nodes) >= maxLocated {
		p.overflow = true
		return
	}
	if _, ok := p.lines[l.path]; !ok {
		p.lines[l.path] = l.line
		p.vals[l.path] = l.val
	}
	p.nodes = append(p.nodes, l)
}

// has reports whether the file sets the field at path.
func (p *parser) has(path string) bool {
	_, ok := p.lines[path]
	return ok
}

// lineOf returns the line of path or, when the file leaves it out, of its
// closest ancestor present; 0 when none is.
func (p *parser) lineOf(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
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
	pr := Problem{Path: path, Line: p.lineOf(path), Msg: msg}
	if i, ok := ruleIndex(path); ok {
		prefix := "rules[" + strconv.Itoa(i) + "]"
		if name := p.ruleNames[i]; validRuleName(name) == nil && path != prefix {
			pr.Rule = name
			pr.Path = strings.TrimPrefix(strings.TrimPrefix(path, prefix), ".")
		}
	}
	return pr
}

var (
	reLine      = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	reUnknown   = regexp.MustCompile(`^field (.+) not found in type (.+)$`)
	reRepeated  = regexp.MustCompile(`^field (.+) already set in type (.+)$`)
	reDuplicate = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	reCannot    = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
)

// syntaxError records a YAML syntax error.
func (p *parser) syntaxError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := reLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.problems = append(p.problems, Problem{Line: line, Msg: "invalid YAML: " + m[2]})
		return
	}
	p.problems = append(p.problems, Problem{Msg: "invalid YAML: " + msg})
}

// typeError records one message of a *yaml.TypeError, with the path of the
// field it is about.
func (p *parser) typeError(msg string) {
	m := reLine.FindStringSubmatch(msg)
	if m == nil {
		p.problems = append(p.problems, Problem{Msg: msg})
		return
	}
	line, _ := strconv.Atoi(m[1])
	text := m[2]
	if u := reUnknown.FindStringSubmatch(text); u != nil {
		path := p.keyAt(line, u[1])
		msg := "unknown field"
		if keys := schemaKeys(u[2]); len(keys) > 0 {
			msg += "; valid here: " + strings.Join(keys, ", ")
		}
		p.problems = append(p.problems, withLine(p.locate(path, msg), line))
		return
	}
	if d := reDuplicate.FindStringSubmatch(text); d != nil {
		p.problems = append(p.problems, withLine(p.locate(p.keyAt(line, d[1]), "set more than once (first on line "+d[2]+")"), line))
		return
	}
	if r := reRepeated.FindStringSubmatch(text); r != nil {
		p.problems = append(p.problems, withLine(p.locate(p.keyAt(line, r[1]), "set more than once"), line))
		return
	}
	if c := reCannot.FindStringSubmatch(text); c != nil {
		kind := map[string]yaml.Kind{"!!map": yaml.MappingNode, "!!seq": yaml.SequenceNode}[c[1]]
		if kind == 0 {
			kind = yaml.ScalarNode
		}
		path := p.valueAt(line, kind, strings.TrimSuffix(c[2], "..."))
		want := map[string]string{
			"int":      "must be an integer",
			"bool":     "must be true or false",
			"string":   "must be a string",
			"[]string": "must be a list of strings",
		}[c[3]]
		switch {
		case want != "":
		case strings.HasPrefix(c[3], "[]"):
			want = "must be a list"
		default:
			want = "must be a mapping of fields"
		}
		got := map[string]string{"!!map": "a mapping", "!!seq": "a list"}[c[1]]
		if got == "" {
			got = strconv.Quote(c[2])
		}
		p.problems = append(p.problems, withLine(p.locate(path, want+", not "+got), line))
		return
	}
	p.problems = append(p.problems, Problem{Line: line, Msg: text})
}

func withLine(pr Problem, line int) Problem {
	pr.Line = line
	return pr
}

// keyAt returns the path of the mapping key named key on line.
func (p *parser) keyAt(line int, key string) string {
	for _, l := range p.nodes {
		if l.line == line && l.key == key {
			return l.path
		}
	}
	return key
}

// valueAt returns the path of the deepest value of the given kind starting
// on line whose text (for scalars) begins with prefix.
func (p *parser) valueAt(line int, kind yaml.Kind, prefix string) string {
	best := ""
	for _, l := range p.nodes {
		v := l.val
		if v.Line != line || v.Kind != kind || (kind == yaml.ScalarNode && !strings.HasPrefix(v.Value, prefix)) {
			continue
		}
		if len(l.path) >= len(best) {
			best = l.path
		}
	}
	return best
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
