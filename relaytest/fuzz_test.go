package relaytest

import (
	"bytes"
	"testing"
)

// FuzzTransforms checks, for arbitrary input, that parsing into the
// byte-preserving tree and serializing gives the input back, that no
// transform panics, that passthrough is the identity and that
// CompareIdentity says intact for identical input.
func FuzzTransforms(f *testing.F) {
	for _, m := range Generate(GenerateOptions{Seed: 1}) {
		if len(m.Data) < 12000 {
			f.Add(m.Data)
		}
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGJvZHk+\r\n"))
	bs := MustParseBehaviors("footer-text,footer-html,reencode,strip-ms-headers,strip-unknown-headers,rewrite-message-id,flatten-tnef,stamp-marker,passthrough")
	f.Fuzz(func(t *testing.T, data []byte) {
		if e, err := parseEntity(data); err == nil && !bytes.Equal(e.bytes(), data) {
			t.Fatalf("round trip differs for %q", data)
		}
		for _, b := range bs {
			out, err := b.(Transformer).Transform(data)
			if b.Name() == "passthrough" && (err != nil || !bytes.Equal(out, data)) {
				t.Fatal("passthrough changed the message")
			}
		}
		if r := CompareIdentity(data, data); !r.Intact {
			t.Fatalf("identical input not intact: %v", r)
		}
	})
}
