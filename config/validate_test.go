package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"github.com/recallrelay/recallrelay/relay"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// assertOnlyError checks that err is a ValidationErrors holding exactly one
// problem, at path, whose message contains msg.
func assertOnlyError(t *testing.T, err error, path, msg string) {
	t.Helper()
	var ve ValidationErrors
	if !errors.As(err, &ve) {
		t.Fatalf("Validate() = %v, want a ValidationErrors at %s", err, path)
	}
	if len(ve) != 1 {
		t.Fatalf("got %d errors, want 1 at %s:\n%v", len(ve), path, ve)
	}
	if ve[0].Path != path || !strings.Contains(ve[0].Msg, msg) {
		t.Fatalf("got %q, want path %q with message containing %q", ve[0].Error(), path, msg)
	}
}

// tlsFiles writes a self-signed certificate and its key as PEM files and
// returns their paths, plus the path of a second, unrelated key.
func tlsFiles(t *testing.T) (cert, key, otherKey string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() (*ecdsa.PrivateKey, []byte) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return k, der
	}
	k, kder := newKey()
	_, oder := newKey()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "relay.example.com"},
		DNSNames:     []string{"relay.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return write("cert.pem", "CERTIFICATE", der), write("key.pem", "PRIVATE KEY", kder), write("other.pem", "PRIVATE KEY", oder)
}

func TestDefaultValidates(t *testing.T) {
	c := Default()
	c.ApplyEnv(noEnv)
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	k := c.Reference.Keys[0]
	b, err := k.Bytes()
	if err != nil || len(b) < 32 || !k.Ephemeral || c.Reference.SigningKey != k.ID {
		t.Fatalf("default key: %v, %d bytes, ephemeral %v", err, len(b), k.Ephemeral)
	}
	if b2, _ := Default().Reference.Keys[0].Bytes(); string(b2) == string(b) {
		t.Error("two Default() calls share a signing key; it must be random")
	}
	checks := []struct{ got, want string }{
		{c.Listeners.Tenant.Listen, "127.0.0.1:2525"},
		{c.Listeners.Return.Listen, "127.0.0.1:2526"},
		{c.Vendors[0].Name, "vendor"},
		{c.Vendors[0].Address, "127.0.0.1:10025"},
		{c.DefaultVendor, "vendor"},
		{c.Tenant.Address, "127.0.0.1:10026"},
		{c.Store.DataDir, "./data"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("got %q, want %q", ch.got, ch.want)
		}
	}
	if !c.Store.Embedded() {
		t.Error("Default store is not embedded")
	}
	if !strings.Contains(c.Explain(nil), "ephemeral key") {
		t.Errorf("Explain does not warn about the ephemeral key:\n%s", c.Explain(nil))
	}
}

func TestValidate(t *testing.T) {
	cert, key, otherKey := tlsFiles(t)
	dir := t.TempDir()
	shortSecret := filepath.Join(dir, "short")
	goodSecret := filepath.Join(dir, "good")
	notPEM := filepath.Join(dir, "not.pem")
	for p, s := range map[string]string{shortSecret: "tooshort\n", goodSecret: "base64:" + strings.Repeat("QUFB", 11) + "\n", notPEM: "hello"} {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.pem")
	secret32 := Secret(strings.Repeat("s", 32))

	tests := []struct {
		name   string
		mutate func(c *Config)
		path   string // "" means valid
		msg    string
	}{
		// Valid variants.
		{name: "valid tls listener", mutate: func(c *Config) {
			c.Listeners.Return.TLS = ListenerTLS{CertFile: cert, KeyFile: key, Require: true}
		}},
		{name: "valid client cert and ca", mutate: func(c *Config) {
			c.Tenant.ClientCertFile, c.Tenant.ClientKeyFile, c.Tenant.CAFile = cert, key, cert
			c.Tenant.StartTLS = relay.StartTLSRequired
		}},
		{name: "valid redis url", mutate: func(c *Config) { c.Store.Redis.URL = "rediss://u:pw@redis.internal:6380/2" }},
		{name: "valid sentinel", mutate: func(c *Config) {
			c.Store.Redis.Addrs = []string{"s1:26379", "s2:26379"}
			c.Store.Redis.MasterName = "mymaster"
			c.Store.Redis.DB = 3
		}},
		{name: "valid secret_file", mutate: func(c *Config) { c.Reference.Keys[0] = Key{ID: "ephemeral", SecretFile: goodSecret} }},
		{name: "valid rotation", mutate: func(c *Config) {
			c.Reference.Keys = append(c.Reference.Keys, Key{ID: "k2", Secret: secret32})
			c.Reference.SigningKey = "k2"
		}},
		{name: "restore prefix inside capture prefix", mutate: func(c *Config) {
			c.Headers.Restore = []string{"x-ms-exchange-crosspremises-auth*", "message-id"}
		}},
		{name: "listen on all interfaces, other port", mutate: func(c *Config) {
			c.Listeners.Tenant.Listen = ":25"
			c.Listeners.Tenant.AllowNets = []string{"40.92.0.0/15"}
		}},
		{name: "ipv6 listen", mutate: func(c *Config) { c.Listeners.Tenant.Listen = "[::1]:2525" }},
		{name: "header fields at the minimum", mutate: func(c *Config) { c.Listeners.Tenant.MaxHeaderFields = 100 }},
		{name: "data rate off", mutate: func(c *Config) { c.Listeners.Tenant.MinDataRate = DataRateOff }},
		{name: "data rate 1 byte per second", mutate: func(c *Config) { c.Listeners.Return.MinDataRate = 1 }},
		{name: "fallback matching off", mutate: func(c *Config) { c.FallbackMatching = relay.FallbackOff }},
		{name: "fallback matching any", mutate: func(c *Config) { c.FallbackMatching = relay.FallbackAny }},
		{name: "address literal hostname", mutate: func(c *Config) { c.Hostname = "[192.0.2.1]"; c.Vendors[0].HELO = "relay_01.lan" }},

		// host:port.
		{"listen without port", func(c *Config) { c.Listeners.Tenant.Listen = "127.0.0.1" }, "listeners.tenant.listen", "missing port"},
		{"listen bad port", func(c *Config) { c.Listeners.Return.Listen = "127.0.0.1:smtp" }, "listeners.return.listen", "not a number from 1 to 65535"},
		{"vendor port out of range", func(c *Config) { c.Vendors[0].Address = "vendor.example:70000" }, "vendors[0].address", "1 to 65535"},
		{"vendor without host", func(c *Config) { c.Vendors[0].Address = ":25" }, "vendors[0].address", "host missing"},
		{"tenant bad host", func(c *Config) { c.Tenant.Address = "contoso com:25" }, "tenant.address", "not allowed in a host name"},
		{"tenant missing", func(c *Config) { c.Tenant.Address = "" }, "tenant.address", "required"},
		{"redis addr", func(c *Config) { c.Store.Redis.Addrs = []string{"a:6379", "b"} }, "store.redis.addrs[1]", "missing port"},

		// Sizes and timeouts.
		{"zero message size", func(c *Config) { c.Listeners.Return.MaxMessageSize = 0 }, "listeners.return.max_message_size", "must be positive"},
		{"negative header size", func(c *Config) { c.Listeners.Tenant.MaxHeaderSize = -1 }, "listeners.tenant.max_header_size", "must be positive"},
		{"header size above message size", func(c *Config) { c.Listeners.Tenant.MaxHeaderSize = 200 * MB }, "listeners.tenant.max_header_size", "exceeds max_message_size"},
		{"zero recipients", func(c *Config) { c.Listeners.Tenant.MaxRecipients = 0 }, "listeners.tenant.max_recipients", "must be positive"},
		{"few header fields", func(c *Config) { c.Listeners.Tenant.MaxHeaderFields = 99 }, "listeners.tenant.max_header_fields", "99 is below 100"},
		{"zero header fields", func(c *Config) { c.Listeners.Return.MaxHeaderFields = 0 }, "listeners.return.max_header_fields", "0 is below 100"},
		{"zero data rate", func(c *Config) { c.Listeners.Return.MinDataRate = 0 }, "listeners.return.min_data_rate", "0 is not a rate: give a positive number of bytes per second, or off"},
		{"negative data rate", func(c *Config) { c.Listeners.Tenant.MinDataRate = -500 }, "listeners.tenant.min_data_rate", "must be a positive number of bytes per second, or off, not -500"},
		{"short lines", func(c *Config) { c.Listeners.Tenant.MaxLineLength = 512 }, "listeners.tenant.max_line_length", "RFC 5321"},
		{"zero command timeout", func(c *Config) { c.Listeners.Tenant.CommandTimeout = 0 }, "listeners.tenant.command_timeout", "positive duration"},
		{"negative data timeout", func(c *Config) { c.Listeners.Return.DataTimeout = Duration(-time.Second) }, "listeners.return.data_timeout", "positive duration"},
		{"vendor final timeout", func(c *Config) { c.Vendors[0].FinalTimeout = 0 }, "vendors[0].final_timeout", "positive duration"},
		{"tenant connect timeout", func(c *Config) { c.Tenant.ConnectTimeout = -1 }, "tenant.connect_timeout", "positive duration"},
		{"redis timeout", func(c *Config) { c.Store.Redis.Addrs = []string{"r:6379"}; c.Store.Redis.Timeout = 0 }, "store.redis.timeout", "positive duration"},
		{"redis wait_replicas negative", func(c *Config) { c.Store.Redis.Addrs = []string{"r:6379"}; c.Store.Redis.WaitReplicas = -1 }, "store.redis.wait_replicas", "out of range"},
		{"redis wait_timeout not below timeout", func(c *Config) {
			c.Store.Redis.Addrs = []string{"r:6379"}
			c.Store.Redis.WaitReplicas, c.Store.Redis.WaitTimeout = 1, Duration(3*time.Second)
		}, "store.redis.wait_timeout", "below store.redis.timeout"},
		{"admin recent_messages", func(c *Config) { c.Admin.Listen = "127.0.0.1:9025"; c.Admin.RecentMessages = 200_000 }, "admin.recent_messages", "out of range"},
		{"next_hop_pool max_idle", func(c *Config) { c.NextHopPool.MaxIdle = -2 }, "next_hop_pool.max_idle", "out of range"},
		{"next_hop_pool idle_timeout", func(c *Config) { c.NextHopPool.IdleTimeout = Duration(time.Hour) }, "next_hop_pool.idle_timeout", "out of range"},
		{"record ttl under a minute", func(c *Config) { c.Store.RecordTTL = Duration(59 * time.Second) }, "store.record_ttl", "at least 1m"},

		// Enumerations.
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", `"verbose" is not one of debug, info, warn, error`},
		{"log format", func(c *Config) { c.Log.Format = "text" }, "log.format", "json, console"},
		{"bare line endings", func(c *Config) { c.Listeners.Return.BareLineEndings = "fix" }, "listeners.return.bare_line_endings", "reject, normalize"},
		{"starttls", func(c *Config) { c.Vendors[0].StartTLS = "yes" }, "vendors[0].starttls", "off, opportunistic, required"},
		{"return policy", func(c *Config) { c.ReturnWithoutRecord = "drop" }, "return_without_record", "reject, strip"},
		{"duplicates", func(c *Config) { c.Duplicates = "drop" }, "duplicates", "suppress, deliver"},
		{"fallback matching", func(c *Config) { c.FallbackMatching = "signed" }, "fallback_matching", `"signed" is not one of trusted, off, any`},
		{"fallback matching empty", func(c *Config) { c.FallbackMatching = "" }, "fallback_matching", `"" is not one of trusted, off, any`},
		{"duplicate bound", func(c *Config) { c.MaxDuplicateReturns = 0 }, "max_duplicate_returns", "must be positive"},

		// Access control.
		{"allow_nets garbage", func(c *Config) { c.Listeners.Tenant.AllowNets = []string{"10.0.0.0/8", "exchange"} }, "listeners.tenant.allow_nets[1]", "neither an address nor a CIDR prefix"},
		{"allow_nets host bits", func(c *Config) { c.Listeners.Tenant.AllowNets = []string{"10.1.2.3/8"} }, "listeners.tenant.allow_nets[0]", "did you mean 10.0.0.0/8"},
		{"max connections", func(c *Config) { c.Listeners.Return.MaxConnections = 0 }, "listeners.return.max_connections", "must be positive"},
		{"max errors", func(c *Config) { c.Listeners.Return.MaxErrors = -1 }, "listeners.return.max_errors", "must be positive"},
		{"client names without CA", func(c *Config) { c.Listeners.Return.TLS.ClientCertNames = []string{"v.example"} }, "listeners.return.tls.client_cert_names", "needs client_ca_file"},
		{"client CA without TLS", func(c *Config) { c.Listeners.Return.TLS.ClientCAFile = "/nonexistent/ca.pem" }, "listeners.return.tls.client_ca_file", "needs cert_file"},
		{"auth without TLS", func(c *Config) { c.Listeners.Return.Auth.UsersFile = "/nonexistent/users" }, "listeners.return.auth.users_file", "only after STARTTLS"},

		// Header names.
		{"capture pattern", func(c *Config) { c.Headers.Capture = append(c.Headers.Capture, "X Bad*") }, "headers.capture[13]", "not allowed in a field name"},
		{"capture star inside", func(c *Config) { c.Headers.Capture = append(c.Headers.Capture, "X-*-Foo") }, "headers.capture[13]", `"X-*-Foo"`},
		{"capture empty", func(c *Config) { c.Headers.Capture, c.Headers.Restore = nil, nil }, "headers.capture", "record nothing"},
		{"restore pattern", func(c *Config) { c.Headers.Restore[0] = "Message:ID" }, "headers.restore[0]", "not allowed in a field name"},
		{"restore not captured", func(c *Config) { c.Headers.Restore = append(c.Headers.Restore, "X-Custom") }, "headers.restore[11]", `"X-Custom" is restored but never captured`},
		{"restore prefix wider than capture", func(c *Config) { c.Headers.Restore[1] = "X-MS-Exchange-*" }, "headers.restore[1]", "never captured"},
		{"restore after capture shrinks", func(c *Config) {
			c.Headers.Capture = slices.DeleteFunc(c.Headers.Capture, func(s string) bool { return s == "Thread-Topic" })
		}, "headers.restore[6]", `"Thread-Topic" is restored but never captured`},
		{"reference header", func(c *Config) { c.Reference.Header = "X-Ref:" }, "reference.header", "invalid header field name"},
		{"reference header in firewall", func(c *Config) { c.Reference.Header = "X-MS-Exchange-Organization-Ref" }, "reference.header", "firewall"},
		{"loop marker name", func(c *Config) { c.Headers.LoopMarker.Name = "Processed By" }, "headers.loop_marker.name", "invalid header field name"},
		{"loop marker same as reference", func(c *Config) { c.Headers.LoopMarker.Name = "x-recallrelay-ref" }, "headers.loop_marker.name", "also reference.header"},
		{"loop marker value CRLF", func(c *Config) { c.Headers.LoopMarker.Value = "true\r\nBcc: x@example.com" }, "headers.loop_marker.value", "CR or LF"},
		{"loop marker value LF", func(c *Config) { c.Headers.LoopMarker.Value = "true\n" }, "headers.loop_marker.value", "CR or LF"},
		{"loop marker value empty", func(c *Config) { c.Headers.LoopMarker.Value = " " }, "headers.loop_marker.value", "required"},

		// Vendors.
		{"no vendors", func(c *Config) { c.Vendors = nil }, "vendors", "at least one"},
		{"vendor name missing", func(c *Config) {
			c.Vendors = append(c.Vendors, Vendor{Address: "v2.example:25", Client: c.Vendors[0].Client})
		}, "vendors[1].name", "required"},
		{"vendor name upper case", func(c *Config) { c.Vendors[0].Name = "Exclaimer"; c.DefaultVendor = "Exclaimer" }, "vendors[0].name", "lower-case"},
		{"duplicate vendor", func(c *Config) { c.Vendors = append(c.Vendors, c.Vendors[0]) }, "vendors[1].name", `duplicate vendor name "vendor" (also vendors[0])`},
		{"default vendor unknown", func(c *Config) { c.DefaultVendor = "codetwo" }, "default_vendor", `"codetwo" is not a vendor name (have: vendor)`},
		{"vendor is our listener", func(c *Config) { c.Vendors[0].Address = "127.0.0.1:2526" }, "vendors[0].address", "loop"},
		{"bad helo", func(c *Config) { c.Tenant.HELO = "relay..example" }, "tenant.helo", "empty label"},
		{"bad hostname", func(c *Config) { c.Hostname = "relay example" }, "hostname", "not allowed"},
		{"bad tls server name", func(c *Config) { c.Vendors[0].TLSServerName = "-bad-" }, "vendors[0].tls_server_name", "starts or ends with -"},

		// Keys.
		{"no keys", func(c *Config) { c.Reference.Keys = nil }, "reference.keys", "at least one key"},
		{"signing key missing", func(c *Config) { c.Reference.SigningKey = "k9" }, "reference.signing_key", `"k9" is not among reference.keys (have: ephemeral)`},
		{"secret too short", func(c *Config) { c.Reference.Keys[0] = Key{ID: "ephemeral", Secret: "short"} }, "reference.keys[0].secret", "5 bytes after decoding, need at least 32"},
		{"base64 secret too short", func(c *Config) {
			c.Reference.Keys[0] = Key{ID: "ephemeral", Secret: "base64:" + Secret(strings.Repeat("A", 40))}
		}, "reference.keys[0].secret", "30 bytes after decoding"},
		{"bad base64", func(c *Config) { c.Reference.Keys[0] = Key{ID: "ephemeral", Secret: "base64:!!!!" + secret32} }, "reference.keys[0].secret", "invalid standard base64"},
		{"several sources", func(c *Config) { c.Reference.Keys[0].SecretFile = goodSecret }, "reference.keys[0]", "secret and secret_file are exclusive"},
		{"no source", func(c *Config) { c.Reference.Keys[0] = Key{ID: "k-1"}; c.Reference.SigningKey = "k-1" }, "reference.keys[0]", "no secret: set one of secret, secret_file or secret_env, or the environment variable RECALLRELAY_KEY_K_1"},
		{"secret file unreadable", func(c *Config) { c.Reference.Keys[0] = Key{ID: "ephemeral", SecretFile: missing} }, "reference.keys[0].secret_file", "open " + missing + ": no such file or directory"},
		{"secret file short", func(c *Config) { c.Reference.Keys[0] = Key{ID: "ephemeral", SecretFile: shortSecret} }, "reference.keys[0].secret_file", "8 bytes after decoding"},
		{"bad key id", func(c *Config) { c.Reference.Keys[0].ID = "k 1"; c.Reference.SigningKey = "k 1" }, "reference.keys[0].id", "1 to 32 of"},
		{"duplicate key id", func(c *Config) { c.Reference.Keys = append(c.Reference.Keys, c.Reference.Keys[0]) }, "reference.keys[1].id", `duplicate key id "ephemeral"`},
		{"key ids share env var", func(c *Config) {
			c.Reference.Keys = []Key{{ID: "k-1", Secret: secret32}, {ID: "k_1", Secret: secret32}}
			c.Reference.SigningKey = "k-1"
		}, "reference.keys[1].id", "share the environment variable RECALLRELAY_KEY_K_1"},

		// TLS.
		{"cert without key", func(c *Config) { c.Listeners.Return.TLS.CertFile = cert }, "listeners.return.tls.key_file", "required with cert_file"},
		{"key without cert", func(c *Config) { c.Listeners.Return.TLS.KeyFile = key }, "listeners.return.tls.cert_file", "required with key_file"},
		{"cert file missing", func(c *Config) { c.Listeners.Return.TLS = ListenerTLS{CertFile: missing, KeyFile: key} }, "listeners.return.tls.cert_file", "open " + missing + ": no such file or directory"},
		{"cert and key mismatch", func(c *Config) { c.Listeners.Tenant.TLS = ListenerTLS{CertFile: cert, KeyFile: otherKey} }, "listeners.tenant.tls", "not a usable pair"},
		{"require without files", func(c *Config) { c.Listeners.Tenant.TLS.Require = true }, "listeners.tenant.tls.require", "needs cert_file and key_file"},
		{"client cert without key", func(c *Config) { c.Tenant.ClientCertFile = cert }, "tenant.client_key_file", "required with client_cert_file"},
		{"client cert with starttls off", func(c *Config) {
			c.Tenant.ClientCertFile, c.Tenant.ClientKeyFile, c.Tenant.StartTLS = cert, key, relay.StartTLSOff
		}, "tenant.starttls", "never presented"},
		{"ca file missing", func(c *Config) { c.Vendors[0].CAFile = missing }, "vendors[0].ca_file", "no such file"},
		{"ca file not pem", func(c *Config) { c.Tenant.CAFile = notPEM }, "tenant.ca_file", "no PEM certificate"},

		// Listeners.
		{"same listen address", func(c *Config) { c.Listeners.Return.Listen = "127.0.0.1:2525" }, "listeners.return.listen", "overlaps listeners.tenant.listen"},
		{"wildcard overlaps", func(c *Config) {
			c.Listeners.Tenant.Listen = ":2526"
			c.Listeners.Tenant.AllowNets = []string{"40.92.0.0/15"}
		}, "listeners.return.listen", "overlaps"},

		// Store.
		{"redis url and addrs", func(c *Config) { c.Store.Redis.URL = "redis://r:6379"; c.Store.Redis.Addrs = []string{"r:6379"} }, "store.redis", "exclusive"},
		{"redis url scheme", func(c *Config) { c.Store.Redis.URL = "http://r:6379" }, "store.redis.url", "invalid URL scheme"},
		{"redis url with db field", func(c *Config) { c.Store.Redis.URL = "redis://r:6379"; c.Store.Redis.DB = 2 }, "store.redis.db", "URL path"},
		{"cluster db", func(c *Config) { c.Store.Redis.Addrs = []string{"a:6379", "b:6379"}; c.Store.Redis.DB = 1 }, "store.redis.db", "only database 0"},
		{"master name without addrs", func(c *Config) { c.Store.Redis.MasterName = "m" }, "store.redis.master_name", "needs store.redis.addrs"},
		{"key prefix", func(c *Config) { c.Store.Redis.Addrs = []string{"a:6379"}; c.Store.Redis.KeyPrefix = "r r" }, "store.redis.key_prefix", "contains a blank"},
		// What check accepts, the store accepts: a brace would break its hash tags.
		{"key prefix with a brace", func(c *Config) { c.Store.Redis.Addrs = []string{"a:6379"}; c.Store.Redis.KeyPrefix = "r{x}" }, "store.redis.key_prefix", "contains a brace"},
		{"data dir empty", func(c *Config) { c.Store.DataDir = "" }, "store.data_dir", "required"},
		{"data dir is a file", func(c *Config) { c.Store.DataDir = notPEM }, "store.data_dir", "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(c)
			c.ApplyEnv(noEnv)
			err := c.Validate()
			if tt.path == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			assertOnlyError(t, err, tt.path, tt.msg)
		})
	}
}

// TestValidateSecretEnv checks secret_env resolution through ApplyEnv.
func TestValidateSecretEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string // nil: ApplyEnv not called
		path string
		msg  string
	}{
		{name: "set", env: map[string]string{"RR_TEST_K": "base64:" + strings.Repeat("QUFB", 11)}},
		{name: "not looked up", env: nil, path: "reference.keys[0].secret_env", msg: "RR_TEST_K was not looked up (ApplyEnv must run before Validate)"},
		{name: "unset", env: map[string]string{}, path: "reference.keys[0].secret_env", msg: "environment variable RR_TEST_K is not set"},
		{name: "empty", env: map[string]string{"RR_TEST_K": ""}, path: "reference.keys[0].secret_env", msg: "is not set"},
		{name: "short", env: map[string]string{"RR_TEST_K": "abc"}, path: "reference.keys[0].secret_env", msg: "3 bytes after decoding"},
		{name: "override wins", env: map[string]string{"RECALLRELAY_KEY_K1": strings.Repeat("x", 32)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Reference.Keys = []Key{{ID: "k1", SecretEnv: "RR_TEST_K"}}
			c.Reference.SigningKey = "k1"
			if tt.env != nil {
				c.ApplyEnv(mapEnv(tt.env))
			}
			err := c.Validate()
			if tt.path == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			assertOnlyError(t, err, tt.path, tt.msg)
		})
	}
}

// TestValidateLines checks that validation errors of a parsed file carry the
// line of the field, or of its closest ancestor when it is absent.
func TestValidateLines(t *testing.T) {
	data := minimalYAML + `listeners:
  tenant: {listen: "127.0.0.1:2525"}
  return:
    listen: "127.0.0.1:2526"
    tls:
      cert_file: /nonexistent/x.pem
      key_file: /nonexistent/x.key
`
	data = strings.Replace(data, "listeners:\n  tenant: {listen: \"127.0.0.1:2525\"}\n  return: {listen: \"127.0.0.1:2526\"}\n", "", 1)
	data = strings.Replace(data, "address: 127.0.0.1:10026", "address: 127.0.0.1:10026\n  starttls: sometimes", 1)
	c := mustParse(t, data)
	c.ApplyEnv(noEnv)
	var ve ValidationErrors
	if !errors.As(c.Validate(), &ve) {
		t.Fatal("Validate accepted missing certificate files")
	}
	want := []string{
		"tenant.starttls: \"sometimes\" is not one of off, opportunistic, required (line 6)",
		"listeners.return.tls.cert_file: open /nonexistent/x.pem: no such file or directory (line 16)",
		"listeners.return.tls.key_file: open /nonexistent/x.key: no such file or directory (line 17)",
	}
	got := strings.Split(ve.Error(), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant (any order)\n%s", ve.Error(), strings.Join(want, "\n"))
	}

	// An absent field gets the line of its closest present ancestor.
	c = mustParse(t, strings.Replace(minimalYAML, "  return: {listen: \"127.0.0.1:2526\"}\n", "  return: {max_recipients: 5}\n", 1))
	c.ApplyEnv(noEnv)
	var ve2 ValidationErrors
	if !errors.As(c.Validate(), &ve2) || len(ve2) != 1 || ve2[0].Path != "listeners.return.listen" || ve2[0].Line != 3 {
		t.Fatalf("got %v, want listeners.return.listen on line 3", ve2)
	}
}

// TestValidateOpenListener checks that a listener anyone on the network can
// use (a listen address other hosts reach, no allow_nets, no client
// authentication) is refused unless insecure_open accepts it.
func TestValidateOpenListener(t *testing.T) {
	cert, key, _ := tlsFiles(t)
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("vendor:$2y$10$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		returnRisk = "anyone can send mail that the relay reinjects into the tenant and, by fallback matching, restore a recorded message's internal headers onto other content"
		returnFix  = "set allow_nets to your vendors' sending addresses, require client certificates (tls.client_cert_names) or SMTP AUTH (auth.users_file), or set insecure_open: true to accept the risk"
		tenantRisk = "anyone can send mail with forged X-MS-Exchange-CrossPremises fields straight to the tenant through the bypass path"
		tenantFix  = "set allow_nets to Exchange Online's outbound IP ranges, require client certificates (tls.client_cert_names), or set insecure_open: true to accept the risk"
	)
	tests := []struct {
		name   string
		leg    string // "tenant" or "return"
		listen string
		mutate func(l *Listener)
		msg    string // "" means valid
	}{
		// Open: reachable from other hosts, nothing restricts the clients.
		{name: "return on every IPv4 interface", leg: "return", listen: "0.0.0.0:2526", msg: "open listener: 0.0.0.0:2526 is reachable from other hosts, and neither allow_nets nor client authentication restricts who connects, so " + returnRisk + "; " + returnFix},
		{name: "return on every interface", leg: "return", listen: ":2526", msg: returnRisk},
		{name: "return on every IPv6 interface", leg: "return", listen: "[::]:2526", msg: returnRisk},
		{name: "return on a public address", leg: "return", listen: "198.51.100.7:2526", msg: returnRisk},
		{name: "return on a private address", leg: "return", listen: "10.1.2.3:2526", msg: returnRisk},
		{name: "return on a host name", leg: "return", listen: "relay.example.com:2526", msg: returnRisk},
		{name: "tenant on every IPv4 interface", leg: "tenant", listen: "0.0.0.0:25", msg: "open listener: 0.0.0.0:25 is reachable from other hosts, and neither allow_nets nor client authentication restricts who connects, so " + tenantRisk + "; " + tenantFix},
		{name: "tenant on every interface", leg: "tenant", listen: ":25", msg: tenantRisk},
		{name: "tenant on every IPv6 interface", leg: "tenant", listen: "[::]:25", msg: tenantRisk},
		{name: "TLS alone is no restriction", leg: "return", listen: ":2526", mutate: func(l *Listener) {
			l.TLS = ListenerTLS{CertFile: cert, KeyFile: key, Require: true}
		}, msg: returnRisk},
		{name: "client CA without names is no restriction", leg: "return", listen: ":2526", mutate: func(l *Listener) {
			l.TLS = ListenerTLS{CertFile: cert, KeyFile: key, ClientCAFile: cert}
		}, msg: returnRisk},

		// Closed: loopback only.
		{name: "return on IPv4 loopback", leg: "return", listen: "127.0.0.1:25"},
		{name: "return elsewhere in 127/8", leg: "return", listen: "127.0.0.53:2526"},
		{name: "return on IPv6 loopback", leg: "return", listen: "[::1]:25"},
		{name: "return on localhost", leg: "return", listen: "localhost:2526"},
		{name: "tenant on IPv4 loopback", leg: "tenant", listen: "127.0.0.1:25"},
		{name: "tenant on IPv6 loopback", leg: "tenant", listen: "[::1]:25"},
		{name: "tenant on LOCALHOST", leg: "tenant", listen: "LOCALHOST:25"},

		// Closed: restricted clients.
		{name: "return with allow_nets", leg: "return", listen: "0.0.0.0:2526", mutate: func(l *Listener) { l.AllowNets = []string{"192.0.2.0/24"} }},
		{name: "return with client certificate names", leg: "return", listen: ":2526", mutate: func(l *Listener) {
			l.TLS = ListenerTLS{CertFile: cert, KeyFile: key, ClientCAFile: cert, ClientCertNames: []string{"vendor.example"}}
		}},
		{name: "return with AUTH", leg: "return", listen: "[::]:2526", mutate: func(l *Listener) {
			l.TLS = ListenerTLS{CertFile: cert, KeyFile: key}
			l.Auth.UsersFile = users
		}},
		{name: "tenant with allow_nets", leg: "tenant", listen: ":25", mutate: func(l *Listener) { l.AllowNets = []string{"40.92.0.0/15", "2a01:111:f400::/48"} }},
		{name: "tenant with client certificate names", leg: "tenant", listen: "0.0.0.0:25", mutate: func(l *Listener) {
			l.TLS = ListenerTLS{CertFile: cert, KeyFile: key, ClientCAFile: cert, ClientCertNames: []string{"mail.protection.outlook.com"}}
		}},

		// Open by explicit choice.
		{name: "return opted in", leg: "return", listen: "0.0.0.0:2526", mutate: func(l *Listener) { l.InsecureOpen = true }},
		{name: "tenant opted in", leg: "tenant", listen: "[::]:25", mutate: func(l *Listener) { l.InsecureOpen = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			l := &c.Listeners.Tenant
			if tt.leg == "return" {
				l = &c.Listeners.Return
			}
			l.Listen = tt.listen
			if tt.mutate != nil {
				tt.mutate(l)
			}
			c.ApplyEnv(noEnv)
			err := c.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			assertOnlyError(t, err, "listeners."+tt.leg+".allow_nets", tt.msg)
		})
	}
}

// TestValidateOpenListenerLine checks that the refusal of an open listener
// names the line of allow_nets, or of the listener when it is absent.
func TestValidateOpenListenerLine(t *testing.T) {
	data := strings.Replace(minimalYAML, `  return: {listen: "127.0.0.1:2526"}`, "  return:\n    listen: \"0.0.0.0:2526\"\n    allow_nets: []", 1)
	c := mustParse(t, data)
	c.ApplyEnv(noEnv)
	var ve ValidationErrors
	if !errors.As(c.Validate(), &ve) || len(ve) != 1 || ve[0].Path != "listeners.return.allow_nets" || ve[0].Line != 5 {
		t.Fatalf("got %v, want listeners.return.allow_nets on line 5", ve)
	}
	c = mustParse(t, strings.Replace(minimalYAML, `tenant: {listen: "127.0.0.1:2525"}`, `tenant: {listen: ":25"}`, 1))
	c.ApplyEnv(noEnv)
	ve = nil
	if !errors.As(c.Validate(), &ve) || len(ve) != 1 || ve[0].Path != "listeners.tenant.allow_nets" || ve[0].Line != 2 {
		t.Fatalf("got %v, want listeners.tenant.allow_nets on line 2", ve)
	}
}

// TestWarnings checks what a valid configuration that weakens the relay
// says about itself, in Warnings and in Explain.
func TestWarnings(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // "path: message" prefixes, in order
	}{
		{"defaults", func(*Config) {}, nil},
		{"loopback listeners opted in", func(c *Config) { c.Listeners.Return.InsecureOpen = true }, []string{
			"listeners.return.insecure_open: true has no effect: the listener is not open (127.0.0.1:2526 is loopback only); remove it, so that the listener is refused if it ever becomes open",
		}},
		{"open return listener opted in", func(c *Config) {
			c.Listeners.Return.Listen, c.Listeners.Return.InsecureOpen = "0.0.0.0:2526", true
		}, []string{
			"listeners.return.insecure_open: open listener: 0.0.0.0:2526 is reachable from other hosts, and neither allow_nets nor client authentication restricts who connects, so anyone can send mail that the relay reinjects into the tenant and, by fallback matching, restore a recorded message's internal headers onto other content (accepted by insecure_open: true)",
		}},
		{"open tenant listener opted in", func(c *Config) {
			c.Listeners.Tenant.Listen, c.Listeners.Tenant.InsecureOpen = ":25", true
		}, []string{
			"listeners.tenant.insecure_open: open listener: :25 is reachable from other hosts, and neither allow_nets nor client authentication restricts who connects, so anyone can send mail with forged X-MS-Exchange-CrossPremises fields straight to the tenant through the bypass path",
		}},
		{"restricted listener opted in", func(c *Config) {
			c.Listeners.Tenant.Listen, c.Listeners.Tenant.InsecureOpen = ":25", true
			c.Listeners.Tenant.AllowNets = []string{"40.92.0.0/15"}
		}, []string{
			"listeners.tenant.insecure_open: true has no effect: the listener is not open (allow_nets restricts it)",
		}},
		{"fallback any", func(c *Config) { c.FallbackMatching = relay.FallbackAny }, []string{
			"fallback_matching: any: every client of the return listener may be matched without the signed reference",
		}},
		{"fallback off", func(c *Config) { c.FallbackMatching = relay.FallbackOff }, nil},
		{"both", func(c *Config) {
			c.Listeners.Return.Listen, c.Listeners.Return.InsecureOpen = "[::]:2526", true
			c.FallbackMatching = relay.FallbackAny
		}, []string{"listeners.return.insecure_open: open listener: [::]:2526", "fallback_matching: any"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(c)
			c.ApplyEnv(noEnv)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			ws := c.Warnings()
			if len(ws) != len(tt.want) {
				t.Fatalf("Warnings() = %v, want %d", ws, len(tt.want))
			}
			explain := c.Explain(nil)
			for i, w := range ws {
				if !strings.HasPrefix(w.Error(), tt.want[i]) {
					t.Errorf("warning %d = %q, want it to start with %q", i, w.Error(), tt.want[i])
				}
				if !strings.Contains(explain, "WARNING: "+w.Error()+"\n") {
					t.Errorf("Explain lacks the warning line %q:\n%s", "WARNING: "+w.Error(), explain)
				}
			}
			if len(ws) == 0 && strings.Contains(explain, "WARNING: listeners") {
				t.Errorf("Explain warns without Warnings:\n%s", explain)
			}
		})
	}
}

// TestValidateIsPure checks that Validate only checks: it compiles the
// rules file to check it, but leaves the Config as it found it, whether
// it accepts it or not.
func TestValidateIsPure(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("default_route: [sig]\nrules:\n  - name: r\n    when: {size_over: 10MB}\n    actions: {bypass: true}\n"), 0o600)
	os.WriteFile(bad, []byte("default_route: [nosuch]\n"), 0o600)
	tests := []struct {
		name, extra string
		valid       bool
	}{
		{"default rules", "", true},
		{"rules file", "rules_file: " + good + "\n", true},
		{"invalid rules file", "rules_file: " + bad + "\n", false},
		{"invalid configuration", "rules_file: " + good + "\nmax_duplicate_returns: 0\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, minimalYAML+tt.extra)
			c.ApplyEnv(noEnv)
			before := *c
			before.Vendors = slices.Clone(c.Vendors)
			before.Reference.Keys = slices.Clone(c.Reference.Keys)
			err := c.Validate()
			if (err == nil) != tt.valid {
				t.Fatalf("Validate() = %v, want valid %v", err, tt.valid)
			}
			if !reflect.DeepEqual(before, *c) {
				t.Errorf("Validate changed the Config:\nbefore %+v\nafter  %+v", before, *c)
			}
		})
	}
}

// TestRedisURL checks that store.redis.url is checked by the parser the
// store opens it with: what the store accepts is valid, and what it
// refuses is reported at the field's line with the store's reason.
func TestRedisURL(t *testing.T) {
	tests := []struct {
		name, url string
		extra     string // more lines of store.redis
		msg       string // "" means valid
		path      string // of the error, when not store.redis.url
	}{
		{name: "key prefix", url: "redis://r:6379/0?key_prefix=x"},
		{name: "key prefix as the file's", url: "redis://r:6379/0?key_prefix=x", extra: "    key_prefix: x\n"},
		{name: "key prefix unlike the file's", url: "redis://r:6379/0?key_prefix=x", extra: "    key_prefix: y\n",
			path: "store.redis.key_prefix", msg: `"y", but the URL's key_prefix "x" takes precedence: set the prefix in one place`},
		{name: "key prefix with a space", url: "redis://r:6379/0?key_prefix=a%20b",
			msg: `key prefix "a b" contains a blank`},
		{name: "sentinel in the URL", url: "redis://r1:26379?master_name=m&addr=r2:26379&key_prefix=rr"},
		{name: "driver parameters", url: "rediss://u:pw@r:6380/2?dial_timeout=2s&skip_verify=true"},
		{name: "unix socket", url: "unix:///run/redis.sock?db=1"},
		{name: "unsupported parameter", url: "redis://u:sekrit@r:6379/0?pool_size=3",
			msg: `parse redis URL redis://u:xxxxx@r:6379/0?pool_size=3: unsupported parameter "pool_size"`},
		{name: "scheme", url: "http://r:6379", msg: "parse redis URL http://r:6379: redis: invalid URL scheme: http"},
		{name: "database", url: "redis://r:6379/x", msg: `redis: invalid database number: "x"`},
		{name: "not a URL", url: "redis://u:sekrit@r:port", msg: "not a valid URL (percent-encode reserved characters"},
		{name: "@ outside the user info", url: "redis://u:12/sekrit@r:6379", msg: `"@" outside the user info`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, minimalYAML+"store:\n  redis:\n    url: \""+tt.url+"\"\n"+tt.extra)
			c.ApplyEnv(noEnv)
			err := c.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			path, line := "store.redis.url", strings.Count(minimalYAML, "\n")+3
			if tt.path != "" {
				path, line = tt.path, line+1
			}
			assertOnlyError(t, err, path, tt.msg)
			var ve ValidationErrors
			errors.As(err, &ve)
			if ve[0].Line != line {
				t.Errorf("line %d, want %d", ve[0].Line, line)
			}
			if strings.Contains(err.Error(), "sekrit") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// TestKeyPrefixInUse checks that the key_prefix parameter of the Redis URL
// takes precedence over store.redis.key_prefix, as the store is opened
// with it, and that Explain shows the prefix in use.
func TestKeyPrefixInUse(t *testing.T) {
	tests := []struct {
		url, keyPrefix, want string
	}{
		{"", "rr", "rr"},
		{"redis://r:6379/0", "rr", "rr"},
		{"redis://r:6379/0?key_prefix=", "rr", "rr"},
		{"redis://r:6379/0?key_prefix=x", "rr", "x"},
		{"redis://r:6379/0?key_prefix=x&pool_size=1", "rr", "rr"}, // refused by Validate
	}
	for _, tt := range tests {
		r := Redis{URL: URL(tt.url), KeyPrefix: tt.keyPrefix}
		if got := r.KeyPrefixInUse(); got != tt.want {
			t.Errorf("URL %q, key_prefix %q: KeyPrefixInUse() = %q, want %q", tt.url, tt.keyPrefix, got, tt.want)
		}
	}
	c := mustParse(t, minimalYAML+"store:\n  redis:\n    url: \"redis://r:6379/0?key_prefix=x\"\n")
	if got := c.Explain(nil); !strings.Contains(got, `(key prefix "x")`) {
		t.Errorf("Explain does not show the URL's key prefix:\n%s", got)
	}
}
