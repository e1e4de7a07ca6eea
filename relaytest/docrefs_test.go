package relaytest

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The documentation of relaytest and cmd/fakemta is read by consumers who
// have the module and nothing around it (go get, pkg.go.dev): it points to
// no file outside the module, every docs/*.md it names exists, and every
// section it names by its title ("Title" in docs/x.md, or docs/x.md,
// "Title") is a heading of that file.
func TestDocReferencesStayInModule(t *testing.T) {
	t.Parallel()
	outside := regexp.MustCompile(`\.\./|\bshared/(docs|corpus)\b`)
	docRef := regexp.MustCompile(`\bdocs/([A-Za-z0-9_.-]+\.md)`)
	sectionAfter := regexp.MustCompile(`\bdocs/([A-Za-z0-9_.-]+\.md)(?: in this module)?,? "([^"]+)"`)
	sectionBefore := regexp.MustCompile(`"([^"]+)" in this (?:repository|module)'s docs/([A-Za-z0-9_.-]+\.md)`)
	// headings maps the titles of the headings of docs/doc to true, with
	// and without a trailing label such as "(documented and observed)";
	// nil when the file does not exist.
	headings := func(doc string) map[string]bool {
		data, err := os.ReadFile(filepath.Join("..", "docs", doc))
		if err != nil {
			return nil
		}
		out := make(map[string]bool)
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "#") {
				title := strings.TrimSpace(strings.TrimLeft(l, "#"))
				out[title] = true
				if i := strings.LastIndex(title, " ("); i > 0 && strings.HasSuffix(title, ")") {
					out[title[:i]] = true
				}
			}
		}
		return out
	}

	refs := 0
	for _, dir := range []string{".", filepath.Join("..", "cmd", "fakemta")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			for _, cg := range f.Comments {
				text := strings.Join(strings.Fields(cg.Text()), " ")
				if m := outside.FindString(text); m != "" {
					t.Errorf("%s: a comment points outside the module (%q): ...%s...", file, m, excerpt(text, m))
				}
				for _, m := range docRef.FindAllStringSubmatch(text, -1) {
					refs++
					if headings(m[1]) == nil {
						t.Errorf("%s: docs/%s does not exist in the module", file, m[1])
					}
				}
				for _, m := range sectionAfter.FindAllStringSubmatch(text, -1) {
					if !headings(m[1])[m[2]] {
						t.Errorf("%s: docs/%s has no section %q", file, m[1], m[2])
					}
				}
				for _, m := range sectionBefore.FindAllStringSubmatch(text, -1) {
					if !headings(m[2])[m[1]] {
						t.Errorf("%s: docs/%s has no section %q", file, m[2], m[1])
					}
				}
			}
		}
	}
	if refs == 0 {
		t.Error("no docs/ reference found: the scan is broken")
	}
}

// excerpt returns the part of text around the first occurrence of s.
func excerpt(text, s string) string {
	i := strings.Index(text, s)
	return text[max(0, i-60):min(len(text), i+len(s)+60)]
}
