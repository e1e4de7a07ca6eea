package yamlconf

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// index parses doc and indexes it with opts.
func index(t *testing.T, doc string, opts Options) *Index {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatalf("parsing %q: %v", doc, err)
	}
	return NewIndex(&root, opts)
}

const nested = `server:
  name: relay
  tls:
    cert: a.pem
vendors:
  - name: a
    ports: [25, 587]
  - name: b
`

func TestLineAndHas(t *testing.T) {
	ix := index(t, nested, Options{})
	for _, tc := range []struct {
		path string
		line int
		has  bool
	}{
		{"server", 1, true},
		{"server.name", 2, true},
		{"server.tls.cert", 4, true},
		{"server.tls.key", 3, false},        // absent: its parent's line
		{"server.tls.key.deeper", 3, false}, // absent two levels down
		{"vendors", 5, true},
		{"vendors[0]", 6, true},
		{"vendors[0].ports[1]", 7, true},
		{"vendors[0].ports[2]", 7, false},
		{"vendors[1].name", 8, true},
		{"vendors[2].name", 5, false}, // absent item: the list's line
		{"missing", 0, false},
		{"missing.child", 0, false},
		{"", 0, false},
	} {
		if got := ix.Line(tc.path); got != tc.line {
			t.Errorf("Line(%q) = %d, want %d", tc.path, got, tc.line)
		}
		if got := ix.Has(tc.path); got != tc.has {
			t.Errorf("Has(%q) = %v, want %v", tc.path, got, tc.has)
		}
	}
	if v := ix.Value("server.tls.cert"); v == nil || v.Value != "a.pem" {
		t.Errorf("Value(server.tls.cert) = %v, want the scalar a.pem", v)
	}
	if v := ix.Value("server.tls.key"); v != nil {
		t.Errorf("Value of an absent field = %v, want nil", v)
	}
}

func TestNilIndex(t *testing.T) {
	var ix *Index
	if ix.Has("a") || ix.Line("a") != 0 || ix.Value("a") != nil || ix.Overflow() ||
		ix.KeyAt(1, "a") != "a" || ix.ValueAt(1, 0, 0, "") != "" {
		t.Error("a nil Index is not empty")
	}
	if NewIndex(nil, Options{}).Has("") {
		t.Error("an Index of no document has a field")
	}
}

func TestKeyAt(t *testing.T) {
	ix := index(t, nested, Options{})
	for _, tc := range []struct {
		line int
		key  string
		want string
	}{
		{2, "name", "server.name"},
		{6, "name", "vendors[0].name"},
		{8, "name", "vendors[1].name"},
		{7, "ports", "vendors[0].ports"},
		{3, "name", "name"}, // no such key on the line: the key itself
		{99, "tls", "tls"},
	} {
		if got := ix.KeyAt(tc.line, tc.key); got != tc.want {
			t.Errorf("KeyAt(%d, %q) = %q, want %q", tc.line, tc.key, got, tc.want)
		}
	}
}

func TestValueAt(t *testing.T) {
	const doc = `a: {b: {c: x1}, d: [x2, x3]}
e: [[1, 2], {f: y}]
g: &g {h: z}
i: *g
`
	ix := index(t, doc, Options{})
	for _, tc := range []struct {
		line, col int
		kind      yaml.Kind
		prefix    string
		want      string // the deepest match; of equally deep ones the last
	}{
		{1, 0, yaml.ScalarNode, "x1", "a.b.c"},
		{1, 0, yaml.ScalarNode, "x", "a.d[1]"}, // equally deep
		{1, 0, yaml.MappingNode, "", "a.b"},    // deepest mapping
		{1, 0, yaml.SequenceNode, "", "a.d"},
		{1, 0, 0, "", "a.d[1]"},  // any kind
		{1, 25, 0, "", "a.d[1]"}, // by column: x3
		{2, 0, yaml.ScalarNode, "", "e[0][1]"},
		{2, 0, yaml.ScalarNode, "y", "e[1].f"},
		{3, 0, yaml.ScalarNode, "z", "i.h"}, // through the alias too
		{1, 0, yaml.ScalarNode, "nothing", ""},
		{9, 0, 0, "", ""},
	} {
		name := fmt.Sprintf("ValueAt(%d, %d, %v, %q)", tc.line, tc.col, tc.kind, tc.prefix)
		if got := ix.ValueAt(tc.line, tc.col, tc.kind, tc.prefix); got != tc.want {
			t.Errorf("%s = %q, want %q", name, got, tc.want)
		}
	}
}

func TestAliasesAndMerges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		doc   string
		opts  Options
		has   []string
		hasnt []string
		lines map[string]int
	}{
		{
			name:  "alias",
			doc:   "base: &b {x: 1, y: [2]}\nuse: *b\n",
			has:   []string{"base.x", "use.x", "use.y[0]"},
			lines: map[string]int{"use": 2, "use.x": 1, "use.y[0]": 1},
		},
		{
			name:  "merge key",
			doc:   "base: &b {x: 1}\nuse:\n  <<: *b\n  z: 2\n",
			has:   []string{"use.x", "use.z"},
			hasnt: []string{"use.<<"},
			lines: map[string]int{"use.x": 1, "use.z": 4},
		},
		{
			// A limitation: the mappings of a merged list are indexed as
			// items of the mapping merging them.
			name:  "merge of a list of mappings",
			doc:   "a: &a {x: 1}\nb: &b {y: 2}\nuse: {<<: [*a, *b]}\n",
			has:   []string{"use[0].x", "use[1].y"},
			hasnt: []string{"use.x", "use.<<"},
		},
		{
			name:  "quoted << is a key",
			doc:   "use: {\"<<\": {x: 1}}\n",
			has:   []string{"use.<<", "use.<<.x"},
			hasnt: []string{"use.x"},
		},
		{
			// The alias is followed once, not into itself again.
			name:  "alias into itself",
			doc:   "a: &a [1, *a]\n",
			has:   []string{"a[0]", "a[1]", "a[1][0]", "a[1][1]"},
			hasnt: []string{"a[1][1][0]"},
		},
		{
			name:  "mapping into itself",
			doc:   "a: &a {x: 1, y: *a}\n",
			has:   []string{"a.x", "a.y", "a.y.x", "a.y.y"},
			hasnt: []string{"a.y.y.x"},
		},
		{
			name:  "first occurrence wins",
			doc:   "a: 1\nb: 2\na: 3\n",
			has:   []string{"a", "b"},
			lines: map[string]int{"a": 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := index(t, tc.doc, tc.opts)
			for _, p := range tc.has {
				if !ix.Has(p) {
					t.Errorf("Has(%q) = false", p)
				}
			}
			for _, p := range tc.hasnt {
				if ix.Has(p) {
					t.Errorf("Has(%q) = true", p)
				}
			}
			for p, l := range tc.lines {
				if got := ix.Line(p); got != l {
					t.Errorf("Line(%q) = %d, want %d", p, got, l)
				}
			}
		})
	}
}

func TestMappingHook(t *testing.T) {
	const doc = "b: &b {name: base}\nlist:\n  - {<<: *b, name: own}\n  - *b\n"
	var got []string
	index(t, doc, Options{Mapping: func(path string, n *yaml.Node) {
		got = append(got, fmt.Sprintf("%s/%d", path, len(n.Content)/2))
	}})
	// Post-order: a merged mapping before the mapping merging it.
	want := "b/1 list[0]/1 list[0]/2 list[1]/1 /2"
	if s := strings.Join(got, " "); s != want {
		t.Errorf("mappings visited: %s, want %s", s, want)
	}
}

func TestOverflow(t *testing.T) {
	// Level i expands to 2^(i+2)-2 fields, plus its own key: 4082 in all.
	var b strings.Builder
	b.WriteString("l0: &l0 [x, x]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [*l%d, *l%d]\n", i, i, i-1, i-1)
	}
	doc := b.String()
	for _, tc := range []struct {
		limit    int
		overflow bool
	}{
		{0, false},
		{100, true},
		{4081, true},
		{4082, false},
		{100_000, false},
	} {
		ix := index(t, doc, Options{Limit: tc.limit})
		if got := ix.Overflow(); got != tc.overflow {
			t.Errorf("limit %d: Overflow() = %v, want %v", tc.limit, got, tc.overflow)
		}
	}
	if !index(t, doc, Options{}).Has("l9[1][1][1][1][1][1][1][1][1][1]") {
		t.Error("without a limit, the deepest expansion is missing")
	}
}

func TestSyntaxError(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want Diag
	}{
		{"a: [\n", Diag{Line: 1, Msg: "invalid YAML: did not find expected node content"}},
		{"a: 1\n b: 2\n", Diag{Line: 2, Msg: "invalid YAML: mapping values are not allowed in this context"}},
		{"a: *nope\n", Diag{Msg: "invalid YAML: unknown anchor 'nope' referenced"}},
	} {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(tc.doc), &n)
		if err == nil {
			t.Fatalf("%q: no error", tc.doc)
		}
		if got := SyntaxError(err); got != tc.want {
			t.Errorf("%q: SyntaxError(%v) = %+v, want %+v", tc.doc, err, got, tc.want)
		}
	}
	// A column after the line is dropped.
	got := SyntaxError(errors.New("yaml: line 3: column 7: oops"))
	if want := (Diag{Line: 3, Msg: "invalid YAML: oops"}); got != want {
		t.Errorf("SyntaxError with a column = %+v, want %+v", got, want)
	}
}

type inner struct {
	Port  int      `yaml:"port"`
	Size  int64    `yaml:"size"`
	On    bool     `yaml:"on"`
	Names []string `yaml:"names"`
	Pairs [][]int  `yaml:"pairs"`
}

type outer struct {
	Name  string  `yaml:"name"`
	Inner inner   `yaml:"inner"`
	List  []inner `yaml:"list"`
	Any   any     `yaml:"any"`
}

// TestDecodeTypeErrors checks the Diags of real *yaml.TypeError messages.
func TestDecodeTypeErrors(t *testing.T) {
	unknown := func(key, path, typeName string) string {
		return fmt.Sprintf("unknown %s at %s in %s", key, path, typeName)
	}
	for _, tc := range []struct {
		doc  string
		want []Diag
	}{
		{"inner: {prot: 25}\n", []Diag{{"inner.prot", 1, "unknown prot at inner.prot in yamlconf.inner"}}},
		{"name: a\nlist:\n  - x: 1\n", []Diag{{"list[0].x", 3, "unknown x at list[0].x in yamlconf.inner"}}},
		{"name: a\nname: b\n", []Diag{{"name", 2, "set more than once (first on line 1)"}}},
		{"inner:\n  port: x\n", []Diag{{"inner.port", 2, `must be an integer, not "x"`}}},
		{"inner: {size: [1]}\n", []Diag{{"inner.size", 1, "must be an integer, not a list"}}},
		{"inner: {on: maybe}\n", []Diag{{"inner.on", 1, `must be true or false, not "maybe"`}}},
		{"inner: {names: {a: 1}}\n", []Diag{{"inner.names", 1, "must be a list of strings, not a mapping"}}},
		{"inner: {names: [[x]]}\n", []Diag{{"inner.names[0]", 1, "must be a string, not a list"}}},
		{"inner: {pairs: [x]}\n", []Diag{{"inner.pairs[0]", 1, `must be a list, not "x"`}}},
		{"inner: [1]\n", []Diag{{"inner", 1, "must be a mapping of fields, not a list"}}},
		// A long value is cut short by yaml; it is still found.
		{"inner: {port: abcdefghijklmnop}\n", []Diag{{"inner.port", 1, `must be an integer, not "abcdefg..."`}}},
		// A value reached through an alias is placed at its deepest path.
		{"inner: &i {port: x}\nlist: [*i]\n", []Diag{
			{"list[0].port", 1, `must be an integer, not "x"`},
			{"list[0].port", 1, `must be an integer, not "x"`},
		}},
		// Through a merge key: the path in the mapping merging it.
		{"base: &b {port: x}\nlist:\n  - {<<: *b}\n", []Diag{
			{"base", 1, "unknown base at base in yamlconf.outer"},
			{"list[0].port", 1, `must be an integer, not "x"`},
		}},
	} {
		ix, got := Decode([]byte(tc.doc), new(outer), Options{Unknown: unknown})
		if ix == nil {
			t.Errorf("%q: no index", tc.doc)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: Decode:\n got  %+v\n want %+v", tc.doc, got, tc.want)
		}
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		doc   string
		opts  Options
		index bool // an index is returned
		want  []Diag
	}{
		{name: "valid", doc: "name: a\ninner: {port: 25}\n", index: true},
		{name: "empty", doc: "", index: true},
		{name: "comment only", doc: "# nothing\n", index: true},
		{name: "syntax error", doc: "name: [a\n", want: []Diag{{Line: 1, Msg: "invalid YAML: did not find expected ',' or ']'"}}},
		{name: "second document", doc: "name: a\n---\nname: b\n", opts: Options{Document: "a test file"},
			want: []Diag{{Line: 2, Msg: "more than one YAML document; a test file holds exactly one"}}},
		{name: "bad second document", doc: "name: a\n---\n[\n", opts: Options{Document: "a test file"},
			want: []Diag{{Msg: "more than one YAML document; a test file holds exactly one"}}},
		{name: "overflow", doc: "list: [{}, {}, {}]\n", opts: Options{Limit: 3}, index: true,
			want: []Diag{{Msg: "more than 3 fields after expanding aliases"}}},
		{name: "at the limit", doc: "list: [{}, {}]\n", opts: Options{Limit: 3}, index: true},
		{name: "default unknown wording", doc: "nmae: a\n", index: true,
			want: []Diag{{Path: "nmae", Line: 1, Msg: "unknown field"}}},
		{name: "an alias cycle", doc: "any: &l [*l]\n", index: true,
			want: []Diag{{Msg: "invalid YAML: anchor 'l' value contains itself"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out outer
			ix, got := Decode([]byte(tc.doc), &out, tc.opts)
			if (ix != nil) != tc.index {
				t.Errorf("index %v, want one: %v", ix, tc.index)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Decode:\n got  %+v\n want %+v", got, tc.want)
			}
		})
	}
	var out outer
	ix, diags := Decode([]byte("name: a\ninner:\n  port: 25\n"), &out, Options{})
	if len(diags) != 0 || out.Name != "a" || out.Inner.Port != 25 {
		t.Errorf("Decode: %+v into %+v", diags, out)
	}
	if ix.Line("inner.port") != 3 {
		t.Errorf("Line(inner.port) = %d, want 3", ix.Line("inner.port"))
	}
}

func TestTypeErrorMessages(t *testing.T) {
	unknown := func(key, path, typeName string) string { return "unknown " + key }
	ix := index(t, "a:\n  b: [x, 12]\n  c: {d: 1}\n", Options{Unknown: unknown})
	for _, tc := range []struct {
		msg  string
		want Diag
	}{
		{"no line here", Diag{Msg: "no line here"}},
		{"line 3: field d not found in type x.T", Diag{"a.c.d", 3, "unknown d"}},
		{"line 3: field e not found in type x.T", Diag{"e", 3, "unknown e"}},
		{"line 3: field d already set in type x.T", Diag{"a.c.d", 3, "set more than once"}},
		{`line 3: mapping key "c" already defined at line 1`, Diag{"a.c", 3, "set more than once (first on line 1)"}},
		{"line 2: cannot unmarshal !!int `12` into bool", Diag{"a.b[1]", 2, `must be true or false, not "12"`}},
		{"line 2: cannot unmarshal !!seq into x.T", Diag{"a.b", 2, "must be a mapping of fields, not a list"}},
		// A custom unmarshaler's message with a column: the value there.
		{"line 2: column 10: not a size", Diag{"a.b[1]", 2, "not a size"}},
		{"line 2: column 7: not a size", Diag{"a.b[0]", 2, "not a size"}},
		{"line 2: something else", Diag{"a.b[1]", 2, "something else"}},
	} {
		if got := ix.TypeError(tc.msg); got != tc.want {
			t.Errorf("TypeError(%q) = %+v, want %+v", tc.msg, got, tc.want)
		}
	}
}
