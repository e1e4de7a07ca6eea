package relay

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"strings"
	"testing"
)

// viaDotWriter is what go-smtp's client sends for data: net/textproto's
// DotWriter, then its Close.
func viaDotWriter(t testing.TB, data []byte, cuts []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	w := textproto.NewWriter(bw).DotWriter()
	if _, err := io.Copy(w, &chunks{data: data, cuts: cuts}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// viaStuffer is what the relay sends: the stuffer, then the final CRLF
// and the end of data through DotWriter.
func viaStuffer(t testing.TB, data []byte, cuts []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	s := newStuffer(&out)
	if _, err := io.Copy(s, &chunks{data: data, cuts: cuts}); err != nil {
		t.Fatal(err)
	}
	if err := s.finish(); err != nil {
		t.Fatal(err)
	}
	w := textproto.NewWriter(bw).DotWriter()
	if _, err := w.Write([]byte("\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// The stuffer, with go-smtp's writer ending the data, puts on the wire
// exactly what go-smtp's writer alone would, for any message data the
// line guard lets through (CRLF line endings only), however it is cut
// into writes.
func FuzzStuffer(f *testing.F) {
	for _, s := range []string{
		"", "a", "\r\n", ".", ".\r\n", "..\r\n", "a\r\n.\r\nb", "a\r\n.", "line\r\n.\r\n.\r\n",
		"Subject: x\r\n\r\n.hidden\r\n..two\r\nend", strings.Repeat(".x\r\n", 100),
	} {
		f.Add([]byte(s), []byte{0, 1, 5, 255})
	}
	f.Fuzz(func(t *testing.T, raw, cuts []byte) {
		data, err := filterSimple(raw, BareLineNormalize) // as the line guard lets it through
		if err != nil {
			t.Fatal(err)
		}
		want, got := viaDotWriter(t, data, cuts), viaStuffer(t, data, cuts)
		if !bytes.Equal(got, want) {
			t.Fatalf("data %q: stuffer sent %q, DotWriter %q", data, got, want)
		}
	})
}

// BenchmarkStuff compares dot-stuffing 1 MiB of CRLF text with go-smtp's
// writer (DotWriter) and with the stuffer.
func BenchmarkStuff(b *testing.B) {
	line := strings.Repeat("x", 74) + "\r\n"
	data := []byte(strings.Repeat(line, (1<<20)/len(line)))
	for _, tt := range []struct {
		name string
		w    func(io.Writer) (io.Writer, func() error)
	}{
		{"DotWriter", func(w io.Writer) (io.Writer, func() error) {
			bw := bufio.NewWriter(w)
			dw := textproto.NewWriter(bw).DotWriter()
			return dw, dw.Close
		}},
		{"stuffer", func(w io.Writer) (io.Writer, func() error) {
			s := newStuffer(w)
			return s, s.finish
		}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				w, done := tt.w(io.Discard)
				for off := 0; off < len(data); off += 16 << 10 {
					w.Write(data[off:min(off+16<<10, len(data))])
				}
				done()
			}
		})
	}
}
