package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/store"
)

// TestRelayConfigLimits checks that the listener limits and the fallback
// matching policy reach relay.Config as configured.
func TestRelayConfigLimits(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(c *config.Config)
		fields   [2]int   // MaxHeaderFields: tenant, return
		rate     [2]int64 // MinDataRate: tenant, return
		fallback relay.FallbackMatching
	}{
		{"defaults", func(*config.Config) {}, [2]int{1000, 1000}, [2]int64{500, 500}, relay.FallbackTrusted},
		{"set", func(c *config.Config) {
			c.Listeners.Tenant.MaxHeaderFields, c.Listeners.Return.MaxHeaderFields = 150, 4000
			c.Listeners.Tenant.MinDataRate, c.Listeners.Return.MinDataRate = 1, 100_000
		}, [2]int{150, 4000}, [2]int64{1, 100_000}, relay.FallbackTrusted},
		{"rate off is negative", func(c *config.Config) {
			c.Listeners.Return.MinDataRate = config.DataRateOff
		}, [2]int{1000, 1000}, [2]int64{500, -1}, relay.FallbackTrusted},
		{"fallback off", func(c *config.Config) { c.FallbackMatching = relay.FallbackOff }, [2]int{1000, 1000}, [2]int64{500, 500}, relay.FallbackOff},
		{"fallback any", func(c *config.Config) { c.FallbackMatching = relay.FallbackAny }, [2]int{1000, 1000}, [2]int64{500, 500}, relay.FallbackAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Store.DataDir = t.TempDir()
			tt.mutate(cfg)
			engine, err := checkConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := relayConfig(cfg, engine, nil, &certSet{}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			if got := [2]int{rc.Tenant.MaxHeaderFields, rc.Return.MaxHeaderFields}; got != tt.fields {
				t.Errorf("MaxHeaderFields = %v, want %v", got, tt.fields)
			}
			if got := [2]int64{rc.Tenant.MinDataRate, rc.Return.MinDataRate}; got != tt.rate {
				t.Errorf("MinDataRate = %v, want %v", got, tt.rate)
			}
			if rc.FallbackMatching != tt.fallback {
				t.Errorf("FallbackMatching = %q, want %q", rc.FallbackMatching, tt.fallback)
			}
		})
	}
}

// TestLoadConfigRules checks that loading a configuration compiles the
// rules it names, or the default rules without rules_file, and that the
// relay is configured with that engine; a broken rules file is refused
// with its file, rule, field and line.
func TestLoadConfigRules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodRules := write("rules.yaml", "default_route: [sig]\nrules:\n  - name: no-legal\n    when: {sender: {domains: [legal.example]}}\n    actions: {reject: {}}\n")
	badRules := write("bad-rules.yaml", "default_route: [sig]\nrules:\n  - name: r\n    actions:\n      route: [nosuch]\n")
	configFile := func(name, rulesFile string) string {
		extra := ""
		if rulesFile != "" {
			extra = "rules_file: " + rulesFile + "\n"
		}
		return write(name, `listeners:
  tenant: {listen: "127.0.0.1:2525"}
  return: {listen: "127.0.0.1:2526"}
store: {data_dir: "`+dir+`"}
vendors:
  - {name: sig, address: "127.0.0.1:10025"}
tenant: {address: "127.0.0.1:10026"}
reference:
  keys:
    - {id: k1, secret: "0123456789abcdef0123456789abcdef"}
`+extra)
	}

	tests := []struct {
		name    string
		config  string
		source  string // the engine's Source
		from    string // an envelope sender
		action  relay.RouteAction
		wantErr string
	}{
		{"rules file", configFile("with-rules.yaml", goodRules), goodRules, "a@legal.example", relay.Refuse, ""},
		{"rules file, other sender", configFile("with-rules.yaml", goodRules), goodRules, "a@contoso.example", relay.ToVendors, ""},
		{"default rules", configFile("without-rules.yaml", ""), "default rules", "", relay.Bypass, ""},
		{"broken rules file", configFile("broken-rules.yaml", badRules), "", "", 0,
			"rules_file: " + badRules + `: rule "r": actions.route[0]: unknown vendor "nosuch" (vendors: sig) (line 5)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, engine, err := loadConfig(tt.config)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadConfig: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if engine.Source() != tt.source {
				t.Errorf("engine source %q, want %q", engine.Source(), tt.source)
			}
			rc, err := relayConfig(cfg, engine, nil, &certSet{}, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			if rc.Router == nil {
				t.Fatal("relay.Config has no Router")
			}
			if r, _ := rc.Router.Envelope(tt.from, []string{"b@fabrikam.example"}); r.Action != tt.action {
				t.Errorf("route %+v, want action %d", r, tt.action)
			}
		})
	}
}

// TestOpenStoreKeyPrefix checks that the store is opened with the key
// prefix the configuration validates and explains: the Redis URL's
// key_prefix when it has one, else store.redis.key_prefix. Nothing
// connects to Redis.
func TestOpenStoreKeyPrefix(t *testing.T) {
	tests := []struct {
		url, want string
	}{
		{"redis://127.0.0.1:1/0", "rr"},
		{"redis://127.0.0.1:1/0?key_prefix=x", "x"},
	}
	for _, tt := range tests {
		cfg := config.Default()
		cfg.Store.Redis.URL = config.URL(tt.url)
		st, err := openStore(cfg.Store)
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		r, ok := st.(*store.Redis)
		if !ok {
			t.Fatalf("%s: opened %T, want *store.Redis", tt.url, st)
		}
		if got := r.KeyPrefix(); got != tt.want {
			t.Errorf("%s: key prefix %q, want %q", tt.url, got, tt.want)
		}
		if got := cfg.Store.Redis.KeyPrefixInUse(); got != tt.want {
			t.Errorf("%s: KeyPrefixInUse() = %q, want %q", tt.url, got, tt.want)
		}
		st.Close()
	}
}
