package headers

import (
	"strings"
	"testing"
)

func fp(t *testing.T, hdr string) string {
	t.Helper()
	h, _, err := ReadHeader(strings.NewReader(crlf(hdr+"\n")), 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	return h.Fingerprint()
}

func TestFingerprint(t *testing.T) {
	base := "Date: Mon, 2 Jan 2023 10:00:00 +0000\nFrom: Ann <ann@contoso.com>\nTo: b@x.example, c@y.example\nCc: d@z.example\nSubject: Quarterly numbers\n"
	same := map[string]string{
		"re-folded subject":       strings.Replace(base, "Subject: Quarterly numbers", "Subject: Quarterly\n numbers", 1),
		"subject as encoded word": strings.Replace(base, "Subject: Quarterly numbers", "Subject: =?utf-8?q?Quarterly_numbers?=", 1),
		"date in other zone":      strings.Replace(base, "Mon, 2 Jan 2023 10:00:00 +0000", "Mon, 2 Jan 2023 11:00:00 +0100", 1),
		"recipients reordered":    strings.Replace(base, "b@x.example, c@y.example", "C@Y.example,\n  b@x.example", 1),
		"display name changed":    strings.Replace(base, "Ann <ann@contoso.com>", "\"Ann (Contoso)\" <ann@contoso.com>", 1),
		"other fields added":      base + "X-Vendor: 1\nMessage-ID: <other@vendor>\n",
	}
	want := fp(t, base)
	if want == "" {
		t.Fatal("empty fingerprint")
	}
	for name, hdr := range same {
		if got := fp(t, hdr); got != want {
			t.Errorf("%s: fingerprint changed", name)
		}
	}
	differ := map[string]string{
		"subject":  strings.Replace(base, "Quarterly numbers", "Quarterly figures", 1),
		"date":     strings.Replace(base, "10:00:00", "10:00:01", 1),
		"from":     strings.Replace(base, "ann@contoso.com", "bob@contoso.com", 1),
		"rcpt cut": strings.Replace(base, ", c@y.example", "", 1),
	}
	for name, hdr := range differ {
		if got := fp(t, hdr); got == want {
			t.Errorf("%s changed but fingerprint did not", name)
		}
	}
	if got := fp(t, "X-Only: 1\n"); got != "" {
		t.Errorf("fingerprint of a message without identity fields = %q", got)
	}
}

func TestNormalizeMessageID(t *testing.T) {
	for in, want := range map[string]string{
		"<a@b>":             "<a@b>",
		"  <a@b>  ":         "<a@b>",
		"(comment) <a@b> x": "<a@b>",
		"a@b":               "a@b",
		"":                  "",
	} {
		if got := NormalizeMessageID(in); got != want {
			t.Errorf("NormalizeMessageID(%q) = %q, want %q", in, got, want)
		}
	}
}
