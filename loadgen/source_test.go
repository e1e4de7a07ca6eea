package loadgen

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
)

// checkLines fails unless data is CRLF lines (no bare CR or LF), none
// starting with '.', ending in CRLF.
func checkLines(t *testing.T, data []byte) {
	t.Helper()
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		t.Fatalf("does not end in CRLF: %q", data[max(0, len(data)-20):])
	}
	for i, line := range bytes.Split(data[:len(data)-2], []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("line %d has a bare CR or LF: %q", i, line)
		}
		if bytes.HasPrefix(line, []byte(".")) {
			t.Fatalf("line %d starts with a dot: %q", i, line)
		}
		if len(line) > 998 {
			t.Fatalf("line %d is %d bytes long", i, len(line))
		}
	}
}

func TestSyntheticSizes(t *testing.T) {
	two := []string{"a@example.com", "b@example.com"}
	s0, err := NewSynthetic(SyntheticOptions{Size: 1 << 10, Nonce: "00000000", To: two})
	if err != nil {
		t.Fatal(err)
	}
	h := s0.hlen
	for _, size := range []int64{h, h + 1, h + 2, h + 3, h + 79, h + 80, h + 81, 1 << 10, 4 << 10, 64<<10 - 1, 64 << 10,
		64<<10 + 1, int64(len(textBlock.data)) + h, int64(len(textBlock.data)) + h + 1, 1<<20 + 7, 3 << 20} {
		s, err := NewSynthetic(SyntheticOptions{Size: size, Nonce: "00000000", To: two})
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		for _, i := range []int64{0, 7, 12345678901} {
			m := s.Message(i)
			data := m.Bytes()
			if m.Size != size || int64(len(data)) != size {
				t.Fatalf("size %d message %d: Size %d, %d bytes written", size, i, m.Size, len(data))
			}
			checkLines(t, data)
			msg, err := mail.ReadMessage(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			if id := msg.Header.Get("Message-Id"); !strings.Contains(id, seqString("00000000", i)) {
				t.Fatalf("Message-ID %q does not number message %d", id, i)
			}
		}
	}
	if _, err := NewSynthetic(SyntheticOptions{Size: h - 1, To: two}); err == nil {
		t.Fatal("a size below the header block was accepted")
	}
}

func TestWriteLines(t *testing.T) {
	for n := int64(0); n < 400; n++ {
		if n == 1 {
			continue
		}
		var b bytes.Buffer
		k, err := writeLines(&b, textBlock, n)
		if err != nil || k != n || int64(b.Len()) != n {
			t.Fatalf("n=%d: wrote %d (%d), %v", n, k, b.Len(), err)
		}
		if n > 0 {
			checkLines(t, b.Bytes())
		}
	}
}

func TestDotWriter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []string
		want   string
	}{
		{"no dots", []string{"a\r\nb\r\n"}, "a\r\nb\r\n"},
		{"leading dot", []string{".a\r\n"}, "..a\r\n"},
		{"dot after CRLF", []string{"a\r\n.b\r\n.\r\n"}, "a\r\n..b\r\n..\r\n"},
		{"dot at write boundary", []string{"a\r\n", ".b\r\n"}, "a\r\n..b\r\n"},
		{"CR LF split", []string{"a\r", "\n.b\r\n"}, "a\r\n..b\r\n"},
		{"dot mid-line", []string{"a.b\r\n", "c.\r\n"}, "a.b\r\nc.\r\n"},
		{"one-byte writes", []string{".", ".", "\r", "\n", "."}, "...\r\n.."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			d := &dotWriter{w: &b, bol: true}
			for _, w := range tc.writes {
				if n, err := d.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if b.String() != tc.want {
				t.Fatalf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
}

func TestExchangePadded(t *testing.T) {
	if _, err := NewExchange(ExchangeOptions{Size: 4 << 10}); err == nil || !strings.Contains(err.Error(), "smallest padded") {
		t.Fatalf("4 KiB: err = %v, want the smallest padded size", err)
	}
	for _, size := range []int64{20 << 10, 20<<10 + 1, 20<<10 + 2, 20<<10 + 3, 20<<10 + 5, 20<<10 + 77, 1 << 20, 1<<20 + 13} {
		x, err := NewExchange(ExchangeOptions{Size: size, Nonce: "0000beef"})
		if err != nil {
			t.Fatal(err)
		}
		if len(x.Templates()) < 3 {
			t.Fatalf("templates %v", x.Templates())
		}
		for i := int64(0); i < int64(len(x.Templates())); i++ {
			m := x.Message(i)
			data := m.Bytes()
			if m.Size != size || int64(len(data)) != size {
				t.Fatalf("size %d, %s: Size %d, %d bytes", size, x.Templates()[i], m.Size, len(data))
			}
			if !bytes.HasSuffix(data, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatalf("%s: not CRLF lines", x.Templates()[i])
			}
			// the padding decodes, and the MIME structure still parses
			msg, err := mail.ReadMessage(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(msg.Header.Get("Message-Id"), seqString("0000beef", i)) {
				t.Fatalf("Message-ID %q", msg.Header.Get("Message-Id"))
			}
			_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
			if err != nil {
				t.Fatal(err)
			}
			mr := multipart.NewReader(msg.Body, params["boundary"])
			found := false
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", x.Templates()[i], err)
				}
				if p.FileName() == "padding.bin" {
					found = true
					raw, _ := io.ReadAll(p)
					if _, err := base64.StdEncoding.DecodeString(string(bytes.ReplaceAll(raw, []byte("\r\n"), nil))); err != nil {
						t.Fatalf("%s size %d: padding does not decode: %v", x.Templates()[i], size, err)
					}
				}
			}
			if !found {
				t.Fatalf("%s: no padding part", x.Templates()[i])
			}
		}
	}
}

func TestExchangeUnpadded(t *testing.T) {
	x, err := NewExchange(ExchangeOptions{Nonce: "00000001"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(x.Templates()); n != 12 {
		t.Fatalf("%d templates", n)
	}
	a, b := x.Message(0), x.Message(12)
	if bytes.Equal(a.Bytes(), b.Bytes()) || a.Size != b.Size {
		t.Fatal("message 12 repeats message 0 byte for byte (or changes its size)")
	}
}

func TestParseStatus(t *testing.T) {
	rss, hwm, err := parseStatus("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
	if err != nil || rss != 1024 || hwm != 2048 {
		t.Fatalf("%d %d %v", rss, hwm, err)
	}
	if _, _, err := parseStatus("Name:\tkthreadd\n"); err == nil {
		t.Fatal("no error without VmRSS")
	}
}
