package headers

import (
	"strings"
	"time"
)

// Trace describes one hop for a Received field (RFC 5321 section 4.4).
type Trace struct {
	Helo     string    // what the client said in EHLO/HELO
	ClientIP string    // the client's address, without port
	By       string    // this relay's host name
	With     string    // "ESMTP", "ESMTPS" (TLS) …
	TLS      string    // e.g. "TLS1.3 TLS_AES_128_GCM_SHA256"; empty for plaintext
	ID       string    // the record reference
	For      string    // the recipient, when there is exactly one
	At       time.Time // when the message was received
}

// Field renders the Received field. Client-supplied parts (the HELO name)
// are reduced to characters that are safe inside a comment, so no client can
// inject anything into the trace.
func (t Trace) Field() Field {
	var b strings.Builder
	b.WriteString("from " + safeToken(t.Helo, "unknown"))
	b.WriteString(" (" + safeToken(t.ClientIP, "unknown") + ")")
	b.WriteString(" by " + safeToken(t.By, "localhost"))
	if t.TLS != "" {
		words := strings.Fields(t.TLS)
		for i, w := range words {
			words[i] = safeToken(w, "")
		}
		b.WriteString(" (" + strings.Join(words, " ") + ")")
	}
	b.WriteString(" with " + safeToken(t.With, "ESMTP"))
	if t.ID != "" {
		b.WriteString(" id " + safeToken(t.ID, ""))
	}
	if t.For != "" {
		b.WriteString(" for <" + safeToken(t.For, "") + ">")
	}
	b.WriteString("; " + t.At.UTC().Format(time.RFC1123Z))
	f, err := NewField("Received", b.String())
	if err != nil {
		panic("headers: Received field: " + err.Error()) // safeToken makes this unreachable
	}
	return f
}

// safeToken keeps letters, digits and the punctuation of host names,
// addresses and cipher names; anything else, blanks included, becomes '_'.
func safeToken(s, empty string) string {
	if s == "" {
		return empty
	}
	if len(s) > 255 {
		s = s[:255]
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte(".-_:[]@+=/", c) >= 0:
		default:
			b[i] = '_'
		}
	}
	return string(b)
}
