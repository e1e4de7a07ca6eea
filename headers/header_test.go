package headers

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func TestReadHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		wantErr error
		fields  int
		body    string
	}{
		{name: "simple", in: crlf("A: 1\nB: 2\n\nbody\n"), max: 1000, fields: 2, body: crlf("body\n")},
		{name: "folded", in: crlf("Subject: a\n b\n\tc\nX: y\n\nbody"), max: 1000, fields: 2, body: "body"},
		{name: "no body", in: crlf("A: 1\n\n"), max: 1000, fields: 1, body: ""},
		{name: "header only, no blank line", in: crlf("A: 1\n"), max: 1000, fields: 1, body: ""},
		{name: "body with header-like lines", in: crlf("A: 1\n\nB: 2\n\n"), max: 1000, fields: 1, body: crlf("B: 2\n\n")},
		{name: "exactly at limit", in: crlf("A: 1\n\nx"), max: 8, fields: 1, body: "x"},
		{name: "one byte over", in: crlf("A: 12\n\nx"), max: 8, wantErr: ErrHeaderTooLarge},
		{name: "long single line", in: "A: " + strings.Repeat("x", 300000) + "\r\n\r\n", max: 1 << 10, wantErr: ErrHeaderTooLarge},
		{name: "line without colon", in: crlf("A: 1\nnot a header\n\nbody"), max: 1000, wantErr: ErrMalformedHeader},
		{name: "continuation first", in: crlf(" A: 1\n\n"), max: 1000, wantErr: ErrMalformedHeader},
		{name: "eof after last field", in: "A: 1", max: 1000, fields: 1, body: ""},
		{name: "bad key byte", in: crlf("A\x01: 1\n\n"), max: 1000, wantErr: ErrMalformedHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, body, err := ReadHeader(strings.NewReader(tt.in), tt.max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Len() != tt.fields {
				t.Errorf("fields = %d, want %d", h.Len(), tt.fields)
			}
			rest, _ := io.ReadAll(body)
			if string(rest) != tt.body {
				t.Errorf("body = %q, want %q", rest, tt.body)
			}
		})
	}
}

// The header block must come out of ReadHeader+WriteTo byte-identical for
// every real Exchange message: that is what lets the relay record and
// restore fields to the byte. And every one is well within the default
// field limit.
func TestHeaderRoundTripCorpus(t *testing.T) {
	files := corpusFiles(t)
	most, mostFile := 0, ""
	defer func() {
		t.Logf("most fields: %d (%s)", most, filepath.Base(mostFile))
		if most > DefaultMaxHeaderFields/4 {
			t.Errorf("%s has %d fields: the default limit %d leaves too little room", mostFile, most, DefaultMaxHeaderFields)
		}
	}()
	for _, f := range files {
		raw := readCorpus(t, f)
		h, body, err := ReadHeader(bytes.NewReader(raw), 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if h.Len() > most {
			most, mostFile = h.Len(), f
		}
		var out bytes.Buffer
		if _, err := h.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(body)
		out.Write(rest)
		if !bytes.Equal(out.Bytes(), raw) {
			t.Errorf("%s: round trip changed the message", filepath.Base(f))
		}
		if h.Size() != bytes.Index(raw, []byte("\r\n\r\n"))+4 {
			t.Errorf("%s: Size() = %d, want %d", filepath.Base(f), h.Size(), bytes.Index(raw, []byte("\r\n\r\n"))+4)
		}
	}
}

func corpusFiles(t testing.TB) []string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "corpus", "exchange")
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) == 0 {
		t.Skipf("no Exchange corpus at %s: skipping", dir)
	}
	return files
}

func readCorpus(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func TestCaptureKeepsSpellingAndOrder(t *testing.T) {
	in := crlf("Received: x\nx-ms-exchange-crosspremises-authas: Internal\nMessage-Id: <a@b>\nX-MS-Exchange-CrossPremises-TransportTrafficType: Email\nSubject: s\nX-MS-Exchange-CrossPremises-transporttraffictype: Email\nThread-Topic: long\n topic\n\nbody")
	h, _, err := ReadHeader(strings.NewReader(in), 1000)
	if err != nil {
		t.Fatal(err)
	}
	got := h.Capture(MustMatcher(DefaultCapture...))
	want := []string{
		"x-ms-exchange-crosspremises-authas: Internal\r\n",
		"Message-Id: <a@b>\r\n",
		"X-MS-Exchange-CrossPremises-TransportTrafficType: Email\r\n",
		"X-MS-Exchange-CrossPremises-transporttraffictype: Email\r\n",
		"Thread-Topic: long\r\n topic\r\n",
	}
	if len(got) != len(want) {
		t.Fatalf("captured %d fields, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if string(got[i].Raw) != want[i] {
			t.Errorf("field %d = %q, want %q", i, got[i].Raw, want[i])
		}
	}
	if got[0].Name != "x-ms-exchange-crosspremises-authas" {
		t.Errorf("name spelling not kept: %q", got[0].Name)
	}
	if h.MessageID() != "<a@b>" {
		t.Errorf("MessageID = %q", h.MessageID())
	}
}

func TestNewFieldRefusesInjection(t *testing.T) {
	for _, v := range []string{"a\r\nBcc: x", "a\nb", "a\rb", "a\x00b"} {
		if _, err := NewField("X-Test", v); err == nil {
			t.Errorf("NewField accepted %q", v)
		}
	}
	for _, n := range []string{"", "A B", "A:B", "Ä"} {
		if _, err := NewField(n, "v"); err == nil {
			t.Errorf("NewField accepted name %q", n)
		}
	}
	long := strings.Repeat("word ", 60)
	f, err := NewField("X-Long", long)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidRawField(f.Raw) {
		t.Fatalf("folded field invalid: %q", f.Raw)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(f.Raw), "\r\n"), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line longer than 78: %q", line)
		}
	}
	h, _, err := ReadHeader(bytes.NewReader(append(f.Raw, "\r\n"...)), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Get("X-Long"); got != strings.TrimSpace(long) {
		t.Errorf("unfolded value = %q", got)
	}
}

func TestValidRawField(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{"A: b\r\n", true},
		{"A: b\r\n c\r\n", true},
		{"A: b\r\n\tc\r\n", true},
		{"A: b", false},
		{"A: b\n", false},
		{"A: b\r\nB: c\r\n", false},
		{"A: b\r\n \r\n", false},
		{"A: b\rc\r\n", false},
		{"A: b\x00\r\n", false},
		{": b\r\n", false},
		{"A b: c\r\n", false},
		{"no colon\r\n", false},
	}
	for _, tt := range tests {
		if got := ValidRawField([]byte(tt.raw)); got != tt.want {
			t.Errorf("ValidRawField(%q) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func TestTraceFieldSanitizes(t *testing.T) {
	f := Trace{Helo: "evil)\r\nBcc: x (", ClientIP: "192.0.2.1", By: "relay.example", With: "ESMTPS", TLS: "TLS1.3 TLS_AES_128_GCM_SHA256", ID: "abc", For: "a@b"}.Field()
	if !ValidRawField(f.Raw) {
		t.Fatalf("invalid Received: %q", f.Raw)
	}
	s := string(f.Raw)
	if strings.Contains(s, "Bcc: x") || strings.Count(s, "(") != 2 {
		t.Errorf("client text not sanitized: %q", s)
	}
	if !strings.Contains(strings.ReplaceAll(s, "\r\n", ""), "(TLS1.3 TLS_AES_128_GCM_SHA256)") {
		t.Errorf("TLS description lost: %q", s)
	}
}

func TestMatcher(t *testing.T) {
	m := MustMatcher("Message-ID", "X-MS-Exchange-CrossPremises-*")
	for name, want := range map[string]bool{
		"message-id": true, "MESSAGE-ID": true, "Message-ID-x": false,
		"x-ms-exchange-crosspremises-authas": true, "X-MS-Exchange-CrossPremises-": true,
		"X-MS-Exchange-CrossPremise": false, "X-MS-Exchange-Organization-AuthAs": false,
	} {
		if got := m.Match(name); got != want {
			t.Errorf("Match(%q) = %v, want %v", name, got, want)
		}
	}
	for _, bad := range []string{"", "*", "A*B", "A B*", "A:*"} {
		if _, err := NewMatcher([]string{bad}); err == nil {
			t.Errorf("NewMatcher accepted %q", bad)
		}
	}
}
