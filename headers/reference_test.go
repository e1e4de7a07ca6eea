package headers

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	k1 = Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)}
	k2 = Key{ID: "k2", Secret: bytes.Repeat([]byte{2}, 32)}
)

func signer(t testing.TB, signing string, keys ...Key) *Signer {
	t.Helper()
	s, err := NewSigner(SignerConfig{SigningKey: signing, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReferenceRoundTripAndRotation(t *testing.T) {
	at := time.Unix(1700000000, 0)
	ref := NewRef()
	if !ValidRef(ref) {
		t.Fatalf("NewRef produced invalid ref %q", ref)
	}
	old := signer(t, "k1", k1)
	v := old.Stamp(ref, 0, at)

	// After rotation k2 signs, k1 still verifies.
	rotated := signer(t, "k2", k1, k2)
	got, err := rotated.Verify(v)
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != ref || got.KeyID != "k1" || !got.Issued.Equal(at) {
		t.Errorf("Verify = %+v", got)
	}
	// The hop index is signed and comes back.
	if got, err := rotated.Verify(rotated.Stamp(ref, 3, at)); err != nil || got.Hop != 3 {
		t.Errorf("hop 3: %+v, %v", got, err)
	}
	// A vendor that re-folds the header does not break the reference.
	if _, err := rotated.Verify(strings.ReplaceAll(v, "; ", ";\r\n\t")); err != nil {
		t.Errorf("folded reference: %v", err)
	}
	// Once k1 is retired, its references are unknown.
	if _, err := signer(t, "k2", k2).Verify(v); !errors.Is(err, ErrRefUnknownKey) {
		t.Errorf("retired key: err = %v", err)
	}
}

func TestReferenceRejects(t *testing.T) {
	s := signer(t, "k1", k1, k2)
	ref := NewRef()
	good := s.Stamp(ref, 0, time.Unix(1700000000, 0))
	hop1 := s.Stamp(ref, 1, time.Unix(1700000000, 0))
	other := NewRef()
	forgedWithOwnKey := signer(t, "k1", Key{ID: "k1", Secret: bytes.Repeat([]byte{9}, 32)}).Stamp(ref, 0, time.Unix(1700000000, 0))

	tests := []struct {
		name  string
		value string
		want  error
	}{
		{"other ref, same signature", strings.Replace(good, ref, other, 1), ErrRefBadSignature},
		{"other time", strings.Replace(good, "t=1700000000", "t=1700000001", 1), ErrRefBadSignature},
		{"key id swapped", strings.Replace(good, "k=k1", "k=k2", 1), ErrRefBadSignature},
		{"forged with a guessed key", forgedWithOwnKey, ErrRefBadSignature},
		{"unknown key", strings.Replace(good, "k=k1", "k=k9", 1), ErrRefUnknownKey},
		{"empty", "", ErrRefMalformed},
		{"garbage", "hello", ErrRefMalformed},
		{"version 2", strings.Replace(good, "v=1", "v=2", 1), ErrRefMalformed},
		{"bad ref", strings.Replace(good, ref, "../../etc/passwd", 1), ErrRefMalformed},
		{"upper-case ref", strings.Replace(good, ref, strings.ToUpper(ref), 1), ErrRefMalformed},
		{"time with sign", strings.Replace(good, "t=1700000000", "t=+1700000000", 1), ErrRefMalformed},
		{"signature truncated", good[:len(good)-4], ErrRefMalformed},
		{"tag repeated", good + "; r=" + other, ErrRefMalformed},
		{"too long", good + "; x=" + strings.Repeat("a", 600), ErrRefMalformed},
		{"hop added", strings.Replace(good, "; t=", "; h=1; t=", 1), ErrRefBadSignature},
		{"hop changed", strings.Replace(hop1, "h=1", "h=2", 1), ErrRefBadSignature},
		{"hop removed", strings.Replace(hop1, "h=1; ", "", 1), ErrRefBadSignature},
		{"hop zero spelled out", strings.Replace(good, "; t=", "; h=0; t=", 1), ErrRefMalformed},
		{"hop too large", strings.Replace(hop1, "h=1", "h=16", 1), ErrRefMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Verify(tt.value); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewSignerChecksKeys(t *testing.T) {
	tests := []struct {
		name string
		cfg  SignerConfig
	}{
		{"short secret", SignerConfig{SigningKey: "k", Keys: []Key{{ID: "k", Secret: []byte("short")}}}},
		{"signing key missing", SignerConfig{SigningKey: "k3", Keys: []Key{k1}}},
		{"duplicate id", SignerConfig{SigningKey: "k1", Keys: []Key{k1, k1}}},
		{"bad id", SignerConfig{SigningKey: "k 1", Keys: []Key{{ID: "k 1", Secret: k1.Secret}}}},
	}
	for _, tt := range tests {
		if _, err := NewSigner(tt.cfg); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	if s := k1.String(); strings.Contains(s, "\x01") {
		t.Errorf("Key.String leaks the secret: %q", s)
	}
}

func TestDeriveRef(t *testing.T) {
	s := signer(t, "k1", k1)
	a := s.DeriveRef([]byte("message one"))
	if !ValidRef(a) {
		t.Fatalf("derived ref %q has the wrong shape", a)
	}
	if a != s.DeriveRef([]byte("message one")) {
		t.Error("same material, different refs")
	}
	if a == s.DeriveRef([]byte("message two")) {
		t.Error("different material, same ref")
	}
	if a == signer(t, "k2", k2).DeriveRef([]byte("message one")) {
		t.Error("the ref does not depend on the key")
	}
}
