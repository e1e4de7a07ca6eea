package headers

import (
	"bytes"
	"time"
)

// Record is the origin record of one message: what the tenant sent on the
// tenant leg, captured before the vendor saw the message. The return leg uses
// it to find out whether a message may become internal again and to put back
// the fields the vendor dropped or changed.
//
// A Record is immutable once stored; stores serialize it as JSON.
type Record struct {
	// Ref is the record's key: an opaque, URL-safe random string that the
	// signed reference header names. It is also the Redis hash tag of every
	// key that belongs to the record.
	Ref string `json:"ref"`

	// Envelope as received on the tenant leg.
	MailFrom string     `json:"mail_from"`
	Params   MailParams `json:"params"`
	Rcpts    []string   `json:"rcpts"`

	// Where and when the message arrived.
	ReceivedAt time.Time `json:"received_at"`
	Listener   string    `json:"listener"`
	ClientAddr string    `json:"client_addr"`
	Helo       string    `json:"helo,omitempty"`
	TLS        string    `json:"tls,omitempty"` // e.g. "TLS 1.3 TLS_AES_128_GCM_SHA256", empty when plaintext

	// MessageID is the msg-id of the Message-ID field, angle brackets
	// included, unfolded; empty when the message had none. It is an index.
	MessageID string `json:"message_id,omitempty"`
	// Fingerprint is headers.Fingerprint of the message; an index used when a
	// vendor dropped both the reference and the Message-ID.
	Fingerprint string `json:"fingerprint,omitempty"`

	// Fields are the captured header fields, in their original order, each
	// byte-exact as received (name spelling, folding and trailing CRLF).
	Fields []Field `json:"fields"`

	// Route is the vendor chain the message was sent along, by vendor name;
	// the return leg sends it to the next vendor until the last one, and
	// restores only after that.
	Route []string `json:"route,omitempty"`
}

// MailParams are the MAIL FROM parameters the relay preserves on both legs.
type MailParams struct {
	Size     int64  `json:"size,omitempty"`
	Body     string `json:"body,omitempty"` // "", "7BIT", "8BITMIME"
	SMTPUTF8 bool   `json:"smtputf8,omitempty"`
}

// Field is one raw header field.
type Field struct {
	// Name is the field name as spelled in the message.
	Name string `json:"name"`
	// Raw is the complete field: "Name: value" with any folding, ending in CRLF.
	Raw []byte `json:"raw"`
}

// FieldsNamed returns the record's fields whose name matches m, in order.
func (r *Record) FieldsNamed(m Matcher) []Field {
	var out []Field
	for _, f := range r.Fields {
		if m.Match(f.Name) {
			out = append(out, f)
		}
	}
	return out
}

// HasRecipient reports whether rcpt is one of the recorded recipients.
// Addresses compare case-insensitively in the domain and exactly in the local
// part, as RFC 5321 requires of a relay; Exchange itself never varies case
// between the legs, so an exact local part costs nothing.
func (r *Record) HasRecipient(rcpt string) bool {
	for _, x := range r.Rcpts {
		if SameAddress(x, rcpt) {
			return true
		}
	}
	return false
}

// SameAddress compares two envelope addresses: local parts exactly, domains
// case-insensitively.
func SameAddress(a, b string) bool {
	ai, bi := bytes.LastIndexByte([]byte(a), '@'), bytes.LastIndexByte([]byte(b), '@')
	if ai < 0 || bi < 0 {
		return a == b
	}
	return a[:ai] == b[:bi] && bytes.EqualFold([]byte(a[ai:]), []byte(b[bi:]))
}
