package config

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/recallrelay/recallrelay/internal/yamlconf"
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

	// Strict decoding over the defaults; the index places its errors.
	c := base()
	pos, diags := yamlconf.Decode(data, c, yamlconf.Options{Document: "a configuration file",
		Limit: maxLocated, Unknown: unknownField})
	if len(diags) > 0 {
		errs := make(ValidationErrors, len(diags))
		for i, d := range diags {
			errs[i] = FieldError(d)
		}
		return fail(errs)
	}
	src := &fileInfo{name: source, pos: pos}

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
	name string
	pos  *yamlconf.Index
}

// maxLocated bounds the fields the index records, so that aliases cannot
// make it expand a small file exponentially. A real configuration has a few
// hundred.
const maxLocated = 100_000

// has reports whether the file sets the field at path; false for a Config
// not parsed.
func (s *fileInfo) has(path string) bool {
	return s != nil && s.pos.Has(path)
}

// lineOf returns the line of path or, when the file leaves it out, of its
// closest ancestor present; 0 when none is, or for a Config not parsed.
func (s *fileInfo) lineOf(path string) int {
	if s == nil {
		return 0
	}
	return s.pos.Line(path)
}

// unknownField words the error for a key no field of the Config has.
func unknownField(key, path, _ string) string {
	msg := fmt.Sprintf("unknown field %q", key)
	if known := knownKeys(parentPath(path)); len(known) > 0 {
		msg += "; valid here: " + strings.Join(known, ", ")
	}
	return msg
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
