// Package testpki issues certificates for tests: a throwaway CA whose
// certificates serve loopback SMTP servers and the clients that present
// one (mutual TLS), in memory or as the PEM files the commands' flags read.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority valid for an hour around its creation.
type CA struct {
	// Cert is the CA's certificate, Pool a pool holding only it.
	Cert *x509.Certificate
	Pool *x509.CertPool
	key  *ecdsa.PrivateKey
}

// NewCA creates a CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpki: CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testpki: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: CA certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Pool: pool, key: key}
}

// Issue signs a certificate for name (subject common name and DNS name)
// for use: x509.ExtKeyUsageServerAuth for a server,
// x509.ExtKeyUsageClientAuth for a client certificate.
func (ca *CA) Issue(t testing.TB, name string, use x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	return ca.IssueValid(t, name, use, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// IssueValid is Issue for a certificate valid from notBefore to notAfter:
// an expired one, or one not valid yet.
func (ca *CA) IssueValid(t testing.TB, name string, use x509.ExtKeyUsage, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	return ca.issue(t, []string{name}, []x509.ExtKeyUsage{use}, notBefore, notAfter)
}

// IssueNames signs a certificate for several DNS names (the first is also
// the subject common name), for server and client use, valid for an hour
// either side of now.
func (ca *CA) IssueNames(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	return ca.issue(t, names, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

func (ca *CA) issue(t testing.TB, names []string, uses []x509.ExtKeyUsage, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpki: key for %s: %v", names[0], err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notBefore, NotAfter: notAfter,
		ExtKeyUsage: uses, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("testpki: certificate for %s: %v", names[0], err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// WriteCA writes the CA's certificate as PEM to ca.pem in dir and returns
// the file's path.
func (ca *CA) WriteCA(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ca.pem")
	writePEM(t, path, "CERTIFICATE", ca.Cert.Raw)
	return path
}

// WritePair writes cert's chain and its (ECDSA) key as PEM to
// NAME.pem and NAME-key.pem in dir and returns the two paths.
func WritePair(t testing.TB, dir, name string, cert tls.Certificate) (certPath, keyPath string) {
	t.Helper()
	chain, key := PEM(t, cert)
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	for path, b := range map[string][]byte{certPath: chain, keyPath: key} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatalf("testpki: %v", err)
		}
	}
	return certPath, keyPath
}

// PEM returns cert's chain and its (ECDSA) key as PEM.
func PEM(t testing.TB, cert tls.Certificate) (chain, key []byte) {
	t.Helper()
	k, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("testpki: key is a %T, not ECDSA", cert.PrivateKey)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatalf("testpki: %v", err)
	}
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return chain, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("testpki: %v", err)
	}
}

// serial returns a random certificate serial number.
func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("testpki: serial: %v", err)
	}
	return n
}
