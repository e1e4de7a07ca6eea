// Package tlsflags defines the command-line flags of an SMTP client that
// speaks STARTTLS to a server and may present a client certificate: the
// flags "fakemta send" and "recallrelay conformance" share, under their own
// prefixes.
package tlsflags

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
)

// Client holds the STARTTLS flags of one SMTP client. Register defines
// them; Config turns them into a tls.Config.
type Client struct {
	// StartTLS makes the client issue STARTTLS and fail without it.
	StartTLS bool
	// ServerName is the name expected in the server's certificate; the
	// host of the server's address when empty.
	ServerName string
	// CAFile is a PEM bundle of roots trusted instead of the system's.
	CAFile string
	// CertFile and KeyFile are a PEM certificate chain presented to the
	// server (mutual TLS) and its private key; both or neither.
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any server certificate.
	InsecureSkipVerify bool

	prefix string // of the flag names, for error messages
}

// Register defines the flags of a new Client on fs, each name prefixed
// with prefix ("" or, say, "vendor-"): STARTTLS, TLS-SERVER-NAME, CA-FILE,
// CLIENT-CERT, CLIENT-KEY and INSECURE-SKIP-VERIFY in lower case.
// starttlsUsage is the help of the STARTTLS flag; addrFlag names the flag
// whose host is the default server name.
func Register(fs *flag.FlagSet, prefix, addrFlag, starttlsUsage string) *Client {
	c := &Client{prefix: prefix}
	st := "--" + prefix + "starttls"
	fs.BoolVar(&c.StartTLS, prefix+"starttls", false, starttlsUsage)
	fs.StringVar(&c.ServerName, prefix+"tls-server-name", "",
		fmt.Sprintf("with %s, the `NAME` expected in the server's certificate (default: the host of --%s)", st, addrFlag))
	fs.StringVar(&c.CAFile, prefix+"ca-file", "", "with "+st+", PEM roots trusted instead of the system's, from `FILE`")
	fs.StringVar(&c.CertFile, prefix+"client-cert", "",
		fmt.Sprintf("with %s, a PEM certificate chain `FILE` to present (mutual TLS); needs --%sclient-key", st, prefix))
	fs.StringVar(&c.KeyFile, prefix+"client-key", "", fmt.Sprintf("the PEM private key `FILE` of --%sclient-cert", prefix))
	fs.BoolVar(&c.InsecureSkipVerify, prefix+"insecure-skip-verify", false, "with "+st+", accept any server certificate")
	return c
}

// Set lists the flags of c that are set, as "--name", in the order
// Register defines them.
func (c *Client) Set() []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"starttls", c.StartTLS}, {"tls-server-name", c.ServerName != ""}, {"ca-file", c.CAFile != ""},
		{"client-cert", c.CertFile != ""}, {"client-key", c.KeyFile != ""}, {"insecure-skip-verify", c.InsecureSkipVerify},
	} {
		if f.set {
			out = append(out, "--"+c.prefix+f.name)
		}
	}
	return out
}

// Config returns the TLS configuration of the flags for a server at addr
// (host:port), with the CA bundle and client certificate loaded; nil
// without STARTTLS. It fails when a flag is given that needs STARTTLS, or
// one of the client certificate and key without the other, naming the
// flags, and when a file does not load.
func (c *Client) Config(addr string) (*tls.Config, error) {
	flagName := func(name string) string { return "--" + c.prefix + name }
	if !c.StartTLS {
		if set := c.Set(); len(set) > 0 {
			verb := "needs"
			if len(set) > 1 {
				verb = "need"
			}
			return nil, fmt.Errorf("%s %s %s", joinAnd(set), verb, flagName("starttls"))
		}
		return nil, nil
	}
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		return nil, fmt.Errorf("%s needs %s", flagName("client-cert"), flagName("client-key"))
	case c.KeyFile != "" && c.CertFile == "":
		return nil, fmt.Errorf("%s needs %s", flagName("client-key"), flagName("client-cert"))
	}
	cfg := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flagName("ca-file"), err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s: no PEM certificates", flagName("ca-file"), c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flagName("client-cert"), err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ServerConfig returns the TLS configuration of a server that offers
// STARTTLS with the PEM certificate chain in certFile and its key in
// keyFile, whose flags are named certFlag and keyFlag; nil when both are
// empty.
func ServerConfig(certFlag, certFile, keyFlag, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case keyFile == "":
		return nil, fmt.Errorf("--%s needs --%s", certFlag, keyFlag)
	case certFile == "":
		return nil, fmt.Errorf("--%s needs --%s", keyFlag, certFlag)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", certFlag, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// joinAnd joins items as "a", "a and b" or "a, b and c".
func joinAnd(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
