package relay

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLineGuard(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		normalize string // expected output in BareLineNormalize mode
		rejects   bool   // BareLineReject refuses it
	}{
		{"clean", "a\r\nb\r\n", "a\r\nb\r\n", false},
		{"empty", "", "", false},
		{"bare LF", "a\nb\r\n", "a\r\nb\r\n", true},
		{"bare CR", "a\rb\r\n", "a\r\nb\r\n", true},
		{"LF dot LF smuggling", "a\r\n\n.\nMAIL FROM:<x>\r\n", "a\r\n\r\n.\r\nMAIL FROM:<x>\r\n", true},
		{"CR dot CR", "a\r.\rb\r\n", "a\r\n.\r\nb\r\n", true},
		{"CR CR LF", "a\r\r\n", "a\r\n\r\n", true},
		{"trailing CR", "a\r", "a\r\n", true},
		{"LF CR", "a\n\rb", "a\r\n\r\nb", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte per read exercises state kept across reads.
			for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
				out, err := io.ReadAll(newLineGuard(r, BareLineNormalize))
				if err != nil || string(out) != tt.normalize {
					t.Errorf("normalize: %q, %v; want %q", out, err, tt.normalize)
				}
			}
			for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
				out, err := io.ReadAll(newLineGuard(r, BareLineReject))
				if tt.rejects {
					if !errors.Is(err, errBare) {
						t.Errorf("reject: err = %v, want errBare", err)
					}
				} else if err != nil || string(out) != tt.in {
					t.Errorf("reject mode changed clean data: %q, %v", out, err)
				}
			}
		})
	}
}

func TestLineGuardPassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := io.ReadAll(newLineGuard(io.MultiReader(strings.NewReader("ok\r\n"), iotest.ErrReader(boom)), BareLineReject))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

// filterSimple is lineGuard's definition, a byte at a time: the fast
// filter must produce exactly what it does (FuzzLineGuard).
func filterSimple(data []byte, mode BareLineEndings) ([]byte, error) {
	var out []byte
	cr := false
	for _, c := range data {
		switch {
		case cr && c == '\n':
			out = append(out, '\n')
			cr = false
		case cr:
			if mode == BareLineReject {
				return nil, errBare
			}
			out = append(out, '\n')
			cr = false
			if c == '\r' {
				out = append(out, '\r')
				cr = true
			} else {
				out = append(out, c)
			}
		case c == '\r':
			out = append(out, '\r')
			cr = true
		case c == '\n':
			if mode == BareLineReject {
				return nil, errBare
			}
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	if cr {
		if mode == BareLineReject {
			return nil, errBare
		}
		out = append(out, '\n')
	}
	return out, nil
}

// chunks returns data in reads of the sizes cuts gives in turn (1 to 256
// bytes), so that CRs and LFs fall on every side of a read's end.
type chunks struct {
	data []byte
	cuts []byte
	i    int
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.cuts) > 0 {
		n = int(c.cuts[c.i%len(c.cuts)]) + 1
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// The line-at-a-time filter gives, byte for byte, what the byte-at-a-time
// definition gives, in both modes, however the data is cut into reads.
func FuzzLineGuard(f *testing.F) {
	for _, s := range []string{
		"", "a\r\nb\r\n", "\r", "\n", "\r\r\n", "\n\r", "x\ry\r\n", ".\r\n.\n", "a\r", "\r\n\r\n.\r\n",
		strings.Repeat("line of text\r\n", 50) + "bare\nlf\r\n",
	} {
		f.Add([]byte(s), []byte{0, 3, 7, 255})
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		for _, mode := range []BareLineEndings{BareLineReject, BareLineNormalize} {
			want, wantErr := filterSimple(data, mode)
			g := newLineGuard(&chunks{data: data, cuts: cuts}, mode)
			got, err := io.ReadAll(g)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("%s %q: error %v, want %v", mode, data, err, wantErr)
			}
			if err == nil && string(got) != string(want) {
				t.Fatalf("%s %q: got %q, want %q", mode, data, got, want)
			}
		}
	})
}

// BenchmarkLineGuard reads 1 MiB of CRLF text through the guard.
func BenchmarkLineGuard(b *testing.B) {
	line := strings.Repeat("x", 74) + "\r\n"
	data := []byte(strings.Repeat(line, (1<<20)/len(line)))
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		g := newLineGuard(bytes.NewReader(data), BareLineReject)
		for {
			if _, err := g.Read(buf); err != nil {
				break
			}
		}
	}
}
