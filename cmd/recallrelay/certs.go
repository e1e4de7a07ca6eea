package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recallrelay/recallrelay/metrics"
	"github.com/recallrelay/recallrelay/relay"
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

// invalid returns an error naming each certificate in force that is not
// valid at now (expired, or not valid yet), nil when all are. A relay
// with such a certificate is not ready: Exchange Online's connectors
// refuse it, so mail sent to this instance would only queue.
func (s *certSet) invalid(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, c := range s.files {
		cert := c.cur.Load()
		if cert == nil || cert.Leaf == nil {
			continue
		}
		switch l := cert.Leaf; {
		case now.After(l.NotAfter):
			errs = append(errs, fmt.Errorf("certificate %s expired on %s", c.certPath, l.NotAfter.UTC().Format(time.DateOnly)))
		case now.Before(l.NotBefore):
			errs = append(errs, fmt.Errorf("certificate %s is not valid before %s", c.certPath, l.NotBefore.UTC().Format(time.RFC3339)))
		}
	}
	return errors.Join(errs...)
}

// readySource is the relay as the admin listener and the status page see
// it: ready when the relay is and every certificate in force is valid.
type readySource struct {
	*relay.Relay
	certs *certSet
	now   func() time.Time
}

func (r readySource) Ready(ctx context.Context) error {
	if err := r.Relay.Ready(ctx); err != nil {
		return err
	}
	if err := r.certs.invalid(r.now()); err != nil {
		return fmt.Errorf("%w: %s", relay.ErrNotReady, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}
