package config

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

	"github.com/recallrelay/recallrelay/relay"
)

// writeCert writes a self-signed certificate for name valid until notAfter,
// and its key (mode keyMode); it returns both paths.
func writeCert(t *testing.T, dir, name string, notAfter time.Time, keyMode os.FileMode) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: notAfter.Add(-48 * time.Hour * 365), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cert, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), keyMode)
	os.Chmod(keyFile, keyMode)
	return cert, keyFile
}

// check --production lists each gap of a valid configuration with its
// field; a configuration that closes every gap lists nothing.
func TestProduction(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	good, goodKey := writeCert(t, dir, "relay.contoso.com", now.AddDate(1, 0, 0), 0o600)
	soon, soonKey := writeCert(t, dir, "soon.contoso.com", now.AddDate(0, 0, 10), 0o600)
	expired, expiredKey := writeCert(t, dir, "old.contoso.com", now.AddDate(0, 0, -1), 0o600)
	leaky, leakyKey := writeCert(t, dir, "leaky.contoso.com", now.AddDate(1, 0, 0), 0o644)

	production := func() *Config {
		c := Default()
		c.Hostname = "relay.contoso.com"
		for _, l := range []*Listener{&c.Listeners.Tenant, &c.Listeners.Return} {
			l.TLS = ListenerTLS{CertFile: good, KeyFile: goodKey, Require: true}
		}
		c.Tenant.StartTLS = relay.StartTLSRequired
		c.Tenant.ClientCertFile, c.Tenant.ClientKeyFile = good, goodKey
		c.Tenant.HELO, c.Vendors[0].HELO = "", ""
		return c
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string // "path: text" of each finding, in order
	}{
		{"production-ready", func(*Config) {}, nil},
		{"TLS off and not required", func(c *Config) {
			c.Listeners.Tenant.TLS = ListenerTLS{}
			c.Listeners.Return.TLS.Require = false
		}, []string{"listeners.tenant.tls.cert_file: TLS is off", "listeners.return.tls.require: TLS is offered but not required"}},
		{"tenant without TLS or certificate", func(c *Config) {
			c.Tenant.StartTLS = relay.StartTLSOpportunistic
			c.Tenant.ClientCertFile, c.Tenant.ClientKeyFile = "", ""
		}, []string{"tenant.starttls:", "tenant.client_cert_file: no client certificate"}},
		{"certificates expiring, expired, for another name", func(c *Config) {
			c.Listeners.Tenant.TLS.CertFile, c.Listeners.Tenant.TLS.KeyFile = soon, soonKey
			c.Tenant.ClientCertFile, c.Tenant.ClientKeyFile = expired, expiredKey
		}, []string{"listeners.tenant.tls.cert_file: " + soon + " expires on 2026-12-11, in 10 days",
			"listeners.tenant.tls.cert_file: " + soon + " does not name relay.contoso.com",
			"tenant.client_cert_file: " + expired + " expired on 2026-11-30"}},
		{"a key others can read", func(c *Config) {
			c.Listeners.Return.TLS.CertFile, c.Listeners.Return.TLS.KeyFile = leaky, leakyKey
		}, []string{"listeners.return.tls.cert_file: " + leaky + " does not name relay.contoso.com",
			"listeners.return.tls.key_file: " + leakyKey + " is readable by others (mode 0644)"}},
		{"helo and placeholders", func(c *Config) {
			c.Vendors[0].HELO = "other.contoso.com"
			c.Hostname = "relay.example.com"
			c.Tenant.Address = "contoso-com.mail.protection.outlook.com:25"
			c.Listeners.Return.AllowNets = []string{"192.0.2.0/24"}
		}, nil}, // checked below: the order depends on the hostname change
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := production()
			tt.change(c)
			var got []string
			for _, f := range c.Production(now) {
				got = append(got, f.Path+": "+f.Msg)
			}
			if tt.name == "helo and placeholders" {
				for _, want := range []string{"vendors[0].helo: \"other.contoso.com\" differs", "hostname: relay.example.com is a placeholder",
					"tenant.address: contoso-com.mail.protection.outlook.com:25 is the example's placeholder",
					"listeners.return.allow_nets[0]: 192.0.2.0/24 is a documentation range"} {
					if !strings.Contains(strings.Join(got, "\n"), want) {
						t.Errorf("findings lack %q:\n%s", want, strings.Join(got, "\n"))
					}
				}
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("findings:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(tt.want), strings.Join(tt.want, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("finding %d: %s\nwant prefix %s", i, got[i], tt.want[i])
				}
			}
		})
	}
}
