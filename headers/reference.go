package headers

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultRefHeader is the name of the reference header stamped on the way out.
const DefaultRefHeader = "X-RecallRelay-Ref"

// Reference verification errors. Each is wrapped with detail; test with errors.Is.
var (
	ErrRefMalformed    = errors.New("reference malformed")
	ErrRefUnknownKey   = errors.New("reference signed with an unknown key id")
	ErrRefBadSignature = errors.New("reference signature invalid")
)

// Key is one HMAC-SHA256 key for signing references.
type Key struct {
	ID     string
	Secret []byte
}

// String never shows the secret.
func (k Key) String() string { return "key " + k.ID + " (secret redacted)" }

// GoString never shows the secret.
func (k Key) GoString() string { return k.String() }

// SignerConfig configures a Signer.
type SignerConfig struct {
	// SigningKey is the id of the key that signs new references.
	SigningKey string
	// Keys verify references; SigningKey must be among them. Keep retired
	// keys here until every reference they signed has expired.
	Keys []Key
}

// Signer stamps and verifies references. A reference names an origin record
// and proves that this relay (someone holding one of its keys) issued it.
//
// The value format is
//
//	v=1; k=<key id>; r=<ref>; h=<hop>; t=<unix seconds>; s=<base64url HMAC-SHA256>
//
// with the MAC over "recallrelay-ref/1", key id, ref, hop and time,
// NUL-separated. The hop is the position in the message's vendor chain that
// the message was sent to (0 for the first vendor); h is omitted for hop 0.
type Signer struct {
	signing Key
	keys    map[string][]byte
}

// MinKeyBytes is the shortest secret a Signer accepts.
const MinKeyBytes = 32

// maxRefValue bounds what Verify parses.
const maxRefValue = 512

// NewSigner checks cfg and returns a Signer.
func NewSigner(cfg SignerConfig) (*Signer, error) {
	s := &Signer{keys: make(map[string][]byte)}
	for _, k := range cfg.Keys {
		if !validKeyID(k.ID) {
			return nil, fmt.Errorf("reference key id %q: use 1-32 of [A-Za-z0-9_-]", k.ID)
		}
		if len(k.Secret) < MinKeyBytes {
			return nil, fmt.Errorf("reference key %s: secret has %d bytes, need at least %d", k.ID, len(k.Secret), MinKeyBytes)
		}
		if _, dup := s.keys[k.ID]; dup {
			return nil, fmt.Errorf("reference key %s: listed twice", k.ID)
		}
		s.keys[k.ID] = append([]byte(nil), k.Secret...)
	}
	sec, ok := s.keys[cfg.SigningKey]
	if !ok {
		return nil, fmt.Errorf("reference signing key %q is not among the keys", cfg.SigningKey)
	}
	s.signing = Key{ID: cfg.SigningKey, Secret: sec}
	return s, nil
}

// SigningKeyID is the id of the key that signs new references.
func (s *Signer) SigningKeyID() string { return s.signing.ID }

func validKeyID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

var refEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewRef returns a fresh random record reference: 128 bits, base32, lower case.
func NewRef() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // cannot happen on supported platforms
	}
	return strings.ToLower(refEncoding.EncodeToString(b[:]))
}

// DeriveRef returns the reference for a message identified by material:
// the same material gives the same reference, so a message the tenant sends
// again (a retry after a lost reply, or after a vendor's temporary failure)
// maps to the same origin record and goes out byte-identical. The value is
// a keyed hash: nobody without the signing key can compute or guess it.
// It has the shape NewRef produces.
func (s *Signer) DeriveRef(material []byte) string {
	m := hmac.New(sha256.New, s.signing.Secret)
	m.Write([]byte("recallrelay-ref-derive/1\x00"))
	m.Write(material)
	return strings.ToLower(refEncoding.EncodeToString(m.Sum(nil)[:16]))
}

// ValidRef reports whether ref has the shape NewRef produces.
func ValidRef(ref string) bool {
	if len(ref) != 26 {
		return false
	}
	for _, c := range ref {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// MaxHop bounds the hop index, and so the length of a vendor chain.
const MaxHop = 15

// Stamp returns the header value that references ref at chain position hop
// (0 ≤ hop ≤ MaxHop), issued at t.
func (s *Signer) Stamp(ref string, hop int, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	hs := strconv.Itoa(hop)
	mac := s.mac(s.signing.Secret, s.signing.ID, ref, hs, ts)
	v := "v=1; k=" + s.signing.ID + "; r=" + ref + "; "
	if hop != 0 {
		v += "h=" + hs + "; "
	}
	return v + "t=" + ts + "; s=" + base64.RawURLEncoding.EncodeToString(mac)
}

func (s *Signer) mac(secret []byte, kid, ref, hop, ts string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("recallrelay-ref/1\x00" + kid + "\x00" + ref + "\x00" + hop + "\x00" + ts))
	return m.Sum(nil)
}

// Verified is a reference that passed verification.
type Verified struct {
	Ref    string
	KeyID  string
	Hop    int
	Issued time.Time
}

// Verify parses and checks a reference header value (unfolded or folded:
// whitespace between tags is ignored, as vendors may re-fold headers).
func (s *Signer) Verify(value string) (Verified, error) {
	if len(value) > maxRefValue {
		return Verified{}, fmt.Errorf("%w: %d bytes", ErrRefMalformed, len(value))
	}
	tags := map[string]string{}
	for _, part := range strings.Split(value, ";") {
		part = strings.TrimSpace(strings.NewReplacer("\r", "", "\n", "", "\t", " ").Replace(part))
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return Verified{}, fmt.Errorf("%w: tag %q has no value", ErrRefMalformed, part)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if _, dup := tags[k]; dup {
			return Verified{}, fmt.Errorf("%w: tag %s repeated", ErrRefMalformed, k)
		}
		tags[k] = v
	}
	if tags["v"] != "1" {
		return Verified{}, fmt.Errorf("%w: version %q", ErrRefMalformed, tags["v"])
	}
	kid, ref, ts, sig := tags["k"], tags["r"], tags["t"], tags["s"]
	hs, hasHop := tags["h"]
	hop := 0
	if hasHop {
		n, err := strconv.Atoi(hs)
		if err != nil || n < 1 || n > MaxHop || strconv.Itoa(n) != hs {
			return Verified{}, fmt.Errorf("%w: hop %q", ErrRefMalformed, hs)
		}
		hop = n
	}
	if !ValidRef(ref) {
		return Verified{}, fmt.Errorf("%w: ref %q", ErrRefMalformed, ref)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || unix < 0 || strconv.FormatInt(unix, 10) != ts {
		return Verified{}, fmt.Errorf("%w: time %q", ErrRefMalformed, ts)
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(mac) != sha256.Size {
		return Verified{}, fmt.Errorf("%w: signature encoding", ErrRefMalformed)
	}
	secret, ok := s.keys[kid]
	if !ok {
		return Verified{}, fmt.Errorf("%w: %q", ErrRefUnknownKey, kid)
	}
	if !hmac.Equal(mac, s.mac(secret, kid, ref, strconv.Itoa(hop), ts)) {
		return Verified{}, fmt.Errorf("%w (key %s)", ErrRefBadSignature, kid)
	}
	return Verified{Ref: ref, KeyID: kid, Hop: hop, Issued: time.Unix(unix, 0)}, nil
}
