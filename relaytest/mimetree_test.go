package relaytest

import (
	"bytes"
	"fmt"
	"testing"
)

func TestEntityRoundTripIsByteExact(t *testing.T) {
	t.Parallel()
	crafted := []string{
		// Preamble, transport padding after a delimiter, LF-only part, epilogue.
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npreamble\r\n--b  \r\nContent-Type: text/plain\r\n\r\none\r\n--b\nContent-Type: text/plain\n\ntwo\n--b--\r\nepilogue\r\n",
		// Nested multipart, adjacent delimiters (an empty part).
		"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nplain\r\n--i--\r\n--o\r\n--o--\r\n",
		// Missing close delimiter.
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nunterminated\r\n",
		// No delimiter at all; a boundary-like line that is not one.
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--bb\r\nno parts\r\n",
		// Header only.
		"Subject: only a header\r\n",
		"",
	}
	for i, c := range crafted {
		e, err := parseEntity([]byte(c))
		if err != nil {
			t.Errorf("crafted %d: %v", i, err)
			continue
		}
		if got := e.bytes(); !bytes.Equal(got, []byte(c)) {
			t.Errorf("crafted %d: round trip\n got %q\nwant %q", i, got, c)
		}
	}
	for _, m := range testMessages(t) {
		e, err := parseEntity(m.Data)
		if err != nil {
			t.Errorf("%s: %v", m.Name, err)
			continue
		}
		if !bytes.Equal(e.bytes(), m.Data) {
			t.Errorf("%s: round trip is not byte-identical", m.Name)
		}
	}
}

func TestEntitySplitsParts(t *testing.T) {
	t.Parallel()
	msg := "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npre\r\n--b  \r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: application/ms-tnef\r\n\r\ntwo\r\n--b--\r\nepi\r\n"
	e, err := parseEntity([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !e.multipart || len(e.children) != 2 {
		t.Fatalf("multipart=%v children=%d", e.multipart, len(e.children))
	}
	got := fmt.Sprintf("%q %q %q %q %q %q", e.preamble, e.delims[0], e.children[0].body, e.delims[1], e.closeDelim, e.epilogue)
	want := fmt.Sprintf("%q %q %q %q %q %q", "pre", "\r\n--b  \r\n", "one", "\r\n--b\r\n", "\r\n--b--\r\n", "epi\r\n")
	if got != want {
		t.Errorf("split\n got %s\nwant %s", got, want)
	}
	if !e.children[1].isTNEF() || e.children[0].isTNEF() {
		t.Error("TNEF detection")
	}
	e.removeChild(0)
	if got, want := string(e.bytes()), "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\npre\r\n--b\r\nContent-Type: application/ms-tnef\r\n\r\ntwo\r\n--b--\r\nepi\r\n"; got != want {
		t.Errorf("after removing the first part\n got %q\nwant %q", got, want)
	}
}

func TestTransferEncodingRoundTrip(t *testing.T) {
	t.Parallel()
	inputs := [][]byte{
		[]byte("plain ascii\r\nsecond line\r\n"),
		[]byte("no final newline"),
		[]byte("trailing blanks   \r\n\ttab\t\r\n"),
		[]byte("bare\nLF and bare\rCR\r\n"),
		[]byte("=?not-a-word?= 100% = equal\r\n"),
		[]byte("\x00\x01binary\xff\xfe"),
		bytes.Repeat([]byte("long line without breaks "), 20),
	}
	for _, enc := range []string{"7bit", "quoted-printable", "base64"} {
		for _, in := range inputs {
			for _, eol := range []bool{true, false} {
				out, err := encodeTransfer(enc, in, eol)
				if err != nil {
					t.Fatal(err)
				}
				if eol && len(in) > 0 && !endsWithEOL(out) || !eol && endsWithEOL(out) {
					t.Errorf("%s %q eol=%v: output %q", enc, in, eol, out)
				}
				dec, err := decodeTransfer(enc, out)
				if err != nil {
					t.Fatal(err)
				}
				// The content is kept, except for the final line ending
				// where the encoding carries it as such: it is added (eol)
				// or dropped (!eol) to fit the structure around the part.
				want := in
				switch {
				case enc == "7bit" && eol && !endsWithEOL(in):
					want = append(append([]byte{}, in...), '\r', '\n')
				case enc == "7bit" && !eol:
					want = bytes.TrimSuffix(bytes.TrimSuffix(in, []byte("\n")), []byte("\r"))
				case enc == "quoted-printable" && !eol && !hasBareEOL(in):
					want = bytes.TrimSuffix(in, []byte("\r\n"))
				}
				if !bytes.Equal(dec, want) {
					t.Errorf("%s eol=%v: %q decodes to %q", enc, eol, in, dec)
				}
				for _, line := range bytes.Split(out, []byte("\r\n")) {
					if enc != "7bit" && len(line) > 76 {
						t.Errorf("%s: line of %d", enc, len(line))
					}
				}
			}
		}
	}
	if _, err := decodeTransfer("x-uuencode", nil); err == nil {
		t.Error("unknown encoding decoded")
	}
	if _, err := decodeTransfer("base64", []byte("!!!")); err == nil {
		t.Error("invalid base64 decoded")
	}
}
