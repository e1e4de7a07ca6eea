package rules

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/recallrelay/recallrelay/headers"
)

// corpusDir holds real Exchange Online messages (LF line endings), outside
// the repository: ../shared from the repository root.
const corpusDir = "../../shared/corpus/exchange"

// corpusFiles returns the corpus file names matching pattern, skipping the
// test when the corpus is absent.
func corpusFiles(t testing.TB, pattern string) []string {
	t.Helper()
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("Exchange corpus not available at %s: %v", corpusDir, err)
	}
	names, err := filepath.Glob(filepath.Join(corpusDir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatalf("no corpus file matches %s", pattern)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

// corpusMessage reads a corpus message, converts it to CRLF and returns
// its header block and body.
func corpusMessage(t testing.TB, name string) (*headers.Header, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
	h, body, err := headers.ReadHeader(bytes.NewReader(data), 1<<20)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return h, b
}
