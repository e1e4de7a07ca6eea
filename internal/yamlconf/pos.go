package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Options adjust NewIndex and Decode.
type Options struct {
	// Limit bounds the number of fields recorded, so that aliases cannot
	// make a small document expand exponentially; past it the index is
	// incomplete and Overflow reports true. 0 or less means no bound.
	Limit int
	// Mapping, if set, is called with each mapping node the walk meets
	// and its path, after the fields below it are recorded: a mapping
	// merged into another is reported before it. A node reached through
	// aliases is reported each time, with the path it is reached by.
	Mapping func(path string, n *yaml.Node)

	// Unknown words TypeError's message for an unknown field; nil means
	// "unknown field".
	Unknown Unknown
	// Document names the document in Decode's messages ("a rules file").
	Document string
}

// Decode decodes data, which must hold one YAML document or none, into
// out, strictly: an unknown or repeated key or a value of the wrong type
// is an error, and so are a second document and more fields than
// opts.Limit. It returns the index of the document, nil when it is not
// YAML, and every problem found, none when out holds the document.
func Decode(data []byte, out any, opts Options) (*Index, []Diag) {
	// First pass: the node tree, for positions and syntax errors.
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, []Diag{SyntaxError(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		return nil, []Diag{{Line: line, Msg: "more than one YAML document; " + opts.Document + " holds exactly one"}}
	}
	ix := NewIndex(&root, opts)
	if ix.Overflow() {
		return ix, []Diag{{Msg: fmt.Sprintf("more than %d fields after expanding aliases", opts.Limit)}}
	}

	// Second pass: strict decoding into out.
	sdec := yaml.NewDecoder(bytes.NewReader(data))
	sdec.KnownFields(true)
	if err := sdec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return ix, []Diag{SyntaxError(err)}
		}
		diags := make([]Diag, 0, len(te.Errors))
		for _, msg := range te.Errors {
			diags = append(diags, ix.TypeError(msg))
		}
		return ix, diags
	}
	return ix, nil
}

// Index knows where each field of a document is. The zero value and a
// nil *Index are empty.
type Index struct {
	opts  Options
	lines map[string]int        // path → line of its key or list item
	vals  map[string]*yaml.Node // path → its value
	nodes []field               // every field, in document order

	active   map[*yaml.Node]bool // aliases being expanded (cycle guard)
	overflow bool
}

// field is one mapping value or list item of the document.
type field struct {
	path string
	key  string // last path segment, "" for list items
	line int    // line of the key (or item)
	val  *yaml.Node
}

// NewIndex records the path and line of every field below root, usually a
// document node. Aliases are followed (fields set through an alias are
// set), except into themselves, and the fields of merged mappings ("<<")
// belong to the mapping that merges them.
func NewIndex(root *yaml.Node, opts Options) *Index {
	ix := &Index{opts: opts, lines: make(map[string]int), vals: make(map[string]*yaml.Node),
		active: make(map[*yaml.Node]bool)}
	if root != nil {
		ix.walk(root, "")
	}
	return ix
}

func (ix *Index) walk(n *yaml.Node, path string) {
	if ix.overflow {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			ix.walk(c, path)
		}
	case yaml.AliasNode:
		// The decoder reports an alias to itself.
		if n.Alias != nil && !ix.active[n.Alias] {
			ix.active[n.Alias] = true
			ix.walk(n.Alias, path)
			delete(ix.active, n.Alias)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				ix.walk(v, path)
				continue
			}
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			ix.add(field{path: p, key: k.Value, line: k.Line, val: v})
			ix.walk(v, p)
		}
		if ix.opts.Mapping != nil {
			ix.opts.Mapping(path, n)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			ix.add(field{path: p, line: v.Line, val: v})
			ix.walk(v, p)
		}
	}
}

func (ix *Index) add(f field) {
	if ix.opts.Limit > 0 && len(ix.nodes) >= ix.opts.Limit {
		ix.overflow = true
		return
	}
	if _, ok := ix.lines[f.path]; !ok {
		ix.lines[f.path] = f.line
		ix.vals[f.path] = f.val
	}
	ix.nodes = append(ix.nodes, f)
}

// Overflow reports whether the document has more fields than the limit,
// counting those reached through aliases; the index is then incomplete.
func (ix *Index) Overflow() bool {
	return ix != nil && ix.overflow
}

// Has reports whether the document sets the field at path.
func (ix *Index) Has(path string) bool {
	if ix == nil {
		return false
	}
	_, ok := ix.lines[path]
	return ok
}

// Line returns the line of the field at path or, when the document leaves
// it out, of its closest ancestor present; 0 when none is.
func (ix *Index) Line(path string) int {
	if ix == nil {
		return 0
	}
	for path != "" {
		if l, ok := ix.lines[path]; ok {
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

// Value returns the value node of the field at path (an alias node when it
// is set through one), or nil when the document leaves it out.
func (ix *Index) Value(path string) *yaml.Node {
	if ix == nil {
		return nil
	}
	return ix.vals[path]
}

// KeyAt returns the path of the mapping key named key on line, or key
// itself when there is none.
func (ix *Index) KeyAt(line int, key string) string {
	if ix != nil {
		for _, f := range ix.nodes {
			if f.line == line && f.key == key {
				return f.path
			}
		}
	}
	return key
}

// ValueAt returns the path of the value of the given kind (0: any)
// starting on line (at col, when not 0) whose text, for kind ScalarNode,
// begins with prefix; the deepest such value, since an error is about the
// innermost node that failed. "" when there is none.
func (ix *Index) ValueAt(line, col int, kind yaml.Kind, prefix string) string {
	if ix == nil {
		return ""
	}
	best := ""
	for _, f := range ix.nodes {
		v := f.val
		switch {
		case v.Line != line,
			col != 0 && v.Column != col,
			kind != 0 && v.Kind != kind,
			kind == yaml.ScalarNode && !strings.HasPrefix(v.Value, prefix):
			continue
		}
		if len(f.path) >= len(best) {
			best = f.path
		}
	}
	return best
}

// Diag is a decode error placed in the document.
type Diag struct {
	// Path is the path of the field the error is about; "" when unknown or
	// about the document as a whole.
	Path string
	// Line is the line yaml reported, 0 when it reported none.
	Line int
	// Msg explains the error.
	Msg string
}

var (
	reLine      = regexp.MustCompile(`^(?:yaml: )?line (\d+): (?:column (\d+): )?(.*)$`)
	reUnknown   = regexp.MustCompile(`^field (.+) not found in type (.+)$`)
	reRepeated  = regexp.MustCompile(`^field (.+) already set in type (.+)$`)
	reDuplicate = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	reCannot    = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")

	// typeMessages say what a value decoded into a Go type must be.
	typeMessages = map[string]string{
		"int":      "must be an integer",
		"int64":    "must be an integer",
		"bool":     "must be true or false",
		"string":   "must be a string",
		"[]string": "must be a list of strings",
	}
	kinds = map[string]yaml.Kind{"!!map": yaml.MappingNode, "!!seq": yaml.SequenceNode}
	nouns = map[string]string{"!!map": "a mapping", "!!seq": "a list"}
)

// SyntaxError turns an error of yaml that is not a *yaml.TypeError (a
// syntax error, mostly) into a Diag with its line and no path.
func SyntaxError(err error) Diag {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := reLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Diag{Line: line, Msg: "invalid YAML: " + m[3]}
	}
	return Diag{Msg: "invalid YAML: " + msg}
}

// Unknown words the message for a field that the Go type yaml decodes its
// mapping into lacks: key is the field's key, path where it would be and
// typeName the type as yaml names it ("config.Config").
type Unknown func(key, path, typeName string) string

// TypeError turns one message of a *yaml.TypeError (its Errors) into a
// Diag with the path of the field it is about: an unknown field (worded by
// the Index's Options.Unknown), a field set twice, a value of the wrong
// type, or a message "line L: column C: text" of a custom unmarshaler,
// which is about the value at that line and column. A message without a
// line is kept as it is.
func (ix *Index) TypeError(msg string) Diag {
	m := reLine.FindStringSubmatch(msg)
	if m == nil {
		return Diag{Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	text := m[3]

	if u := reUnknown.FindStringSubmatch(text); u != nil {
		path := ix.KeyAt(line, u[1])
		msg := "unknown field"
		if ix != nil && ix.opts.Unknown != nil {
			msg = ix.opts.Unknown(u[1], path, u[2])
		}
		return Diag{Path: path, Line: line, Msg: msg}
	}
	if d := reDuplicate.FindStringSubmatch(text); d != nil {
		return Diag{Path: ix.KeyAt(line, d[1]), Line: line, Msg: "set more than once (first on line " + d[2] + ")"}
	}
	if r := reRepeated.FindStringSubmatch(text); r != nil {
		return Diag{Path: ix.KeyAt(line, r[1]), Line: line, Msg: "set more than once"}
	}
	if c := reCannot.FindStringSubmatch(text); c != nil {
		kind, ok := kinds[c[1]]
		if !ok {
			kind = yaml.ScalarNode
		}
		path := ix.ValueAt(line, 0, kind, strings.TrimSuffix(c[2], "..."))
		want, ok := typeMessages[c[3]]
		switch {
		case ok:
		case strings.HasPrefix(c[3], "[]"):
			want = "must be a list"
		default:
			want = "must be a mapping of fields"
		}
		got, ok := nouns[c[1]]
		if !ok {
			got = strconv.Quote(c[2])
		}
		return Diag{Path: path, Line: line, Msg: want + ", not " + got}
	}
	return Diag{Path: ix.ValueAt(line, col, 0, ""), Line: line, Msg: text}
}
