// Package deploy_test checks the packaging under deploy/: the systemd unit
// (systemd_test.go), the container image and the compose smoke test
// (docker_test.go), the Kubernetes manifests (kubernetes_test.go) and the
// release script (release_test.go). Each relay configuration they ship is
// validated by the relay's own configuration code, with the files it names
// (secrets, tokens, certificates) replaced by test files at the paths the
// deployment mounts them.
package deploy_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/internal/testpki"
)

// testSecret is reference key material the relay accepts.
var testSecret = "base64:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))

// mountedFiles maps a path inside a deployment (a container, a pod) to the
// content a test gives the file there.
type mountedFiles map[string]string

// fileFields returns a pointer to every field of c that names a file the
// relay reads, by its configuration path.
func fileFields(c *config.Config) map[string]*string {
	f := map[string]*string{
		"rules_file":              &c.RulesFile,
		"admin.token_file":        &c.Admin.TokenFile,
		"admin.tls.cert_file":     &c.Admin.TLS.CertFile,
		"admin.tls.key_file":      &c.Admin.TLS.KeyFile,
		"tenant.client_cert_file": &c.Tenant.ClientCertFile,
		"tenant.client_key_file":  &c.Tenant.ClientKeyFile,
		"tenant.ca_file":          &c.Tenant.CAFile,
	}
	for _, l := range []struct {
		name string
		l    *config.Listener
	}{{"listeners.tenant", &c.Listeners.Tenant}, {"listeners.return", &c.Listeners.Return}} {
		f[l.name+".tls.cert_file"] = &l.l.TLS.CertFile
		f[l.name+".tls.key_file"] = &l.l.TLS.KeyFile
		f[l.name+".tls.client_ca_file"] = &l.l.TLS.ClientCAFile
		f[l.name+".auth.users_file"] = &l.l.Auth.UsersFile
	}
	for i := range c.Vendors {
		p := "vendors[" + strconv.Itoa(i) + "]"
		f[p+".client_cert_file"] = &c.Vendors[i].ClientCertFile
		f[p+".client_key_file"] = &c.Vendors[i].ClientKeyFile
		f[p+".ca_file"] = &c.Vendors[i].CAFile
	}
	for i := range c.Reference.Keys {
		f["reference.keys["+strconv.Itoa(i)+"].secret_file"] = &c.Reference.Keys[i].SecretFile
	}
	return f
}

// validateRelayConfig parses a relay configuration as the relay does
// (config.Parse, ApplyEnv with env, Validate, CompileRules), after moving
// every file it names to a temporary copy of the content files gives the
// path it names. A file the configuration names that files lacks is an
// error: the deployment does not provide it. It returns the parsed
// configuration (with the original paths) for further checks.
func validateRelayConfig(t *testing.T, data []byte, source string, files mountedFiles, env map[string]string) (*config.Config, error) {
	t.Helper()
	c, err := config.Parse(data, source)
	if err != nil {
		return nil, err
	}
	orig, err := config.Parse(data, source)
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	fields := fileFields(c)
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	var missing []string
	for i, name := range names {
		p := fields[name]
		if *p == "" {
			continue
		}
		content, ok := files[*p]
		if !ok {
			missing = append(missing, fmt.Sprintf("%s: %s is not provided by the deployment", name, *p))
			continue
		}
		local := filepath.Join(dir, strconv.Itoa(i)+"-"+filepath.Base(*p))
		if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		*p = local
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s:\n%s", source, strings.Join(missing, "\n"))
	}
	c.ApplyEnv(func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if _, err := c.CompileRules(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return orig, nil
}

// testCertificate returns a certificate for names, for server and client
// use, and its key, in PEM.
func testCertificate(t *testing.T, names ...string) (certPEM, keyPEM string) {
	t.Helper()
	chain, key := testpki.PEM(t, testpki.NewCA(t, "deploy test CA").IssueNames(t, names...))
	return string(chain), string(key)
}

// decodeStrict decodes one YAML document into v, refusing unknown and
// duplicate keys.
func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// portOf returns the port of a host:port address, or -1.
func portOf(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(addr[i+1:])
	if err != nil {
		return -1
	}
	return n
}
