package config

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/recallrelay/recallrelay/relay"
)

// CertExpiryWarning is how close to its expiry a certificate is reported
// by Production.
const CertExpiryWarning = 30 * 24 * time.Hour

// Production lists what a valid configuration leaves below what a
// production relay needs, each with its field and line: TLS that is off or
// not required on a listener; a tenant target without required STARTTLS
// or without the client certificate Exchange's inbound connector checks;
// a helo that differs from hostname; placeholder values of the example
// file; certificates that expire within CertExpiryWarning (or have), or
// whose names do not cover what they serve; secret files others may read.
// Open listeners are not among them: Validate refuses those already.
func (c *Config) Production(now time.Time) []FieldError {
	v := &validator{src: c.src}
	for _, lg := range c.legs() {
		t := lg.l.TLS
		switch {
		case t.CertFile == "":
			v.add(lg.path+".tls.cert_file", "TLS is off: set a certificate and tls.require: true")
		case !t.Require:
			v.add(lg.path+".tls.require", "TLS is offered but not required: set it to true")
		}
		if t.CertFile != "" {
			v.certificate(lg.path+".tls.cert_file", t.CertFile, c.Hostname, now)
		}
		v.secretFile(lg.path+".tls.key_file", t.KeyFile)
	}
	if c.Tenant.StartTLS != relay.StartTLSRequired {
		v.add("tenant.starttls", "%q: Exchange Online's inbound connector requires TLS; set required", c.Tenant.StartTLS)
	}
	if c.Tenant.ClientCertFile == "" {
		v.add("tenant.client_cert_file", "no client certificate: Exchange's inbound connector identifies the relay by it (TlsSenderCertificateName)")
	} else {
		v.certificate("tenant.client_cert_file", c.Tenant.ClientCertFile, "", now)
		v.secretFile("tenant.client_key_file", c.Tenant.ClientKeyFile)
	}
	for i, vd := range c.Vendors {
		path := fmt.Sprintf("vendors[%d]", i)
		if vd.HELO != "" && !strings.EqualFold(vd.HELO, c.Hostname) {
			v.add(path+".helo", "%q differs from hostname %q: leave it empty", vd.HELO, c.Hostname)
		}
		if vd.ClientCertFile != "" {
			v.certificate(path+".client_cert_file", vd.ClientCertFile, "", now)
			v.secretFile(path+".client_key_file", vd.ClientKeyFile)
		}
		if strings.HasSuffix(strings.ToLower(hostOf(vd.Address)), ".example") {
			v.add(path+".address", "%s is the example's placeholder", vd.Address)
		}
	}
	if c.Tenant.HELO != "" && !strings.EqualFold(c.Tenant.HELO, c.Hostname) {
		v.add("tenant.helo", "%q differs from hostname %q: leave it empty", c.Tenant.HELO, c.Hostname)
	}
	if strings.HasSuffix(strings.ToLower(c.Hostname), ".example.com") || strings.HasSuffix(strings.ToLower(c.Hostname), ".example") {
		v.add("hostname", "%s is a placeholder: set the name vendors and Exchange connect to", c.Hostname)
	}
	if strings.HasPrefix(strings.ToLower(c.Tenant.Address), "contoso-com.") {
		v.add("tenant.address", "%s is the example's placeholder: use your tenant's MX host", c.Tenant.Address)
	}
	for i, n := range c.Listeners.Return.AllowNets {
		if p, err := ParseNet(n); err == nil && documentationNet(p) {
			v.add(fmt.Sprintf("listeners.return.allow_nets[%d]", i), "%s is a documentation range, the example's placeholder: list your vendors' sending addresses", n)
		}
	}
	for i, k := range c.Reference.Keys {
		v.secretFile(fmt.Sprintf("reference.keys[%d].secret_file", i), k.SecretFile)
	}
	v.secretFile("admin.token_file", c.Admin.TokenFile)
	return v.errs
}

// certificate reports a certificate file that expires within
// CertExpiryWarning (or has), or whose names do not cover name ("" skips
// the name).
func (v *validator) certificate(path, file, name string, now time.Time) {
	data, err := os.ReadFile(file)
	if err != nil {
		v.add(path, "%v", err)
		return
	}
	block, _ := pem.Decode(data)
	if block == nil {
		v.add(path, "%s: no PEM certificate", file)
		return
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		v.add(path, "%s: %v", file, err)
		return
	}
	switch left := cert.NotAfter.Sub(now); {
	case left <= 0:
		v.add(path, "%s expired on %s", file, cert.NotAfter.UTC().Format(time.DateOnly))
	case left < CertExpiryWarning:
		v.add(path, "%s expires on %s, in %d days", file, cert.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
	}
	if name != "" {
		if err := cert.VerifyHostname(name); err != nil {
			v.add(path, "%s does not name %s (hostname): %v", file, name, err)
		}
	}
}

// secretFile reports a file that other users may read.
func (v *validator) secretFile(path, file string) {
	if file == "" {
		return
	}
	fi, err := os.Stat(file)
	if err != nil {
		return // Validate reports files it cannot read
	}
	if fi.Mode().Perm()&0o077 != 0 {
		v.add(path, "%s is readable by others (mode %04o): chmod 600", file, fi.Mode().Perm())
	}
}

// documentationNet reports the RFC 5737 and RFC 3849 documentation ranges.
func documentationNet(p netip.Prefix) bool {
	for _, d := range []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"} {
		if netip.MustParsePrefix(d).Overlaps(p) {
			return true
		}
	}
	return false
}

// hostOf is the host part of host:port, or s.
func hostOf(s string) string {
	if i := strings.LastIndexByte(s, ':'); i > 0 {
		return s[:i]
	}
	return s
}
