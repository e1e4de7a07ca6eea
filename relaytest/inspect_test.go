package relaytest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-message"
)

// mustParts returns Parts(data), failing the test on error.
func mustParts(t testing.TB, data []byte) []Part {
	t.Helper()
	ps, err := Parts(data)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestHeaderValuesAndRawFields(t *testing.T) {
	t.Parallel()
	msg := []byte("Received: from a\r\n\tby b; Mon, 3 Mar 2025 08:00:00 +0000\r\n" +
		"X-Tag: one\r\n" +
		"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
		"x-tag:\r\n  two\r\n" +
		"X-TAG: three\n" +
		"\r\n" +
		"X-Tag: in the body\r\n")
	tests := []struct {
		name        string
		values, raw []string
	}{
		{"X-Tag", []string{"one", "two", "three"}, []string{"X-Tag: one\r\n", "x-tag:\r\n  two\r\n", "X-TAG: three\n"}},
		{"received", []string{"from a by b; Mon, 3 Mar 2025 08:00:00 +0000"}, []string{"Received: from a\r\n\tby b; Mon, 3 Mar 2025 08:00:00 +0000\r\n"}},
		{"Subject", []string{"=?utf-8?q?Gr=C3=BC=C3=9Fe?="}, []string{"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"}},
		{"Message-ID", nil, nil},
	}
	for _, tc := range tests {
		if got := HeaderValues(msg, tc.name); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.values) {
			t.Errorf("HeaderValues(%s) = %q, want %q", tc.name, got, tc.values)
		}
		if got := RawFields(msg, tc.name); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.raw) {
			t.Errorf("RawFields(%s) = %q, want %q", tc.name, got, tc.raw)
		}
	}
	h, err := ParseHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := h.Subject(); err != nil || s != "Grüße" {
		t.Errorf("Subject() = %q, %v", s, err)
	}
	if HeaderValues([]byte("not a header\r\n"), "not a header") != nil || RawFields([]byte("garbage"), "garbage") != nil {
		t.Error("fields found in garbage")
	}
	if _, err := ParseHeader([]byte(" starts with a blank\r\n")); err == nil {
		t.Error("ParseHeader accepted a header beginning with a continuation line")
	}
}

// wantPart describes a part a generated message must have.
type wantPart struct {
	path        string // fmt.Sprint(Part.Path)
	contentType string
	filename    string
	disposition string
	prefix      string // the decoded body begins with it
}

func TestWalkPartsGenerated(t *testing.T) {
	t.Parallel()
	const big = 5000
	tnefSig := string([]byte{0x78, 0x9F, 0x3E, 0x22})
	want := map[string][]wantPart{
		KindPlain: {{path: "[]", contentType: "text/plain", prefix: "Hi,\r\n"}},
		KindHTML: {{path: "[]", contentType: "multipart/alternative"}, {path: "[0]", contentType: "text/plain", prefix: "Hi,"},
			{path: "[1]", contentType: "text/html", prefix: "<html"}},
		KindRelated: {{path: "[]", contentType: "multipart/related"}, {path: "[0]", contentType: "multipart/alternative"},
			{path: "[0 1]", contentType: "text/html"}, {path: "[1]", contentType: "image/png", filename: "image001.png", disposition: "inline", prefix: "\x89PNG"}},
		KindAttachment: {{path: "[0 0]", contentType: "text/plain"}, {path: "[1]", contentType: "application/pdf", filename: "Q3-report.pdf", disposition: "attachment", prefix: "%PDF-1.4"}},
		KindTNEF: {{path: "[0]", contentType: "text/plain", prefix: "Hi,"},
			{path: "[1]", contentType: "application/ms-tnef", filename: "winmail.dat", disposition: "attachment", prefix: tnefSig}},
		KindEightBit:      {{path: "[]", contentType: "text/plain", prefix: "Hallo "}},
		KindSMTPUTF8:      {{path: "[]", contentType: "text/plain", prefix: "Hola Zoë"}},
		KindMultiRcpt:     {{path: "[]", contentType: "text/plain"}},
		KindRecallRequest: {{path: "[]", contentType: "text/plain"}},
		KindTNEFRecall:    {{path: "[1]", contentType: "application/ms-tnef", filename: "winmail.dat", disposition: "attachment", prefix: tnefSig}},
		KindRecallReport:  {{path: "[0]", contentType: "text/plain", prefix: "Your message"}, {path: "[1]", contentType: "text/html"}},
		KindCalendar:      {{path: "[1]", contentType: "text/calendar", prefix: "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\n"}},
		KindBigAttachment: {{path: "[1]", contentType: "application/octet-stream", filename: "dataset.bin", disposition: "attachment"}},
	}
	for _, m := range Generate(GenerateOptions{Seed: 31, BigAttachmentBytes: big}) {
		ps := mustParts(t, m.Data)
		if ps[0].Path != nil {
			t.Errorf("%s: the message itself has path %v", m.Name, ps[0].Path)
		}
		byPath := map[string]Part{}
		for _, p := range ps {
			byPath[fmt.Sprint(p.Path)] = p
			if p.Err != nil {
				t.Errorf("%s %v: %v", m.Name, p.Path, p.Err)
			}
			if p.Multipart() != (p.Body == nil) {
				t.Errorf("%s %v: multipart %v with a body of %d bytes", m.Name, p.Path, p.Multipart(), len(p.Body))
			}
		}
		for _, w := range want[m.Kind] {
			p, ok := byPath[w.path]
			if !ok {
				t.Errorf("%s: no part at %s", m.Name, w.path)
				continue
			}
			if p.ContentType != w.contentType || p.Filename != w.filename || p.Disposition != w.disposition || !bytes.HasPrefix(p.Body, []byte(w.prefix)) {
				t.Errorf("%s %s: %s %q %q, body %.20q; want %+v", m.Name, w.path, p.ContentType, p.Filename, p.Disposition, p.Body, w)
			}
		}
		if m.Kind == KindBigAttachment && len(byPath["[1]"].Body) != big {
			t.Errorf("%s: attachment of %d bytes", m.Name, len(byPath["[1]"].Body))
		}
		if got, want := HasTNEF(m.Data), m.Kind == KindTNEF || m.Kind == KindTNEFRecall; got != want {
			t.Errorf("%s: HasTNEF = %v", m.Name, got)
		}
	}
}

// inHouseTexts decodes the text parts of data with the package's own MIME
// tree, as a second opinion on TextParts for content in UTF-8 or US-ASCII.
func inHouseTexts(t *testing.T, data []byte) []string {
	t.Helper()
	root, err := parseEntity(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	err = root.walkLeaves(func(e *entity) error {
		if !strings.HasPrefix(e.mediaType, "text/") || e.isAttachment() {
			return nil
		}
		dec, err := decodeTransfer(e.transferEncoding(), e.body)
		out = append(out, string(dec))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTextPartsGenerated(t *testing.T) {
	t.Parallel()
	for _, m := range Generate(GenerateOptions{Seed: 32, BigAttachmentBytes: 3000}) {
		tps, err := TextParts(m.Data)
		if err != nil {
			t.Errorf("%s: %v", m.Name, err)
			continue
		}
		want := inHouseTexts(t, m.Data)
		if len(tps) != len(want) || len(tps) == 0 {
			t.Errorf("%s: %d text parts, want %d", m.Name, len(tps), len(want))
			continue
		}
		for i, tp := range tps {
			if tp.Text != want[i] {
				t.Errorf("%s: text part %d differs from the in-house decoding:\n%q\n%q", m.Name, i, tp.Text, want[i])
			}
			if strings.Contains(tp.Text, "=\r\n") || !utf8.ValidString(tp.Text) {
				t.Errorf("%s: text part %d is not decoded: %.80q", m.Name, i, tp.Text)
			}
		}
		switch m.Kind {
		case KindEightBit:
			if tps[0].Charset != "utf-8" || !strings.Contains(tps[0].Text, "Grüße aus München") {
				t.Errorf("8bit: %q %.60q", tps[0].Charset, tps[0].Text)
			}
		case KindHTML:
			if tps[0].ContentType != "text/plain" || tps[1].ContentType != "text/html" || tps[1].Charset != "us-ascii" {
				t.Errorf("html: %+v", tps)
			}
		}
	}
}

func TestTextPartsCharsetsAndEncodings(t *testing.T) {
	t.Parallel()
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	gb2312 := []byte{0xD6, 0xD0, 0xCE, 0xC4} // 中文
	iso2022jp := "\x1b$BF|K\\8l\x1b(B"       // 日本語
	msg := "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =\r\nau lait\r\n" +
		"--b\r\nContent-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(gb2312) + "\r\n" +
		"--b\r\nContent-Type: text/html; charset=\"iso-2022-jp\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n<p>" + iso2022jp + "</p>\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nno charset\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename=notes.txt\r\n\r\nan attachment\r\n" +
		"--b\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nraw \xff bytes\r\n" +
		"--b--\r\n"
	tps, err := TextParts([]byte(msg))
	if err == nil || !strings.Contains(err.Error(), "x-no-such-charset") {
		t.Errorf("error %v, want one naming the unknown charset", err)
	}
	want := []TextPart{
		{Path: []int{0}, ContentType: "text/plain", Charset: "iso-8859-1", Text: "café au lait"},
		{Path: []int{1}, ContentType: "text/plain", Charset: "gb2312", Text: "中文"},
		{Path: []int{2}, ContentType: "text/html", Charset: "iso-2022-jp", Text: "<p>日本語</p>"},
		{Path: []int{3}, ContentType: "text/plain", Text: "no charset"},
		{Path: []int{5}, ContentType: "text/plain", Charset: "x-no-such-charset", Text: "raw \xff bytes"},
	}
	if fmt.Sprintf("%#v", tps) != fmt.Sprintf("%#v", want) {
		t.Errorf("TextParts\n got %#v\nwant %#v", tps, want)
	}
	ps := mustParts(t, []byte(msg))
	if p := ps[5]; p.Filename != "notes.txt" || !p.Attachment() || p.Err != nil {
		t.Errorf("attachment part %+v", p)
	}
	if p := ps[6]; p.Err == nil {
		t.Error("no error on the part with an unknown charset")
	}

	broken := "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n!!! not base64 !!!\r\n"
	if ps := mustParts(t, []byte(broken)); len(ps) != 1 || ps[0].Err == nil {
		t.Errorf("invalid base64: %+v", ps)
	}
	encoded := "Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n filename=\"=?utf-8?q?Gr=C3=BC=C3=9Fe.pdf?=\"\r\n\r\nx\r\n"
	if ps := mustParts(t, []byte(encoded)); ps[0].Filename != "Grüße.pdf" {
		t.Errorf("encoded file name %q", ps[0].Filename)
	}
}

func TestWalkPartsStopsAndFails(t *testing.T) {
	t.Parallel()
	m := genKind(t, KindRelated)
	stop := errors.New("stop")
	calls := 0
	err := WalkParts(m.Data, func(p Part) error {
		calls++
		if p.ContentType == "text/plain" {
			return stop
		}
		return nil
	})
	if err != stop || calls != 3 { // related, alternative, plain
		t.Errorf("WalkParts returned %v after %d calls, want the callback's error after 3", err, calls)
	}
	for _, garbage := range []string{"not a message", " leading blank\r\n\r\nbody"} {
		if err := WalkParts([]byte(garbage), func(Part) error { return nil }); err == nil {
			t.Errorf("%q: no error", garbage)
		}
		if HasTNEF([]byte(garbage)) {
			t.Errorf("%q has TNEF", garbage)
		}
		if _, err := TextParts([]byte(garbage)); err == nil {
			t.Errorf("%q: TextParts without error", garbage)
		}
	}
	octet := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream; name=WINMAIL.DAT\r\n\r\nx\r\n--b--\r\n"
	if !HasTNEF([]byte(octet)) {
		t.Error("winmail.dat sent as application/octet-stream not found")
	}
}

func TestInspectCorpus(t *testing.T) {
	t.Parallel()
	for _, m := range loadCorpus(t) {
		tps, err := TextParts(m.Data)
		if err != nil {
			t.Errorf("%s: %v", m.Name, err)
		}
		if len(tps) == 0 {
			t.Errorf("%s: no text part", m.Name)
		}
		for _, tp := range tps {
			if !utf8.ValidString(tp.Text) || strings.Contains(tp.Text, "\x1b") {
				t.Errorf("%s %v (%s): text not converted to UTF-8", m.Name, tp.Path, tp.Charset)
			}
		}
		if strings.Contains(m.Name, "-tnef-") && !HasTNEF(m.Data) {
			t.Errorf("%s: no TNEF found", m.Name)
		}
		if out := transform(t, "flatten-tnef", m.Data); HasTNEF(out) {
			t.Errorf("%s: TNEF left after flatten-tnef", m.Name)
		}
		ids := HeaderValues(m.Data, "Message-ID")
		raws := RawFields(m.Data, "Message-ID")
		if len(ids) != len(raws) {
			t.Errorf("%s: %d Message-ID values, %d raw fields", m.Name, len(ids), len(raws))
		}
		for i := range ids {
			if !strings.Contains(string(unfold([]byte(raws[i]))), ids[i]) {
				t.Errorf("%s: value %q is not in the field %q", m.Name, ids[i], raws[i])
			}
		}
	}
}

// TestTextPartsWithoutCharsetReader checks that TextParts converts charsets
// itself when go-message has no CharsetReader. It changes that package
// variable, so it does not run in parallel (parallel tests wait for it).
func TestTextPartsWithoutCharsetReader(t *testing.T) {
	saved := message.CharsetReader
	message.CharsetReader = nil
	t.Cleanup(func() { message.CharsetReader = saved })
	msg := "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n"
	tps, err := TextParts([]byte(msg))
	if err != nil || len(tps) != 1 || tps[0].Text != "café\r\n" {
		t.Errorf("TextParts = %#v, %v", tps, err)
	}
}
