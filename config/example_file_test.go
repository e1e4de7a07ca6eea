package config

import (
	"github.com/recallrelay/recallrelay/relay"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/rules"
)

const exampleFile = "../deploy/recallrelay.example.yaml"

// exampleEnv supplies the secret the example file takes from the environment.
var exampleEnv = map[string]string{"RECALLRELAY_REF_SECRET_K1": "base64:" + strings.Repeat("QUFB", 11)}

func TestExampleFileValidates(t *testing.T) {
	c, err := Load(exampleFile)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	c.ApplyEnv(mapEnv(exampleEnv))
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate:\n%v", err)
	}
	if c.Tenant.Address != "contoso-com.mail.protection.outlook.com:25" || c.Tenant.StartTLS != relay.StartTLSRequired ||
		c.DefaultVendor != "signatures" || c.Reference.SigningKey != "k1" || !c.Store.Embedded() {
		t.Errorf("example file decoded unexpectedly:\n%s", c.Explain(nil))
	}

	// Safe as shipped: the tenant listener admits Exchange Online's
	// published outbound ranges only, the return listener a vendor network,
	// and nothing is opened or weakened on purpose.
	eop := []string{"40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17", "2a01:111:f400::/48", "2a01:111:f403::/48"}
	if !slices.Equal(c.Listeners.Tenant.AllowNets, eop) {
		t.Errorf("listeners.tenant.allow_nets = %q, want Exchange Online's ranges %q", c.Listeners.Tenant.AllowNets, eop)
	}
	if !slices.Equal(c.Listeners.Return.AllowNets, []string{"192.0.2.0/24"}) {
		t.Errorf("listeners.return.allow_nets = %q, want the placeholder 192.0.2.0/24", c.Listeners.Return.AllowNets)
	}
	if c.Listeners.Tenant.InsecureOpen || c.Listeners.Return.InsecureOpen || c.FallbackMatching != relay.FallbackTrusted {
		t.Errorf("example file opts into a weaker setting:\n%s", c.Explain(nil))
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("example file has warnings: %v", w)
	}

	// Its key secret really comes from the environment.
	c, _ = Load(exampleFile)
	c.ApplyEnv(noEnv)
	assertOnlyError(t, c.Validate(), "reference.keys[0].secret_env", "RECALLRELAY_REF_SECRET_K1 is not set")
}

// TestExampleFileIsComplete checks that the example shows every field of the
// schema, so that it stays the reference for administrators.
func TestExampleFileIsComplete(t *testing.T) {
	c, err := Load(exampleFile)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	paths := schemaPaths(reflect.TypeOf(Config{}), "")
	if len(paths) < 60 {
		t.Fatalf("schema walk found only %d fields: %v", len(paths), paths)
	}
	for _, p := range paths {
		if !c.src.has(p) {
			t.Errorf("example file lacks %s", p)
		}
	}
}

// schemaPaths lists the path of every leaf field below t, with list elements
// as [0].
func schemaPaths(t reflect.Type, prefix string) []string {
	var out []string
	for _, f := range yamlFieldsOf(t) {
		ft := t.Field(f.index).Type
		if f.inline {
			out = append(out, schemaPaths(ft, prefix)...)
			continue
		}
		p := f.key
		if prefix != "" {
			p = prefix + "." + f.key
		}
		switch {
		case ft.Kind() == reflect.Struct:
			out = append(out, schemaPaths(ft, p)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, schemaPaths(ft.Elem(), p+"["+strconv.Itoa(0)+"]")...)
		default:
			out = append(out, p)
		}
	}
	return out
}

func TestExplain(t *testing.T) {
	c, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	c.Reference.Keys = append(c.Reference.Keys, Key{ID: "k0", Secret: Secret(strings.Repeat("z", 32))})
	c.Store.Redis.Addrs = []string{"r1:6379", "r2:6379"}
	got := c.Explain(nil)
	for _, want := range []string{
		"configuration: " + exampleFile,
		"tenant listener: 0.0.0.0:25, no TLS, max message 150MB",
		"bare line endings: reject, clients: 6 allowed networks\n",
		"return listener: 0.0.0.0:2526, no TLS, max message 150MB, max 1000 recipients, bare line endings: reject, clients: 1 allowed network\n",
		"store: Redis Cluster r1:6379, r2:6379 (key prefix \"rr\"), records kept 72h",
		"reference: header X-RecallRelay-Ref, signing key k1, verifying keys k1, k0",
		"vendor signatures (default): smtp.vendor.example:25, STARTTLS opportunistic",
		"tenant: contoso-com.mail.protection.outlook.com:25, STARTTLS required",
		"return without record: reject\n",
		"fallback matching: trusted (by Message-ID or fingerprint only for clients admitted by allow_nets or authenticated)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Explain lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, strings.Repeat("z", 32)) {
		t.Error("Explain shows a key secret")
	}
	if strings.Contains(got, "WARNING") {
		t.Errorf("Explain of the example warns:\n%s", got)
	}
}

// TestRulesFile checks that CompileRules loads rules_file and compiles it
// against the configuration's vendors, that Validate reports the same
// problems, and that they name the file, the rule, the field and the line.
func TestRulesFile(t *testing.T) {
	load := func(rulesFile string) *Config {
		c, err := Load(exampleFile)
		if err != nil {
			t.Fatal(err)
		}
		c.ApplyEnv(mapEnv(exampleEnv))
		c.RulesFile = rulesFile
		return c
	}
	compile := func(t *testing.T, c *Config) *rules.Engine {
		t.Helper()
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		e, err := c.CompileRules()
		if err != nil {
			t.Fatalf("CompileRules: %v", err)
		}
		return e
	}

	c := load("../deploy/rules.example.yaml")
	e := compile(t, c)
	if s := e.Summary(); !strings.Contains(s, "4 rules (internal-only, keep-crypto-intact, legal-sign-and-scan, no-executables)") ||
		!strings.Contains(s, "otherwise route signatures") {
		t.Errorf("Summary = %q", s)
	}
	const rulesLine = "rules: ../deploy/rules.example.yaml: built-in defaults null-sender-bypass, loop-protection, recall-bypass, calendar-bypass"
	if !strings.Contains(c.Explain(e), rulesLine) {
		t.Errorf("Explain lacks the rules:\n%s", c.Explain(e))
	}
	if strings.Contains(c.Explain(nil), "rules: ") {
		t.Errorf("Explain without an engine shows rules:\n%s", c.Explain(nil))
	}

	// Without a file: the recall-safe defaults and the default vendor.
	if s := compile(t, load("")).Summary(); s != "default rules: built-in defaults null-sender-bypass, loop-protection, recall-bypass, calendar-bypass; no rules; otherwise route signatures" {
		t.Errorf("default Summary = %q", s)
	}

	bad := t.TempDir() + "/rules.yaml"
	if err := os.WriteFile(bad, []byte("default_route: [signatures]\nrules:\n  - name: sign\n    actions:\n      route: [nosuch]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := t.TempDir() + "/missing.yaml"
	for _, tc := range []struct {
		file, msg string
	}{
		{bad, bad + `: rule "sign": actions.route[0]: unknown vendor "nosuch" (vendors: signatures, scanner) (line 5)`},
		{missing, "no such file or directory"},
	} {
		c := load(tc.file)
		assertOnlyError(t, c.Validate(), "rules_file", tc.msg)
		// A problem in the rules file gives its own line, once: not the
		// line of rules_file in the configuration file beside it.
		if err := c.Validate(); strings.Count(err.Error(), "(line ") > 1 {
			t.Errorf("doubled line numbers: %v", err)
		}
		e, err := c.CompileRules()
		if e != nil {
			t.Errorf("CompileRules(%s) returned an engine", tc.file)
		}
		assertOnlyError(t, err, "rules_file", tc.msg)
	}
}

// TestRestartOnly names the sections a reload cannot change, and only
// those.
func TestRestartOnly(t *testing.T) {
	load := func(t *testing.T) *Config {
		c, err := Load(exampleFile)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"nothing", func(*Config) {}, ""},
		{"reloadable: vendors, tenant, rules, policies", func(c *Config) {
			c.Vendors[0].Address = "other.vendor.example:25"
			c.Tenant.Address = "other.mail.protection.outlook.com:25"
			c.RulesFile = "rules.yaml"
			c.ReturnWithoutRecord = relay.ReturnStrip
		}, ""},
		{"listener address", func(c *Config) { c.Listeners.Tenant.Listen = "127.0.0.1:2626" }, "listeners.tenant"},
		{"store and log", func(c *Config) { c.Store.DataDir = "/elsewhere"; c.Log.Level = "debug" }, "log,store"},
		{"hostname and return listener limits", func(c *Config) { c.Hostname = "other.example"; c.Listeners.Return.MaxRecipients = 5 }, "hostname,listeners.return"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur, next := load(t), load(t)
			tt.change(next)
			if got := strings.Join(cur.RestartOnly(next), ","); got != tt.want {
				t.Errorf("RestartOnly = %q, want %q", got, tt.want)
			}
		})
	}
}
