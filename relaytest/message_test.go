package relaytest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestToCRLF(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\r\nb\nc", "a\r\nb\r\nc\r\n"},
		{"\n\n", "\r\n\r\n"},
		{"bare\rcr\n", "bare\rcr\r\n"},
	}
	for _, tc := range tests {
		if got := string(ToCRLF([]byte(tc.in))); got != tc.want {
			t.Errorf("ToCRLF(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLoadDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{
		"b.eml":    "From: Adele Vance <AdeleV@contoso.com>\nTo: a@contoso.com, \"Lee, Gu\" <LeeG@contoso.com>\nCc: A@contoso.com, c@contoso.com\nSubject: lf\n\nline 1\nline 2",
		"a.eml":    "Sender: s@contoso.com\r\nTo: x@contoso.com\r\n\r\nalready crlf\r\n",
		"c.EML":    "Return-Path: <bounce@contoso.com>\nSubject: nobody\n\nbody\n",
		"d.eml":    "From: =?gb2312?B?1cXI/Q==?= <zhang@contoso.com>\nTo: =?big5?B?pOik5Q==?= <wang@contoso.com>\n\nx\n",
		"e.eml":    "From: josé@contoso.com\nTo: zoë@contoso.com\n\nutf8\n",
		"f.eml":    "Subject: no addresses at all\n\nx\n",
		"g.eml":    "From: broken <<x@contoso.com>\nTo: <y@contoso.com> garbage <z@contoso.com\n\nx\n",
		"skip.txt": "From: x@y\n\nnot an eml\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.eml"), 0o755); err != nil {
		t.Fatal(err)
	}

	msgs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, from, to string
		utf8           bool
		data           string
	}{
		{"a", "s@contoso.com", "[x@contoso.com]", false, files["a.eml"]},
		{"b", "AdeleV@contoso.com", "[a@contoso.com LeeG@contoso.com c@contoso.com]", false,
			"From: Adele Vance <AdeleV@contoso.com>\r\nTo: a@contoso.com, \"Lee, Gu\" <LeeG@contoso.com>\r\nCc: A@contoso.com, c@contoso.com\r\nSubject: lf\r\n\r\nline 1\r\nline 2\r\n"},
		{"c", "bounce@contoso.com", "[" + DefaultFallbackRcpt + "]", false, ""},
		{"d", "zhang@contoso.com", "[wang@contoso.com]", false, ""},
		{"e", "josé@contoso.com", "[zoë@contoso.com]", true, ""},
		{"f", DefaultFallbackFrom, "[" + DefaultFallbackRcpt + "]", false, ""},
		{"g", "x@contoso.com", "[y@contoso.com]", false, ""},
	}
	if len(msgs) != len(want) {
		t.Fatalf("loaded %d messages, want %d", len(msgs), len(want))
	}
	for i, w := range want {
		m := msgs[i]
		if m.Name != w.name || m.Kind != "file" || m.From != w.from || fmt.Sprint(m.To) != w.to || m.UTF8 != w.utf8 {
			t.Errorf("message %d = %q %q from %q to %q utf8=%v, want %q from %q to %s utf8=%v",
				i, m.Name, m.Kind, m.From, m.To, m.UTF8, w.name, w.from, w.to, w.utf8)
		}
		if w.data != "" && string(m.Data) != w.data {
			t.Errorf("%s: data %q, want %q", m.Name, m.Data, w.data)
		}
		if bytes.Contains(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("%s: bare LF left", m.Name)
		}
	}

	l := Loader{FallbackFrom: "relay@contoso.com", FallbackRcpts: []string{"r1@contoso.com", "r2@contoso.com"}}
	m, err := l.LoadFile(filepath.Join(dir, "f.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if m.From != "relay@contoso.com" || fmt.Sprint(m.To) != "[r1@contoso.com r2@contoso.com]" {
		t.Errorf("fallbacks not used: %q %q", m.From, m.To)
	}

	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing directory loaded")
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.eml")); err == nil {
		t.Error("missing file loaded")
	}
}

func TestLoadCorpus(t *testing.T) {
	t.Parallel()
	msgs := loadCorpus(t)
	for i, m := range msgs {
		raw, err := os.ReadFile(filepath.Join(corpusDir, m.Name+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.Data, ToCRLF(raw)) || bytes.Count(m.Data, []byte("\r\n")) < bytes.Count(raw, []byte("\n")) {
			t.Errorf("%s: data is not the file with CRLF line endings", m.Name)
		}
		if m.From == DefaultFallbackFrom || len(m.To) == 0 || m.To[0] == DefaultFallbackRcpt {
			t.Errorf("%s: envelope %q %q from fallbacks", m.Name, m.From, m.To)
		}
		if i > 0 && msgs[i-1].Name >= m.Name {
			t.Errorf("not sorted: %s before %s", msgs[i-1].Name, m.Name)
		}
	}
}
