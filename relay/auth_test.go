package relay_test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/recallrelay/recallrelay/relay"
)

// mailOverTLS runs STARTTLS (presenting certs, if any), optional AUTH, and
// MAIL FROM on the return leg; it returns MAIL's error.
func mailOverTLS(t *testing.T, addr string, ca *testCA, certs []tls.Certificate, auth sasl.Client) (authErr, mailErr error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: ca.pool, ServerName: "relay.test", Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.CommandTimeout = 5 * time.Second
	if auth != nil {
		if authErr = c.Auth(auth); authErr != nil {
			return authErr, nil
		}
	}
	return nil, c.Mail("a@contoso.com", nil)
}

// The return leg can require vendors to authenticate: by a client
// certificate whose name is listed, or by AUTH after STARTTLS.
func TestReturnLegAuthentication(t *testing.T) {
	ca := newCA(t)
	stranger := newCA(t)
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	pwfile := filepath.Join(t.TempDir(), "users")
	os.WriteFile(pwfile, []byte("# vendors\nsigvendor:"+string(hash)+"\n"), 0o600)
	users, err := relay.LoadPasswordFile(pwfile)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *relay.Config) {
		tc := ca.serverTLS(t, "relay.test")
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		tc.ClientCAs = ca.pool
		c.Return.TLS = tc
		c.Return.ClientCertNames = []string{"mail.sigvendor.example"}
		c.Return.Users = users
	})

	tests := []struct {
		name     string
		certs    []tls.Certificate
		auth     sasl.Client
		wantAuth int // 0: no AUTH error expected
		wantMail int // 0: MAIL accepted
	}{
		{"listed certificate", []tls.Certificate{ca.clientCert(t, "mail.sigvendor.example")}, nil, 0, 0},
		{"certificate not listed", []tls.Certificate{ca.clientCert(t, "mail.other.example")}, nil, 0, 530},
		{"certificate from another CA", []tls.Certificate{stranger.clientCert(t, "mail.sigvendor.example")}, nil, 0, -1},
		{"no certificate, no AUTH", nil, nil, 0, 530},
		{"AUTH PLAIN", nil, sasl.NewPlainClient("", "sigvendor", "s3cret"), 0, 0},
		{"AUTH LOGIN", nil, sasl.NewLoginClient("sigvendor", "s3cret"), 0, 0},
		{"wrong password", nil, sasl.NewPlainClient("", "sigvendor", "guess"), 535, 0},
		{"unknown user", nil, sasl.NewPlainClient("", "nobody", "s3cret"), 535, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authErr, mailErr := mailOverTLS(t, h.relay.ReturnAddr(), ca, tt.certs, tt.auth)
			if tt.wantMail == -1 {
				// An untrusted certificate fails the TLS handshake itself.
				if mailErr == nil {
					t.Fatal("untrusted certificate accepted")
				}
				return
			}
			if code := smtpCode(authErr); code != tt.wantAuth {
				t.Fatalf("AUTH: %v, want code %d", authErr, tt.wantAuth)
			}
			if tt.wantAuth != 0 {
				return
			}
			if code := smtpCode(mailErr); code != tt.wantMail {
				t.Fatalf("MAIL: %v, want code %d", mailErr, tt.wantMail)
			}
		})
	}
	if !strings.Contains(h.logs.String(), `"user":"nobody"`) || !strings.Contains(h.logs.String(), "authentication failed") {
		t.Errorf("failed AUTH not logged")
	}

	// Without TLS, AUTH is refused (go-smtp: 523 5.7.10), and so is MAIL.
	c := dial(t, h.relay.ReturnAddr())
	c.cmd(523, "AUTH PLAIN AHNpZ3ZlbmRvcgBzM2NyZXQ=")
	c.cmd(530, "MAIL FROM:<a@contoso.com>")
}

func smtpCode(err error) int {
	if err == nil {
		return 0
	}
	if se, ok := err.(*smtp.SMTPError); ok {
		return se.Code
	}
	return -1
}

func TestLoadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"no colon":   "sigvendor\n",
		"not bcrypt": "sigvendor:plaintext\n",
		"empty":      "# nothing\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := relay.LoadPasswordFile(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
