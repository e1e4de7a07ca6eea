package relay

import (
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
