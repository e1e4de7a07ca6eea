package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/recallrelay/recallrelay/metrics"
)

// certFile is a certificate and key loaded from PEM files, reloadable while
// TLS configurations that use it are live.
type certFile struct {
	certPath, keyPath string
	cur               atomic.Pointer[tls.Certificate]
}

func (c *certFile) load() error {
	cert, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", c.certPath, err)
	}
	c.cur.Store(&cert)
	return nil
}

func (c *certFile) server(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

func (c *certFile) client(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// certSet tracks every certificate the process uses, for SIGHUP.
type certSet struct {
	mu    sync.Mutex
	files []*certFile
}

// open loads a certificate and registers it for reload. A pair opened
// before is loaded again and shared, so a configuration reloaded on SIGHUP
// reuses the certificates the running one has (a failed load leaves the
// certificate in force as it was).
func (s *certSet) open(certPath, keyPath string) (*certFile, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.files {
		if c.certPath == certPath && c.keyPath == keyPath {
			return c, c.load()
		}
	}
	c := &certFile{certPath: certPath, keyPath: keyPath}
	if err := c.load(); err != nil {
		return nil, err
	}
	s.files = append(s.files, c)
	return c, nil
}

// reload reloads every certificate; one that fails to load keeps its old
// certificate in force, and the errors are returned together.
func (s *certSet) reload() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, c := range s.files {
		if err := c.load(); err != nil {
			errs = append(errs, err)
		}
	}
	return len(s.files) - len(errs), errors.Join(errs...)
}

// expiry lists when each certificate in force expires, for the metrics.
func (s *certSet) expiry() []metrics.CertExpiry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []metrics.CertExpiry
	for _, c := range s.files {
		if cert := c.cur.Load(); cert != nil && cert.Leaf != nil {
			out = append(out, metrics.CertExpiry{Name: c.certPath, NotAfter: cert.Leaf.NotAfter})
		}
	}
	return out
}
