package config

import (
	"errors"
	"github.com/recallrelay/recallrelay/relay"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/headers"
)

// minimalYAML is the shortest file that validates: only required fields.
const minimalYAML = `listeners:
  tenant: {listen: "127.0.0.1:2525"}
  return: {listen: "127.0.0.1:2526"}
vendors:
  - name: sig
    address: 127.0.0.1:10025
tenant:
  address: 127.0.0.1:10026
reference:
  keys:
    - id: k1
      secret: "0123456789abcdef0123456789abcdef"
`

func noEnv(string) (string, bool) { return "", false }

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// parseErrors parses data and returns its FieldErrors; it fails the test when
// Parse succeeds or returns something else.
func parseErrors(t *testing.T, data string) ValidationErrors {
	t.Helper()
	c, err := Parse([]byte(data), "test.yaml")
	if err == nil {
		t.Fatalf("Parse succeeded: %+v", c)
	}
	if !strings.HasPrefix(err.Error(), "config test.yaml: ") {
		t.Errorf("error %q does not name the source", err)
	}
	var ve ValidationErrors
	if !errors.As(err, &ve) {
		t.Fatalf("error %T %v is not a ValidationErrors", err, err)
	}
	return ve
}

func mustParse(t *testing.T, data string) *Config {
	t.Helper()
	c, err := Parse([]byte(data), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestParseMinimalFillsDefaults(t *testing.T) {
	c := mustParse(t, minimalYAML)
	c.ApplyEnv(noEnv)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	host, _ := os.Hostname()
	checks := []struct {
		name      string
		got, want any
	}{
		{"hostname", c.Hostname, host},
		{"log", c.Log, Log{Level: "info", Format: "json", Recipients: relay.RecipientsNone}},
		{"store.data_dir", c.Store.DataDir, "./data"},
		{"store.record_ttl", c.Store.RecordTTL, Duration(72 * time.Hour)},
		{"store embedded", c.Store.Embedded(), true},
		{"store.redis.key_prefix", c.Store.Redis.KeyPrefix, "rr"},
		{"store.redis.timeout", c.Store.Redis.Timeout, Duration(2 * time.Second)},
		{"reference.header", c.Reference.Header, "X-RecallRelay-Ref"},
		{"reference.signing_key", c.Reference.SigningKey, "k1"},
		{"headers.capture", slices.Equal(c.Headers.Capture, headers.DefaultCapture), true},
		{"headers.restore", slices.Equal(c.Headers.Restore, headers.DefaultRestore), true},
		{"headers.loop_marker", c.Headers.LoopMarker, LoopMarker{Name: "X-RecallRelay-Processed", Value: "true"}},
		{"headers.received", c.Headers.Received, true},
		{"listeners.tenant.listen", c.Listeners.Tenant.Listen, "127.0.0.1:2525"},
		{"listeners.return", c.Listeners.Return, Listener{
			Listen: "127.0.0.1:2526", MaxMessageSize: 150 * MB, MaxHeaderSize: MiB, MaxHeaderFields: 1000,
			MaxRecipients: 1000, MaxLineLength: 2000,
			CommandTimeout: Duration(5 * time.Minute), DataTimeout: Duration(5 * time.Minute), MinDataRate: 500,
			BareLineEndings: relay.BareLineReject,
			MaxConnections:  500, MaxConnectionsPerClient: 50, MaxCommandsBeforeMail: 100, MaxErrors: 20,
		}},
		{"vendors[0]", c.Vendors[0], Vendor{Name: "sig", Address: "127.0.0.1:10025", Client: Client{
			HELO: host, StartTLS: relay.StartTLSOpportunistic,
			ConnectTimeout: Duration(30 * time.Second), CommandTimeout: Duration(5 * time.Minute),
			DataTimeout: Duration(5 * time.Minute), FinalTimeout: Duration(10 * time.Minute),
		}}},
		{"default_vendor", c.DefaultVendor, "sig"},
		{"tenant.helo", c.Tenant.HELO, host},
		{"tenant.starttls", c.Tenant.StartTLS, relay.StartTLSOpportunistic},
		{"tenant.final_timeout", c.Tenant.FinalTimeout, Duration(10 * time.Minute)},
		{"return_without_record", c.ReturnWithoutRecord, relay.ReturnReject},
		{"duplicates", c.Duplicates, relay.DuplicatesSuppress},
		{"fallback_matching", c.FallbackMatching, relay.FallbackTrusted},
		{"listeners.tenant.max_header_fields", c.Listeners.Tenant.MaxHeaderFields, 1000},
		{"listeners.tenant.min_data_rate", c.Listeners.Tenant.MinDataRate, DataRate(500)},
		{"listeners.tenant.insecure_open", c.Listeners.Tenant.InsecureOpen, false},
		{"max_duplicate_returns", c.MaxDuplicateReturns, 10},
		{"store.pass_unrecorded", c.Store.PassUnrecorded, false},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
	// The defaults must not alias the headers package's lists.
	c.Headers.Capture[0] = "X-Changed"
	if headers.DefaultCapture[0] == "X-Changed" {
		t.Fatal("Config.Headers.Capture aliases headers.DefaultCapture")
	}
}

func TestParseSetFieldsKeepOtherDefaults(t *testing.T) {
	c := mustParse(t, minimalYAML+`headers:
  received: false
  loop_marker: {value: "yes"}
store:
  record_ttl: 24h
`)
	c2 := mustParse(t, strings.Replace(minimalYAML, "    address: 127.0.0.1:10025\n",
		"    address: 127.0.0.1:10025\n    starttls: required\n    final_timeout: 1m\n    helo: out.example\n", 1))
	checks := []struct {
		name      string
		got, want any
	}{
		{"received set false", c.Headers.Received, false},
		{"loop marker value set", c.Headers.LoopMarker.Value, "yes"},
		{"loop marker name kept", c.Headers.LoopMarker.Name, "X-RecallRelay-Processed"},
		{"record_ttl set", c.Store.RecordTTL, Duration(24 * time.Hour)},
		{"data_dir kept", c.Store.DataDir, "./data"},
		{"vendor starttls set", c2.Vendors[0].StartTLS, relay.StartTLSRequired},
		{"vendor final_timeout set", c2.Vendors[0].FinalTimeout, Duration(time.Minute)},
		{"vendor helo set", c2.Vendors[0].HELO, "out.example"},
		{"vendor connect_timeout default", c2.Vendors[0].ConnectTimeout, Duration(30 * time.Second)},
		{"vendor command_timeout default", c2.Vendors[0].CommandTimeout, Duration(5 * time.Minute)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

// TestParseExplicitZeroIsNotDefaulted checks that a zero written in the file
// reaches Validate instead of being replaced by the default.
func TestParseExplicitZeroIsNotDefaulted(t *testing.T) {
	c := mustParse(t, strings.Replace(minimalYAML, "    address: 127.0.0.1:10025\n",
		"    address: 127.0.0.1:10025\n    connect_timeout: 0s\n", 1))
	c.ApplyEnv(noEnv)
	assertOnlyError(t, c.Validate(), "vendors[0].connect_timeout", "must be a positive duration")
}

func TestParseUnknownKey(t *testing.T) {
	tests := []struct {
		name, yaml string
		path       string
		line       int
		validHint  string
	}{
		{"top level", "hostnme: x\n", "hostnme", 1, "hostname, log, store"},
		{"nested", "listeners:\n  return:\n    listen: :25\n    tsl: {}\n", "listeners.return.tsl", 4, "max_errors, auth, tls"},
		{"deep", "listeners:\n  tenant:\n    tls:\n      certfile: /x\n", "listeners.tenant.tls.certfile", 4, "cert_file, key_file, require"},
		{"in list item", "vendors:\n  - name: a\n    adress: h:25\n", "vendors[0].adress", 3, "name, address, helo, starttls"},
		{"second list item", "vendors:\n  - name: a\n  - name: b\n    starttl: off\n", "vendors[1].starttl", 4, "starttls"},
		{"key", "reference:\n  keys:\n    - id: k1\n      secret_path: /x\n", "reference.keys[0].secret_path", 4, "id, secret, secret_file, secret_env"},
		{"flow mapping", "log: {level: info, colour: true}\n", "log.colour", 1, "level, format"},
		{"redis", "store:\n  redis:\n    password_env: X\n", "store.redis.password_env", 3, "url, addrs, master_name"},
		{"ephemeral is not a key", "reference:\n  keys:\n    - id: k1\n      ephemeral: true\n", "reference.keys[0].ephemeral", 4, "secret_env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, tt.yaml)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.Path != tt.path || e.Line != tt.line {
				t.Errorf("got path %q line %d, want %q line %d", e.Path, e.Line, tt.path, tt.line)
			}
			if !strings.Contains(e.Msg, "unknown field") || !strings.Contains(e.Msg, tt.validHint) {
				t.Errorf("message %q should say unknown field and list %q", e.Msg, tt.validHint)
			}
		})
	}
}

func TestParseTypeErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		path       string
		line       int
		msg        string
	}{
		{"int", "listeners:\n  tenant:\n    max_recipients: lots\n", "listeners.tenant.max_recipients", 3, `must be an integer, not "lots"`},
		{"bool in flow mapping", "listeners:\n  tenant:\n    tls: {cert_file: a, require: maybe}\n", "listeners.tenant.tls.require", 3, `must be true or false, not "maybe"`},
		{"size", "listeners:\n  return:\n    max_message_size: 150XB\n", "listeners.return.max_message_size", 3, `unknown unit "XB"`},
		{"duration", "store:\n  record_ttl: 3 days\n", "store.record_ttl", 2, `invalid duration "3 days"`},
		{"duration in list", "vendors:\n  - name: a\n    connect_timeout: 30\n", "vendors[0].connect_timeout", 3, "like 30s"},
		{"list where string", "hostname: [a, b]\n", "hostname", 1, "must be a string, not a list"},
		{"string where list", "headers:\n  capture: Message-ID\n", "headers.capture", 2, "must be a list"},
		{"string where mapping", "tenant: host:25\n", "tenant", 1, "must be a mapping"},
		{"list where mapping", "vendors:\n  - [a]\n", "vendors[0]", 2, "must be a mapping"},
		{"long value", "store:\n  redis:\n    db: a-very-long-value\n", "store.redis.db", 3, "must be an integer"},
		{"data rate word", "listeners:\n  tenant:\n    min_data_rate: slow\n", "listeners.tenant.min_data_rate", 3, `invalid rate "slow": want a number of bytes per second, like 500, or off`},
		{"data rate with unit", "listeners:\n  tenant:\n    min_data_rate: 500B/s\n", "listeners.tenant.min_data_rate", 3, "like 500, or off"},
		{"data rate fraction", "listeners:\n  return:\n    min_data_rate: 0.5\n", "listeners.return.min_data_rate", 3, "like 500, or off"},
		{"data rate negative", "listeners:\n  return:\n    min_data_rate: -1\n", "listeners.return.min_data_rate", 3, `invalid rate "-1": write off to set no minimum rate`},
		{"data rate list", "listeners:\n  return:\n    min_data_rate: [500]\n", "listeners.return.min_data_rate", 3, "like 500, or off"},
		{"header fields", "listeners:\n  return:\n    max_header_fields: many\n", "listeners.return.max_header_fields", 3, "must be an integer"},
		{"insecure_open", "listeners:\n  return:\n    insecure_open: yes please\n", "listeners.return.insecure_open", 3, "must be true or false"},
		{"repeated key", "log:\n  level: info\n  level: debug\n", "log.level", 3, "set more than once (first on line 2)"},
		{"repeated key in list item", "vendors:\n  - name: a\n    name: b\n", "vendors[0].name", 3, "set more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, tt.yaml)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.Path != tt.path || e.Line != tt.line || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %q (path %q line %d), want path %q line %d message containing %q", e.Error(), e.Path, e.Line, tt.path, tt.line, tt.msg)
			}
		})
	}
}

func TestParseCollectsEveryError(t *testing.T) {
	errs := parseErrors(t, "hostnme: x\nlisteners:\n  tenant:\n    max_recipients: lots\nstore:\n  record_ttl: 5\n")
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path)
	}
	want := []string{"hostnme", "listeners.tenant.max_recipients", "store.record_ttl"}
	if !slices.Equal(paths, want) {
		t.Errorf("paths %q, want %q", paths, want)
	}
	if n := strings.Count(errs.Error(), "\n"); n != 2 {
		t.Errorf("Error() should list one problem per line, got:\n%s", errs.Error())
	}
}

func TestParseSyntaxAndDocuments(t *testing.T) {
	tests := []struct {
		name, yaml string
		line       int
		msg        string
	}{
		{"bad indentation", "log:\n  level: info\n format: json\n", 2, "invalid YAML: did not find expected key"},
		{"tab", "log:\n\tlevel: info\n", 2, "invalid YAML"},
		{"two documents", "log: {level: info}\n---\nlog: {level: debug}\n", 2, "more than one YAML document"},
		{"not a mapping", "- a\n- b\n", 1, "must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, tt.yaml)
			if len(errs) != 1 || errs[0].Line != tt.line || !strings.Contains(errs[0].Msg, tt.msg) {
				t.Errorf("got %v; want one error on line %d containing %q", errs, tt.line, tt.msg)
			}
		})
	}
}

func TestParseEmptyFileNeedsRequiredFields(t *testing.T) {
	for _, data := range []string{"", "# only a comment\n", "---\n"} {
		c := mustParse(t, data)
		c.ApplyEnv(noEnv)
		var ve ValidationErrors
		if !errors.As(c.Validate(), &ve) {
			t.Fatalf("%q: Validate accepted an empty file", data)
		}
		var paths []string
		for _, e := range ve {
			paths = append(paths, e.Path)
		}
		want := []string{"reference.keys", "listeners.tenant.listen", "listeners.return.listen", "vendors", "tenant.address"}
		if !slices.Equal(paths, want) {
			t.Errorf("%q: paths %q, want %q", data, paths, want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rr.yaml")
	if err := os.WriteFile(p, []byte(minimalYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Vendors[0].Name != "sig" || !strings.Contains(c.Explain(nil), "configuration: "+p) {
		t.Errorf("Load(%s) gave %+v", p, c)
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want ErrNotExist", err)
	}
}

func TestParseAliases(t *testing.T) {
	// Fields set through an alias count as set: no default replaces them.
	data := strings.Replace(minimalYAML, "vendors:\n  - name: sig\n    address: 127.0.0.1:10025\n",
		"vendors:\n  - name: sig\n    address: 127.0.0.1:10025\n    <<: &client {connect_timeout: 7s, starttls: required}\n  - name: two\n    address: v2.example:25\n    <<: *client\n", 1)
	c := mustParse(t, data)
	for i, v := range c.Vendors {
		if v.ConnectTimeout != Duration(7*time.Second) || v.StartTLS != relay.StartTLSRequired || v.FinalTimeout != Duration(10*time.Minute) {
			t.Errorf("vendors[%d] = %+v", i, v)
		}
	}

	tests := []struct{ name, yaml, msg string }{
		{"cycle", "log: &x {level: *x}\n", ""},
		{"expansion", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n", "expanding aliases"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, tt.yaml)
			if !strings.Contains(errs.Error(), tt.msg) {
				t.Errorf("got %v, want %q", errs, tt.msg)
			}
		})
	}
}

// TestParseListenerLimits checks how max_header_fields, min_data_rate,
// insecure_open and fallback_matching are read from a file.
func TestParseListenerLimits(t *testing.T) {
	tests := []struct {
		name, listener string // listener: extra keys of the return listener
		top            string // extra top-level keys
		fields         int
		rate           DataRate
		open           bool
		fallback       relay.FallbackMatching
	}{
		{name: "defaults", fields: 1000, rate: 500, fallback: relay.FallbackTrusted},
		{name: "set", listener: "max_header_fields: 300, min_data_rate: 2000, insecure_open: false", top: "fallback_matching: off",
			fields: 300, rate: 2000, fallback: relay.FallbackOff},
		{name: "rate off", listener: "min_data_rate: off", fields: 1000, rate: DataRateOff, fallback: relay.FallbackTrusted},
		{name: "rate off quoted", listener: `min_data_rate: "off"`, fields: 1000, rate: DataRateOff, fallback: relay.FallbackTrusted},
		{name: "rate in YAML integer syntax", listener: "min_data_rate: 1_000", fields: 1000, rate: 1000, fallback: relay.FallbackTrusted},
		{name: "explicit zero reaches Validate", listener: "min_data_rate: 0", fields: 1000, rate: 0, fallback: relay.FallbackTrusted},
		{name: "opt in", listener: "insecure_open: true", top: "fallback_matching: any", fields: 1000, rate: 500, open: true, fallback: relay.FallbackAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := minimalYAML
			if tt.listener != "" {
				data = strings.Replace(data, `return: {listen: "127.0.0.1:2526"}`, `return: {listen: "127.0.0.1:2526", `+tt.listener+`}`, 1)
			}
			if tt.top != "" {
				data += tt.top + "\n"
			}
			c := mustParse(t, data)
			l := c.Listeners.Return
			if l.MaxHeaderFields != tt.fields || l.MinDataRate != tt.rate || l.InsecureOpen != tt.open || c.FallbackMatching != tt.fallback {
				t.Errorf("got max_header_fields %d, min_data_rate %d, insecure_open %v, fallback_matching %q; want %d, %d, %v, %q",
					l.MaxHeaderFields, l.MinDataRate, l.InsecureOpen, c.FallbackMatching, tt.fields, tt.rate, tt.open, tt.fallback)
			}
			if c.Listeners.Tenant.MaxHeaderFields != 1000 || c.Listeners.Tenant.MinDataRate != 500 {
				t.Errorf("tenant listener lost its defaults: %+v", c.Listeners.Tenant)
			}
		})
	}
}
