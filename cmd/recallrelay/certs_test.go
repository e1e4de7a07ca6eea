package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeSelfSigned writes a self-signed certificate for name and its key.
func writeSelfSigned(t *testing.T, certPath, keyPath, name string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func servedName(t *testing.T, c *certFile) string {
	t.Helper()
	cert, _ := c.server(nil)
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

// SIGHUP reloads certificates in place; a file that no longer loads keeps
// the certificate in force and is reported.
func TestCertReload(t *testing.T) {
	dir := t.TempDir()
	cp, kp := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeSelfSigned(t, cp, kp, "old.example")
	var set certSet
	c, err := set.open(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	if n := servedName(t, c); n != "old.example" {
		t.Fatalf("served %s", n)
	}
	writeSelfSigned(t, cp, kp, "new.example")
	if n, err := set.reload(); n != 1 || err != nil {
		t.Fatalf("reload: %d, %v", n, err)
	}
	if n := servedName(t, c); n != "new.example" {
		t.Fatalf("after reload served %s", n)
	}
	os.WriteFile(kp, []byte("not a key"), 0o600)
	if n, err := set.reload(); n != 0 || err == nil {
		t.Fatalf("broken reload: %d, %v", n, err)
	}
	if n := servedName(t, c); n != "new.example" {
		t.Fatalf("a broken file replaced the certificate: %s", n)
	}
}

// A certificate outside its validity makes the instance not ready, and
// says which; replacing it and reloading makes it ready again.
func TestCertValidity(t *testing.T) {
	dir := t.TempDir()
	good, gk := filepath.Join(dir, "good.pem"), filepath.Join(dir, "good-key.pem")
	bad, bk := filepath.Join(dir, "bad.pem"), filepath.Join(dir, "bad-key.pem")
	writeSelfSigned(t, good, gk, "good.example")
	writeSelfSigned(t, bad, bk, "bad.example") // valid for an hour either side of now
	var set certSet
	for _, p := range [][2]string{{good, gk}, {bad, bk}} {
		if _, err := set.open(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	tests := []struct {
		name string
		at   time.Time
		want []string // files named in the error; none: valid
	}{
		{"now", now, nil},
		{"two hours on: both expired", now.Add(2 * time.Hour), []string{good + " expired", bad + " expired"}},
		{"two hours ago: neither valid yet", now.Add(-2 * time.Hour), []string{good + " is not valid before", bad + " is not valid before"}},
	}
	for _, tt := range tests {
		err := set.invalid(tt.at)
		if (err == nil) != (len(tt.want) == 0) {
			t.Errorf("%s: invalid = %v, want %q", tt.name, err, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v does not say %q", tt.name, err, w)
			}
		}
	}
}
