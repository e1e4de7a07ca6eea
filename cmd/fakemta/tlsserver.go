package main

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/recallrelay/recallrelay/internal/testpki"
	"github.com/recallrelay/recallrelay/internal/tlsflags"
)

// serverTLS holds the STARTTLS flags of a listener: a certificate from
// files or one made up at start.
type serverTLS struct {
	certFile, keyFile string
	selfSigned        bool
}

// registerServerTLS defines --tls-cert, --tls-key and --tls-self-signed on fs.
func registerServerTLS(fs *flagSet) *serverTLS {
	s := &serverTLS{}
	fs.StringVar(&s.certFile, "tls-cert", "", "offer STARTTLS with the PEM certificate chain in `FILE` (needs --tls-key)")
	fs.StringVar(&s.keyFile, "tls-key", "", "the PEM private key `FILE` of --tls-cert")
	fs.BoolVar(&s.selfSigned, "tls-self-signed", false,
		"offer STARTTLS with a self-signed certificate made up at start (clients need --insecure-skip-verify)")
	return s
}

// config returns the listener's TLS configuration, nil when no flag is set.
// name goes into a self-signed certificate.
func (s *serverTLS) config(name string) (*tls.Config, error) {
	if s.selfSigned {
		if s.certFile != "" || s.keyFile != "" {
			return nil, fmt.Errorf("--tls-self-signed and --tls-cert/--tls-key exclude each other")
		}
		cert, err := selfSignedCert(name)
		if err != nil {
			return nil, err
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	return tlsflags.ServerConfig("tls-cert", s.certFile, "tls-key", s.keyFile)
}

// selfSignedCert makes a throwaway self-signed server certificate for name,
// localhost and the loopback addresses, valid for a day.
func selfSignedCert(name string) (tls.Certificate, error) {
	return testpki.SelfSigned(name, []string{name, "localhost"}, 24*time.Hour)
}
