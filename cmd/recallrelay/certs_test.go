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
