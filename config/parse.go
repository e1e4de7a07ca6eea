package config

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

// Load reads the configuration file at path and parses it with Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a configuration file over the defaults. source names the
// file in errors. Decoding is strict: an unknown or repeated key, a value of
// the wrong type, an unreadable size or duration, or a second YAML document
// is an error. The error wraps a ValidationErrors listing every such problem
// with its field path and line.
//
// Parse neither consults the environment nor validates: call ApplyEnv, then
// Validate, on the result. An empty file yields the defaults, which lack the
// required fields (listener addresses, vendors, tenant address, keys).
func Parse(data []byte, source string) (*Config, error) {
	fail := func(errs ValidationErrors) (*Config, error) {
		return nil, fmt.Errorf("config %s: %w", source, errs)
	}

	// First pass: the node tree, for positions and syntax errors.
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return fail(ValidationErrors{syntaxError(err)})
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		return fail(ValidationErrors{{Line: line, Msg: "more than one YAML document; a configuration file holds exactly one"}})
	}
	src := &fileInfo{name: source, lines: make(map[string]int), active: make(map[*yaml.Node]bool)}
	src.walk(&root, "")
	if src.overflow {
		return fail(ValidationErrors{{Msg: fmt.Sprintf("more than %d fields after expanding aliases", maxLocated)}})
	}

	// Second pass: strict decoding into the defaults.
	c := base()
	sdec := yaml.NewDecoder(bytes.NewReader(data))
	sdec.KnownFields(true)
	if err := sdec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return fail(ValidationErrors{syntaxError(err)})
		}
		errs := make(ValidationErrors, 0, len(te.Errors))
		for _, msg := range te.Errors {
			errs = append(errs, src.typeError(msg))
		}
		return fail(errs)
	}

	// Elements of vendors are decoded from zero values: give them the
	// defaults of the fields the file leaves out.
	for i := range c.Vendors {
		fillAbsent(reflect.ValueOf(&c.Vendors[i]).Elem(), reflect.ValueOf(Vendor{Client: defaultClient()}),
			"vendors["+strconv.Itoa(i)+"]", src.has)
	}
	c.derive()
	c.src = src
	return c, nil
}

// fileInfo remembers where each field of a parsed file is.
type fileInfo struct {
	name  string
	lines map[string]int // field path → line of its key or list item
	nodes []located

	active   map[*yaml.Node]bool // aliases being expanded (cycle guard)
	overflow bool                // more than maxLocated nodes
}

// maxLocated bounds the fields walk records, so that aliases cannot make
// it expand a small file exponentially. A real configuration has a few
// hundred.
const maxLocated = 100_000

// located is one mapping value or list item of the file.
type located struct {
	path string
	key  string // last path segment, "" for list items
	line int    // line of the key (or item)
	val  *yaml.Node
}

// walk records the position of every field below n, whose path is path.
func (s *fileInfo) walk(n *yaml.Node, path string) {
	if s.overflow {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			s.walk(c, path)
		}
	case yaml.AliasNode:
		// Fields set through an alias are set: follow it, except into
		// itself (the decoder reports such a cycle).
		if n.Alias != nil && !s.active[n.Alias] {
			s.active[n.Alias] = true
			s.walk(n.Alias, path)
			delete(s.active, n.Alias)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" || k.Value == "<<" {
				s.walk(v, path)
				continue
			}
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			s.add(located{path: p, key: k.Value, line: k.Line, val: v})
			s.walk(v, p)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			s.add(located{path: p, line: v.Line, val: v})
			s.walk(v, p)
		}
	}
}

func (s *fileInfo) add(l located) {
	if len(s.nodes) >= maxLocated {
		s.overflow = true
		return
	}
	if _, ok := s.lines[l.path]; !ok {
		s.lines[l.path] = l.line
	}
	s.nodes = append(s.nodes, l)
}

// has reports whether the file sets the field at path.
func (s *fileInfo) has(path string) bool {
	_, ok := s.lines[path]
	return ok
}

// lineOf returns the line of path or, when the file leaves it out, of its
// closest ancestor present; 0 when none is.
func (s *fileInfo) lineOf(path string) int {
	if s == nil {
		return 0
	}
	for path != "" {
		if l, ok := s.lines[path]; ok {
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

var (
	reLine       = regexp.MustCompile(`^(?:yaml: )?line (\d+): (?:column (\d+): )?(.*)$`)
	reUnknown    = regexp.MustCompile(`^field (.+) not found in type (.+)$`)
	reRepeated   = regexp.MustCompile(`^field (.+) already set in type (.+)$`)
	reDuplicate  = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	reCannot     = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
	typeMessages = map[string]string{
		"int":      "must be an integer",
		"int64":    "must be an integer",
		"bool":     "must be true or false",
		"string":   "must be a string",
		"[]string": "must be a list of strings",
	}
)

// syntaxError turns a YAML syntax error into a FieldError with its line.
func syntaxError(err error) FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := reLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return FieldError{Line: line, Msg: "invalid YAML: " + m[3]}
	}
	return FieldError{Msg: "invalid YAML: " + msg}
}

// typeError turns one message of a *yaml.TypeError into a FieldError with
// the path of the field it is about.
func (s *fileInfo) typeError(msg string) FieldError {
	m := reLine.FindStringSubmatch(msg)
	if m == nil {
		return FieldError{Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	text := m[3]

	if u := reUnknown.FindStringSubmatch(text); u != nil {
		path := s.keyAt(line, u[1])
		fe := FieldError{Path: path, Line: line, Msg: fmt.Sprintf("unknown field %q", u[1])}
		if known := knownKeys(parentPath(path)); len(known) > 0 {
			fe.Msg += "; valid here: " + strings.Join(known, ", ")
		}
		return fe
	}
	if d := reDuplicate.FindStringSubmatch(text); d != nil {
		return FieldError{Path: s.keyAt(line, d[1]), Line: line, Msg: "set more than once (first on line " + d[2] + ")"}
	}
	if r := reRepeated.FindStringSubmatch(text); r != nil {
		return FieldError{Path: s.keyAt(line, r[1]), Line: line, Msg: "set more than once"}
	}
	if cu := reCannot.FindStringSubmatch(text); cu != nil {
		kind := map[string]yaml.Kind{"!!map": yaml.MappingNode, "!!seq": yaml.SequenceNode}[cu[1]]
		if kind == 0 {
			kind = yaml.ScalarNode
		}
		path := s.valueAt(line, 0, kind, strings.TrimSuffix(cu[2], "..."))
		want, ok := typeMessages[cu[3]]
		switch {
		case ok:
		case strings.HasPrefix(cu[3], "[]"):
			want = "must be a list"
		default:
			want = "must be a mapping of fields"
		}
		got := map[string]string{"!!map": "a mapping", "!!seq": "a list"}[cu[1]]
		if got == "" {
			got = strconv.Quote(cu[2])
		}
		return FieldError{Path: path, Line: line, Msg: want + ", not " + got}
	}
	// Our own unmarshalers report line and column.
	return FieldError{Path: s.valueAt(line, col, 0, ""), Line: line, Msg: text}
}

// keyAt returns the path of the mapping key named key on line.
func (s *fileInfo) keyAt(line int, key string) string {
	for _, l := range s.nodes {
		if l.line == line && l.key == key {
			return l.path
		}
	}
	return key
}

// valueAt returns the path of the value of the given kind (0: any) starting
// on line (at col, when not 0) whose text begins with prefix; the deepest
// such value, since an error is about the innermost node that failed.
func (s *fileInfo) valueAt(line, col int, kind yaml.Kind, prefix string) string {
	best := ""
	for _, l := range s.nodes {
		v := l.val
		switch {
		case v.Line != line,
			col != 0 && v.Column != col,
			kind != 0 && v.Kind != kind,
			kind == yaml.ScalarNode && !strings.HasPrefix(v.Value, prefix):
			continue
		}
		if len(l.path) > len(best) {
			best = l.path
		}
	}
	return best
}

// parentPath strips the last segment of path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// knownKeys lists the YAML keys of the struct at path in Config, or nil.
func knownKeys(path string) []string {
	t := reflect.TypeOf(Config{})
	for _, seg := range splitPath(path) {
		if seg == "[]" {
			if t.Kind() != reflect.Slice {
				return nil
			}
			t = t.Elem()
			continue
		}
		f, ok := fieldByKey(t, seg)
		if !ok {
			return nil
		}
		t = f.Type
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	return yamlKeys(t)
}

// splitPath splits "vendors[0].tls" into "vendors", "[]", "tls".
func splitPath(path string) []string {
	var segs []string
	for _, part := range strings.Split(path, ".") {
		if part == "" {
			continue
		}
		name, _, _ := strings.Cut(part, "[")
		if name != "" {
			segs = append(segs, name)
		}
		for range strings.Count(part, "[") {
			segs = append(segs, "[]")
		}
	}
	return segs
}

// yamlField is a struct field with its YAML key.
type yamlField struct {
	key    string
	inline bool
	index  int
}

func yamlFieldsOf(t reflect.Type) []yamlField {
	var out []yamlField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		out = append(out, yamlField{key: name, inline: strings.Contains(opts, "inline"), index: i})
	}
	return out
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for _, f := range yamlFieldsOf(t) {
		if f.inline {
			keys = append(keys, yamlKeys(t.Field(f.index).Type)...)
			continue
		}
		keys = append(keys, f.key)
	}
	return keys
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for _, f := range yamlFieldsOf(t) {
		if f.inline {
			if sf, ok := fieldByKey(t.Field(f.index).Type, key); ok {
				return sf, true
			}
			continue
		}
		if f.key == key {
			return t.Field(f.index), true
		}
	}
	return reflect.StructField{}, false
}

// fillAbsent copies into dst each field of def (same struct type) whose key
// below prefix is absent from the file.
func fillAbsent(dst, def reflect.Value, prefix string, present func(string) bool) {
	for _, f := range yamlFieldsOf(dst.Type()) {
		if f.inline {
			fillAbsent(dst.Field(f.index), def.Field(f.index), prefix, present)
			continue
		}
		if !present(prefix + "." + f.key) {
			dst.Field(f.index).Set(def.Field(f.index))
		}
	}
}
