package relay_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
)

// testCA issues certificates for loopback servers.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "recallrelay test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue signs a certificate for name with the given use.
func (ca *testCA) issue(t *testing.T, name string, use x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{use}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca *testCA) serverTLS(t *testing.T, name string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.issue(t, name, x509.ExtKeyUsageServerAuth)}}
}

func (ca *testCA) clientCert(t *testing.T, name string) tls.Certificate {
	return ca.issue(t, name, x509.ExtKeyUsageClientAuth)
}

// STARTTLS to the next hop: used when offered and verified against the
// configured roots; a certificate that does not verify, or a next hop that
// does not offer STARTTLS when it is required, is a 4xx, never a fallback to
// plaintext and never a lost message.
func TestNextHopTLS(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	tests := []struct {
		name     string
		server   *tls.Config
		policy   relay.StartTLSMode
		roots    *testCA
		wantCode int
		wantText string
		wantTLS  bool
	}{
		{"verified", ca.serverTLS(t, "vendor.test"), relay.StartTLSRequired, ca, 250, "", true},
		{"opportunistic uses it", ca.serverTLS(t, "vendor.test"), relay.StartTLSOpportunistic, ca, 250, "", true},
		{"opportunistic without offer", nil, relay.StartTLSOpportunistic, ca, 250, "", false},
		{"required without offer", nil, relay.StartTLSRequired, ca, 454, "4.7.10 vendor does not offer STARTTLS", false},
		{"untrusted certificate", other.serverTLS(t, "vendor.test"), relay.StartTLSRequired, ca, 454, "4.7.5 vendor: TLS failed", false},
		{"wrong name", ca.serverTLS(t, "elsewhere.test"), relay.StartTLSOpportunistic, ca, 454, "4.7.5", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vendor := startRecorder(t, tt.server)
			h := newHarness(t, func(c *relay.Config) {
				c.Vendors[0].Address = vendor.Addr()
				c.Vendors[0].StartTLS = tt.policy
				c.Vendors[0].TLS = &tls.Config{RootCAs: tt.roots.pool, ServerName: "vendor.test"}
			})
			c := dial(t, h.relay.TenantAddr())
			code, text := c.try("MAIL FROM:<a@contoso.com>")
			if code != 250 {
				if code != tt.wantCode || !strings.Contains(text, tt.wantText) {
					t.Fatalf("MAIL: %d %s; want %d …%s…", code, text, tt.wantCode, tt.wantText)
				}
				return
			}
			c.cmd(250, "RCPT TO:<b@fabrikam.example>")
			c.cmd(354, "DATA")
			c.write(msg + ".\r\n")
			c.expect(tt.wantCode)
			d, err := vendor.WaitDeliveries(1, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if d[0].TLS != tt.wantTLS {
				t.Errorf("delivered over TLS = %v, want %v", d[0].TLS, tt.wantTLS)
			}
		})
	}
}

// The listeners offer STARTTLS, and the Received field records it.
func TestListenerSTARTTLS(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t, func(c *relay.Config) { c.Tenant.TLS = ca.serverTLS(t, "relay.test") })
	res := (&relaytest.Sender{Addr: h.relay.TenantAddr(), MaxAttempts: 1,
		TLSConfig: &tls.Config{RootCAs: ca.pool, ServerName: "relay.test"}}).Send(t.Context(),
		relaytest.Message{From: "a@contoso.com", To: []string{"b@fabrikam.example"}, Data: []byte(msg)})
	if !res.Accepted {
		t.Fatalf("%v %q", res.Err, res.Replies)
	}
	d, err := h.vendor.WaitDeliveries(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(d[0].Data), "with ESMTPS") || !strings.Contains(string(d[0].Data), "(TLS 1.3\r\n TLS_AES") {
		t.Errorf("Received does not record TLS:\n%s", d[0].Data)
	}
}

// The EHLO before STARTTLS towards a next hop names the relay as the one
// after it does (go-smtp's own STARTTLS would say "localhost"), and data
// sent after the STARTTLS reply but before the handshake is refused as
// the command injection it would be.
func TestNextHopEHLOBeforeSTARTTLS(t *testing.T) {
	for _, inject := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ehlo := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			c.Write([]byte("220 hop.test ESMTP\r\n"))
			line, _ := br.ReadString('\n')
			ehlo <- strings.TrimSpace(line)
			c.Write([]byte("250-hop.test\r\n250 STARTTLS\r\n"))
			br.ReadString('\n')
			if inject {
				c.Write([]byte("220 go ahead\r\n250 injected\r\n"))
			} else {
				c.Write([]byte("220 go ahead\r\n"))
			}
			br.ReadString('\n') // the ClientHello, or nothing
		}()
		h := relay.NextHop{Name: "hop", Address: ln.Addr().String(), StartTLS: relay.StartTLSRequired, HELO: "relay.contoso.example",
			ConnectTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second}
		_, err = relay.Probe(h, "relay.contoso.example")
		ln.Close()
		if got := <-ehlo; got != "EHLO relay.contoso.example" {
			t.Errorf("the next hop heard %q before STARTTLS, want the relay's name", got)
		}
		if err == nil {
			t.Fatal("Probe succeeded without a TLS handshake")
		}
		if inject && !strings.Contains(err.Error(), "before the handshake") {
			t.Errorf("data after the STARTTLS reply: %v, want it refused as such", err)
		}
	}
}
