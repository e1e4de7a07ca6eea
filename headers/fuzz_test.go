package headers

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// FuzzReadRestore feeds arbitrary bytes through the return leg's header
// path: parse (bounded), restore against a fixed record, write. Whatever the
// input, it must not panic, the output must parse again, the guarded fields
// of the output must be exactly the recorded ones, no re-stamped field may
// be left, and the body must pass through unchanged.
func FuzzReadRestore(f *testing.F) {
	f.Add([]byte(crlf(origin + "\nbody\n")))
	f.Add([]byte(crlf("X-MS-Exchange-Organization-AuthAs: Internal\nSubject: x\n\n")))
	f.Add([]byte("A: 1\r\n\r\n"))
	f.Add([]byte("A: 1\r\n b\r\n\r\n\r\n.\r\n"))
	f.Add([]byte(":\r\n\r\n"))
	f.Add([]byte("A: 1\nB: 2\n\n"))
	f.Add([]byte(crlf("X-MS-Exchange-CrossTenant-AuthAs: Internal\nX-OriginatorOrg: contoso.com\n\n")))

	restore := MustMatcher(DefaultRestore...)
	h0, _, err := ReadHeader(strings.NewReader(crlf(origin+"\n")), 1<<16)
	if err != nil {
		f.Fatal(err)
	}
	rec := &Record{Fields: h0.Capture(MustMatcher(DefaultCapture...))}
	var want [][]byte
	for _, fl := range rec.Fields {
		if restore.Match(fl.Name) {
			want = append(want, fl.Raw)
		}
	}
	guard := MustMatcher(append(append([]string{}, DefaultRestore...), Firewall...)...)
	restamped := MustMatcher(Restamped...)
	r := NewRestorer(restore)

	f.Fuzz(func(t *testing.T, in []byte) {
		h, body, err := ReadHeader(bytes.NewReader(in), 4096)
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) && !errors.Is(err, ErrHeaderTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		rest, _ := io.ReadAll(body)
		r.Restore(h, rec)
		var out bytes.Buffer
		if _, err := h.WriteTo(&out); err != nil {
			return // a field go-message cannot write back; nothing was sent
		}
		out.Write(rest)
		h2, body2, err := ReadHeader(bytes.NewReader(out.Bytes()), 1<<20)
		if err != nil {
			t.Fatalf("restored output does not parse: %v\n%q", err, out.Bytes())
		}
		var got [][]byte
		for _, fl := range h2.Fields() {
			if guard.Match(fl.Name) {
				got = append(got, fl.Raw)
			}
		}
		if !sameMultiset(got, want) {
			t.Fatalf("guarded fields after restore:\n%q\nwant\n%q", got, want)
		}
		if left := h2.Capture(restamped); len(left) > 0 {
			t.Fatalf("re-stamped fields after restore: %q", left)
		}
		rest2, _ := io.ReadAll(body2)
		if !bytes.Equal(rest, rest2) {
			t.Fatalf("body changed: %q -> %q", rest, rest2)
		}
	})
}

func sameMultiset(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, x := range a {
		count[string(x)]++
	}
	for _, x := range b {
		count[string(x)]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// FuzzVerifyReference: Verify never panics, and accepts only values that
// carry a valid MAC for the ref they name.
func FuzzVerifyReference(f *testing.F) {
	s := signer(f, "k1", k1)
	good := s.Stamp("aaaaaaaaaaaaaaaaaaaaaaaaaa", 0, time.Unix(1700000000, 0))
	f.Add(s.Stamp("aaaaaaaaaaaaaaaaaaaaaaaaaa", 2, time.Unix(1700000000, 0)))
	f.Add(good)
	f.Add(strings.ReplaceAll(good, "; ", ";\r\n "))
	f.Add("v=1; k=k1; r=; t=; s=")
	f.Add(";;;==;")
	f.Fuzz(func(t *testing.T, v string) {
		got, err := s.Verify(v)
		if err != nil {
			return
		}
		// Re-stamping what verified must reproduce the same MAC.
		again, err := s.Verify(s.Stamp(got.Ref, got.Hop, got.Issued))
		if err != nil || again.Ref != got.Ref || again.Hop != got.Hop {
			t.Fatalf("verified %q but re-stamp fails: %v", v, err)
		}
		if !strings.Contains(v, got.Ref) {
			t.Fatalf("verified ref %q not in value %q", got.Ref, v)
		}
	})
}
