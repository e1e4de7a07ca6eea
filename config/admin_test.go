package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The admin listener: off by default; on loopback as it is; reachable from
// other hosts only with a token or insecure_open; a token file must hold
// a token.
func TestValidateAdmin(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	empty := filepath.Join(dir, "empty")
	os.WriteFile(token, []byte("s3cret-token\n"), 0o600)
	os.WriteFile(empty, []byte("\n"), 0o600)
	tests := []struct {
		name  string
		admin Admin
		want  string // "" valid, else the path and text of the one problem
	}{
		{"off", Admin{}, ""},
		{"loopback", Admin{Listen: "127.0.0.1:9025"}, ""},
		{"open without a token", Admin{Listen: ":9025"}, "admin.listen: :9025 is reachable from other hosts without a token"},
		{"open with a token", Admin{Listen: ":9025", TokenFile: token}, ""},
		{"open, accepted", Admin{Listen: "[::]:9025", InsecureOpen: true}, ""},
		{"empty token", Admin{Listen: "127.0.0.1:9025", TokenFile: empty}, "admin.token_file: " + empty + " is empty"},
		{"missing token", Admin{Listen: "127.0.0.1:9025", TokenFile: filepath.Join(dir, "nope")}, "admin.token_file:"},
		{"bad address", Admin{Listen: "nowhere"}, "admin.listen:"},
		{"certificate without key", Admin{Listen: "127.0.0.1:9025", TLS: AdminTLS{CertFile: token}}, "admin.tls.key_file: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Admin = tt.admin
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate = %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
	a := Admin{TokenFile: token}
	if tok, err := a.Token(); err != nil || tok != "s3cret-token" {
		t.Errorf("Token = %q, %v", tok, err)
	}
}
