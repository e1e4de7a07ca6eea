package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/tnef"
)

// crlf turns the LF line endings of a test body into CRLF.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func TestScanBody(t *testing.T) {
	tests := []struct {
		name    string
		ct      string // top-level Content-Type
		body    string // LF line endings
		types   []string
		atts    []Attachment
		signed  bool
		encrypt bool
	}{
		{"single part", "text/plain; charset=utf-8", "hello\n", []string{"text/plain"}, nil, false, false},
		{"nested", `multipart/mixed; boundary="outer"`, `preamble
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

plain
--inner
Content-Type: text/html

<p>html</p>
--inner--
--outer
Content-Type: application/pdf; name="ignored.pdf"
Content-Disposition: attachment; filename="Report 2024.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer
Content-Type: image/png
Content-Disposition: inline; filename*=utf-8''%E2%82%AC-chart.png

iVBORw0KGgo=
--outer
Content-Type: application/octet-stream; name="=?utf-8?B?w5xiZXJzaWNodC54bHN4?="

AAAA
--outer
Content-Type: text/plain
Content-Disposition: attachment

no name
--outer--
epilogue
`, []string{"multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf", "image/png", "application/octet-stream", "text/plain"},
			[]Attachment{{"Report 2024.pdf", "application/pdf"}, {"€-chart.png", "image/png"}, {"Übersicht.xlsx", "application/octet-stream"}, {"", "text/plain"}},
			false, false},
		{"message/rfc822 not entered", `multipart/mixed; boundary=b`, `--b
Content-Type: text/plain

see attached
--b
Content-Type: message/rfc822
Content-Disposition: attachment

Content-Type: multipart/signed; boundary=x; protocol="application/pkcs7-signature"

--x
Content-Type: application/pdf; name=inner.pdf

x
--x--
--b--
`, []string{"multipart/mixed", "text/plain", "message/rfc822"}, []Attachment{{"", "message/rfc822"}}, false, false},
		{"digest parts default to message/rfc822", `multipart/digest; boundary=d`, `--d

Subject: one

body
--d--
`, []string{"multipart/digest", "message/rfc822"}, nil, false, false},
		{"pgp encrypted", `multipart/encrypted; protocol="application/pgp-encrypted"; boundary=e`, `--e
Content-Type: application/pgp-encrypted

Version: 1
--e
Content-Type: application/octet-stream

-----BEGIN PGP MESSAGE-----
--e--
`, []string{"multipart/encrypted", "application/pgp-encrypted", "application/octet-stream"}, nil, false, true},
		{"smime enveloped", `application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m`, "MIAGCSqGSIb3DQEHA6CAMIACAQAx\n",
			[]string{"application/pkcs7-mime"}, []Attachment{{"smime.p7m", "application/pkcs7-mime"}}, false, true},
		{"smime opaque signed", `application/x-pkcs7-mime; smime-type=signed-data; name=smime.p7m`, "MIAGCSqGSIb3DQEHAqCAMIACAQEx\n",
			[]string{"application/x-pkcs7-mime"}, []Attachment{{"smime.p7m", "application/x-pkcs7-mime"}}, true, false},
		{"unparsable content type is text/plain", `text/plain; charset`, "x\n", []string{"text/plain"}, nil, false, false},
		{"garbage content type", `///`, "x\n", []string{"text/plain"}, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hdr(t, "Content-Type: "+tt.ct)
			info, err := ScanBody(h, strings.NewReader(crlf(tt.body)), ScanLimits{})
			if err != nil {
				t.Fatalf("ScanBody: %v", err)
			}
			if !slices.Equal(info.ContentTypes, tt.types) {
				t.Errorf("ContentTypes = %q, want %q", info.ContentTypes, tt.types)
			}
			if !slices.Equal(info.Attachments, tt.atts) {
				t.Errorf("Attachments = %q, want %q", info.Attachments, tt.atts)
			}
			if info.Signed != tt.signed || info.Encrypted != tt.encrypt {
				t.Errorf("Signed, Encrypted = %v, %v; want %v, %v", info.Signed, info.Encrypted, tt.signed, tt.encrypt)
			}
		})
	}
}

func TestScanBodyMalformed(t *testing.T) {
	tests := []struct {
		name    string
		ct      string
		body    string
		types   []string
		errText string
	}{
		{"no boundary", "multipart/mixed", "--b\nContent-Type: text/plain\n\nx\n--b--\n",
			[]string{"multipart/mixed"}, "message: multipart/mixed without a boundary"},
		{"truncated", "multipart/mixed; boundary=b", "--b\nContent-Type: text/plain\n\nx\n--b\nContent-Type: image/png\n\nAAAA",
			[]string{"multipart/mixed", "text/plain", "image/png"}, "message part 3: multipart: NextPart: EOF"},
		{"broken inner, outer goes on", "multipart/mixed; boundary=b",
			"--b\nContent-Type: multipart/alternative; boundary=i\n\n--i\nbroken header line\n\n--b\nContent-Type: application/pdf; name=a.pdf\n\nx\n--b--\n",
			[]string{"multipart/mixed", "multipart/alternative", "application/pdf"}, "message part 1 part 1: message: malformed MIME header line: broken header line"},
		{"bad TNEF", "multipart/mixed; boundary=b",
			"--b\nContent-Type: application/ms-tnef\nContent-Transfer-Encoding: base64\n\nAAAAAAAA\n--b--\n",
			[]string{"multipart/mixed", "application/ms-tnef"}, "message part 1: application/ms-tnef: tnef: not a TNEF stream"},
		{"unknown encoding of TNEF", "multipart/mixed; boundary=b",
			"--b\nContent-Type: application/ms-tnef\nContent-Transfer-Encoding: x-uuencode\n\nAAAA\n--b--\n",
			[]string{"multipart/mixed", "application/ms-tnef"}, `message part 1: application/ms-tnef: encoding error: unhandled encoding "x-uuencode"`},
		{"long preamble line", "multipart/mixed; boundary=b", strings.Repeat("x", 10000) + "\n--b\n\nx\n--b--\n",
			[]string{"multipart/mixed"}, "message part 1: multipart: NextPart: bufio: buffer full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hdr(t, "Content-Type: "+tt.ct)
			info, err := ScanBody(h, strings.NewReader(crlf(tt.body)), ScanLimits{})
			if err == nil || !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %v, want one containing %q", err, tt.errText)
			}
			if errors.Is(err, ErrScanLimit) {
				t.Errorf("error %v wraps ErrScanLimit", err)
			}
			if info == nil || !slices.Equal(info.ContentTypes, tt.types) {
				t.Errorf("ContentTypes = %q, want %q", info.ContentTypes, tt.types)
			}
		})
	}
}

// nested builds depth levels of multipart/mixed (boundaries b1, b2, ...)
// around a text part, left unclosed.
func nested(depth int) string {
	var b strings.Builder
	for i := 1; i < depth; i++ {
		fmt.Fprintf(&b, "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i, i+1)
	}
	fmt.Fprintf(&b, "--b%d\nContent-Type: text/plain\n\nx\n", depth)
	return b.String()
}

func TestScanLimits(t *testing.T) {
	t.Run("depth", func(t *testing.T) {
		h := hdr(t, "Content-Type: multipart/mixed; boundary=b1")
		info, err := ScanBody(h, strings.NewReader(crlf(nested(30))), ScanLimits{MaxDepth: 5})
		if !errors.Is(err, ErrScanLimit) || !strings.Contains(err.Error(), "multipart nesting deeper than 5") {
			t.Fatalf("error %v, want a depth limit", err)
		}
		if len(info.ContentTypes) != 6 {
			t.Errorf("%d content types seen, want 6 (depths 0 to 5)", len(info.ContentTypes))
		}
		// The default limit is 16.
		info, err = ScanBody(h, strings.NewReader(crlf(nested(30))), ScanLimits{})
		if !errors.Is(err, ErrScanLimit) || len(info.ContentTypes) != 17 {
			t.Errorf("default depth: %d content types seen, error %v; want 17 and a limit", len(info.ContentTypes), err)
		}
		// Within the limit the innermost part is reached.
		info, _ = ScanBody(h, strings.NewReader(crlf(nested(16))), ScanLimits{})
		if n := len(info.ContentTypes); n != 17 || info.ContentTypes[16] != "text/plain" {
			t.Errorf("16 levels: content types %q", info.ContentTypes)
		}
	})
	t.Run("parts", func(t *testing.T) {
		body := strings.Repeat("--b\nContent-Type: text/plain\n\nx\n", 50) + "--b--\n"
		h := hdr(t, "Content-Type: multipart/mixed; boundary=b")
		info, err := ScanBody(h, strings.NewReader(crlf(body)), ScanLimits{MaxParts: 10})
		if !errors.Is(err, ErrScanLimit) || !strings.Contains(err.Error(), "message part 10: more than 10 parts") {
			t.Fatalf("error %v, want a parts limit", err)
		}
		if len(info.ContentTypes) != 10 {
			t.Errorf("%d content types recorded, want 10", len(info.ContentTypes))
		}
		if _, err := ScanBody(h, strings.NewReader(crlf(body)), ScanLimits{MaxParts: 51}); err != nil {
			t.Errorf("51 parts allowed: %v", err)
		}
	})
	t.Run("part header", func(t *testing.T) {
		field := "X-Big: " + strings.Repeat("a", 2000) + "\n"
		part := func(n int) string {
			return "--b\nContent-Type: text/plain\n" + strings.Repeat(field, n) + "\nbody\n"
		}
		h := hdr(t, "Content-Type: multipart/mixed; boundary=b")
		// 10 fields of about 2 KB: over a 16 KiB limit, under the default.
		body := crlf(part(1) + part(10) + "--b--\n")
		info, err := ScanBody(h, strings.NewReader(body), ScanLimits{MaxHeaderBytes: 16 << 10})
		if !errors.Is(err, ErrScanLimit) || !strings.Contains(err.Error(), "message part 2: header block larger than 16384 bytes") {
			t.Fatalf("error %v, want a header limit on part 2", err)
		}
		if !slices.Equal(info.ContentTypes, []string{"multipart/mixed", "text/plain"}) {
			t.Errorf("ContentTypes = %q", info.ContentTypes)
		}
		if _, err := ScanBody(h, strings.NewReader(body), ScanLimits{}); err != nil {
			t.Errorf("default limit: %v", err)
		}
		// One endless header line, never terminated: the guard stops reading.
		r := &countingReader{r: io.MultiReader(strings.NewReader("--b\r\nX-A: "), endless('a'))}
		_, err = ScanBody(h, r, ScanLimits{MaxHeaderBytes: 4096})
		if !errors.Is(err, ErrScanLimit) {
			t.Fatalf("endless header: %v", err)
		}
		if r.n > 64<<10 {
			t.Errorf("read %d bytes of an endless header with a 4 KiB limit", r.n)
		}
	})
	t.Run("tnef", func(t *testing.T) {
		h, body := tnefMessage(t, "IPM.Outlook.Recall")
		info, err := ScanBody(h, bytes.NewReader(body), ScanLimits{TNEF: tnef.Limits{MaxAttributes: 1, MaxAttributeBytes: 4}})
		if err == nil || !errors.Is(err, tnef.ErrLimit) || info.TNEFClass != "" {
			t.Errorf("TNEF limits not applied: class %q, %v", info.TNEFClass, err)
		}
	})
}

// TestHeaderGuard checks that text in part bodies that merely looks like a
// delimiter does not count as a part header.
func TestHeaderGuard(t *testing.T) {
	long := strings.Repeat("y", 100) + "\n"
	body := "--b\nContent-Type: text/plain\n\n" +
		"--bx\n" + strings.Repeat(long, 100) +
		"x--b\n" + strings.Repeat(long, 100) +
		"--b \nContent-Type: image/png\n\nx\n" +
		"--b--  \n" + strings.Repeat(long, 100)
	h := hdr(t, "Content-Type: multipart/mixed; boundary=b")
	info, err := ScanBody(h, strings.NewReader(crlf(body)), ScanLimits{MaxHeaderBytes: 200})
	if err != nil {
		t.Fatalf("ScanBody: %v", err)
	}
	if !slices.Equal(info.ContentTypes, []string{"multipart/mixed", "text/plain", "image/png"}) {
		t.Errorf("ContentTypes = %q", info.ContentTypes)
	}

	// The guard counts the header block after a delimiter line only.
	g := newHeaderGuard(strings.NewReader(crlf("--b\nA: 1\n\n"+strings.Repeat("z", 1000)+"\n--b\nB: "+strings.Repeat("2", 300)+"\n\n")), "b", 100)
	n, err := io.Copy(io.Discard, g)
	if !errors.Is(err, errPartHeaderTooLarge) || !g.tripped {
		t.Fatalf("guard read %d bytes, error %v; want it tripped on the second header", n, err)
	}
	if n < 1000 {
		t.Errorf("guard tripped after %d bytes, inside the first part's body", n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// endless yields the byte c forever.
type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

func TestScanBodyNilHeader(t *testing.T) {
	info, err := ScanBody(nil, strings.NewReader("hello\r\n"), ScanLimits{})
	if err != nil || !slices.Equal(info.ContentTypes, []string{"text/plain"}) {
		t.Errorf("ScanBody(nil header) = %+v, %v", info, err)
	}
}
