package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestKeyEnv(t *testing.T) {
	tests := []struct{ id, want string }{
		{"k1", "RECALLRELAY_KEY_K1"},
		{"K1", "RECALLRELAY_KEY_K1"},
		{"2025-q1", "RECALLRELAY_KEY_2025_Q1"},
		{"a_b", "RECALLRELAY_KEY_A_B"},
		{"prod.main", "RECALLRELAY_KEY_PROD_MAIN"},
	}
	for _, tt := range tests {
		if got := KeyEnv(tt.id); got != tt.want {
			t.Errorf("KeyEnv(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	secret := strings.Repeat("e", 32)
	dir := t.TempDir()
	file := filepath.Join(dir, "k2")
	if err := os.WriteFile(file, []byte(strings.Repeat("f", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c *Config)
	}{
		{"redis password", map[string]string{EnvRedisPassword: "pw1"}, func(t *testing.T, c *Config) {
			if c.Store.Redis.Password != "pw1" {
				t.Errorf("password not applied")
			}
		}},
		{"redis url replaces addrs", map[string]string{EnvRedisURL: "redis://r:6379/1"}, func(t *testing.T, c *Config) {
			r := c.Store.Redis
			if r.URL != "redis://r:6379/1" || r.Addrs != nil || r.MasterName != "" {
				t.Errorf("got url %q addrs %v master %q", string(r.URL), r.Addrs, r.MasterName)
			}
		}},
		{"key secret replaces secret_file", map[string]string{"RECALLRELAY_KEY_K2": secret}, func(t *testing.T, c *Config) {
			k := c.Reference.Keys[1]
			if b, err := k.Bytes(); err != nil || string(b) != secret || k.SecretFile != "" {
				t.Errorf("key k2: %v, secret_file %q", err, k.SecretFile)
			}
		}},
		{"key secret sets a key without source", map[string]string{"RECALLRELAY_KEY_K3": "base64:" + strings.Repeat("QUFB", 11)}, func(t *testing.T, c *Config) {
			if b, err := c.Reference.Keys[2].Bytes(); err != nil || string(b) != strings.Repeat("A", 33) {
				t.Errorf("key k3: %q, %v", b, err)
			}
		}},
		{"empty values change nothing", map[string]string{EnvRedisPassword: "", EnvRedisURL: "", "RECALLRELAY_KEY_K2": ""}, func(t *testing.T, c *Config) {
			if c.Store.Redis.Password != "file-pw" || len(c.Store.Redis.Addrs) != 2 || c.Reference.Keys[1].SecretFile != file {
				t.Errorf("empty variables changed the config: %+v", c.Store.Redis)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Store.Redis.Addrs = []string{"s1:26379", "s2:26379"}
			c.Store.Redis.MasterName = "m"
			c.Store.Redis.Password = "file-pw"
			c.Reference.Keys = append(c.Reference.Keys, Key{ID: "k2", SecretFile: file}, Key{ID: "k3"})
			c.ApplyEnv(mapEnv(tt.env))
			tt.check(t, c)
		})
	}
}

// TestSecretsNeverPrinted puts recognisable secrets everywhere a secret can
// be and checks every way the configuration can be shown.
func TestSecretsNeverPrinted(t *testing.T) {
	const (
		inFile = "FILESECRET-0123456789abcdefghijklmnop"
		inEnv  = "ENVSECRET-0123456789abcdefghijklmnopq"
		inOver = "OVERSECRET-0123456789abcdefghijklmnop"
		redisP = "REDISPASS-xyz"
		urlP   = "URLPASS-xyz"
	)
	secrets := []string{inFile, inEnv, inOver, redisP, urlP}
	data := minimalYAML + `store:
  redis:
    url: "redis://user:` + urlP + `@redis.internal:6379/0"
`
	data = strings.Replace(data, `      secret: "0123456789abcdef0123456789abcdef"`, `      secret: "`+inFile+`"
    - id: k2
      secret_env: RR_K2
    - id: k3
      secret: "short-but-secret"`, 1)
	c := mustParse(t, data)
	c.ApplyEnv(mapEnv(map[string]string{
		"RR_K2":              inEnv,
		EnvRedisPassword:     redisP,
		"RECALLRELAY_KEY_K3": inOver,
	}))
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	// The secrets are really there.
	for i, want := range []string{inFile, inEnv, inOver} {
		if b, err := c.Reference.Keys[i].Bytes(); err != nil || string(b) != want {
			t.Fatalf("key %d: %q, %v", i, b, err)
		}
	}

	var shown []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{c, *c, c.Reference, c.Reference.Keys, c.Reference.Keys[0], c.Store, c.Store.Redis, c.Store.Redis.Password, c.Store.Redis.URL} {
			shown = append(shown, fmt.Sprintf(verb, v))
		}
	}
	shown = append(shown, c.Explain(nil), c.Reference.Keys[1].String(), c.Store.Redis.URL.String())
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	shown = append(shown, string(y), string(j))

	// Errors about secrets.
	bad := Default()
	bad.Store.Redis.URL = URL("redis://u:" + urlP + "@host:port-" + urlP)
	bad.Reference.Keys = []Key{
		{ID: "ephemeral", Secret: Secret("base64:" + inFile)}, // invalid base64
		{ID: "short", Secret: Secret(redisP)},                 // too short
	}
	bad.ApplyEnv(noEnv)
	verr := bad.Validate()
	var ve ValidationErrors
	if !errors.As(verr, &ve) || len(ve) != 3 {
		t.Fatalf("want 3 errors (url, base64, short), got %v", verr)
	}
	shown = append(shown, verr.Error())
	// A password with "/" that url.Parse takes for host, port and path.
	split := Default()
	split.Store.Redis.URL = URL("redis://u:12/" + urlP + "@host:6379")
	split.ApplyEnv(noEnv)
	assertOnlyError(t, split.Validate(), "store.redis.url", "percent-encode")
	shown = append(shown, split.Explain(nil), fmt.Sprint(split.Store.Redis.URL))
	_, perr := Parse([]byte("reference:\n  keys:\n    - id: k1\n      secrte: "+inFile+"\n"), "x.yaml")
	if perr == nil {
		t.Fatal("Parse accepted a misspelt key")
	}
	shown = append(shown, perr.Error())

	for _, s := range shown {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("output shows a secret %q:\n%s", secret, s)
			}
		}
	}
	// And the redaction says so, rather than printing nothing.
	if !strings.Contains(fmt.Sprintf("%v", c.Store.Redis), redacted) || !strings.Contains(c.Explain(nil), "redis://user:xxxxx@redis.internal:6379/0") {
		t.Errorf("redaction markers missing:\n%v\n%s", c.Store.Redis, c.Explain(nil))
	}
	if !strings.Contains(string(y), "password: '[redacted]'") {
		t.Errorf("YAML form does not show the redacted password:\n%s", y)
	}
}
