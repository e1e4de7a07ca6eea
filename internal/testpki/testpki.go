// Package testpki issues certificates for tests: a throwaway CA whose
// certificates serve loopback SMTP servers and the clients that present
// one (mutual TLS), in memory or as the PEM files the commands' flags read,
// and self-signed server certificates (SelfSigned), which fake servers
// also make up at run time.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
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
	cert, err := create(&x509.Certificate{
		Subject:   pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	if err != nil {
		t.Fatalf("testpki: CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return &CA{Cert: cert.Leaf, Pool: pool, key: cert.PrivateKey.(*ecdsa.PrivateKey)}
}

// SelfSigned makes a self-signed ECDSA server certificate with the subject
// common name cn, for the DNS names dnsNames and the loopback addresses
// 127.0.0.1 and ::1, valid from an hour before now until validFor after
// now; its Leaf is set. Unlike the rest of the package it returns an error
// instead of failing a test, for programs that make up a certificate at
// run time.
func SelfSigned(cn string, dnsNames []string, validFor time.Duration) (tls.Certificate, error) {
	cert, err := create(&x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dnsNames,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validFor),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, nil, nil)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed certificate: %w", err)
	}
	return cert, nil
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
	cert, err := create(&x509.Certificate{
		Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notBefore, NotAfter: notAfter,
		ExtKeyUsage: uses, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca.Cert, ca.key)
	if err != nil {
		t.Fatalf("testpki: certificate for %s: %v", names[0], err)
	}
	return cert
}

// create makes a fresh P-256 key and a certificate for it from tmpl, given
// a random serial number, signed by parent's key parentKey, or self-signed
// when parent is nil. The result's Leaf is set.
func create(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key: %w", err)
	}
	tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("serial number: %w", err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
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
