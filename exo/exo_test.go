package exo

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/internal/testpki"
	"github.com/recallrelay/recallrelay/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// writeTestCert writes a certificate for names (the first is the common
// name) to dir/file (a .pem name) and returns its path.
func writeTestCert(t testing.TB, dir, file string, names ...string) string {
	t.Helper()
	cert := testpki.NewCA(t, "exo test CA").IssueNames(t, names...)
	path, _ := testpki.WritePair(t, dir, strings.TrimSuffix(file, ".pem"), cert)
	return path
}

// testConfig loads testdata/recallrelay.yaml with its certificates
// generated in a temporary directory ({{DIR}} in the file), edited by the
// replacements old1, new1, ...
func testConfig(t testing.TB, edits ...string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	writeTestCert(t, dir, "tenant-listener.pem", "relay.contoso.com")
	writeTestCert(t, dir, "return-listener.pem", "relay-return.contoso.com")
	writeTestCert(t, dir, "client.pem", "relay.contoso.com")
	writeTestCert(t, dir, "client-two-names.pem", "mail.contoso.com", "contoso.com")
	data, err := os.ReadFile("testdata/recallrelay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(text, edits[i]) {
			t.Fatalf("testdata/recallrelay.yaml has no %q", edits[i])
		}
		text = strings.ReplaceAll(text, edits[i], edits[i+1])
	}
	text = strings.ReplaceAll(text, "{{DIR}}", dir)
	cfg, err := config.Parse([]byte(text), "testdata/recallrelay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testSetup(t testing.TB, top Topology) *Setup {
	t.Helper()
	s, err := Plan(testConfig(t), Options{Topology: top, ReturnHost: "relay-return.contoso.com"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./exo -update to create it)", err)
	}
	if !bytes.Equal(want, []byte(got)) {
		t.Errorf("%s differs from the generated output (go test ./exo -update rewrites it); got:\n%s", path, got)
	}
}

func TestGolden(t *testing.T) {
	for _, top := range []Topology{Direct, ViaTenant} {
		s := testSetup(t, top)
		setup, err := s.SetupScript()
		if err != nil {
			t.Fatal(err)
		}
		removal, err := s.RemovalScript()
		if err != nil {
			t.Fatal(err)
		}
		golden(t, string(top)+"-setup.ps1", setup)
		golden(t, string(top)+"-remove.ps1", removal)
		golden(t, string(top)+"-checklist.txt", s.Checklist())
	}
}

// TestRemovalReversesSetup: the removal script removes exactly what the
// setup script creates, in reverse order.
func TestRemovalReversesSetup(t *testing.T) {
	for _, top := range []Topology{Direct, ViaTenant} {
		s := testSetup(t, top)
		setup, _ := s.SetupScript()
		removal, _ := s.RemovalScript()
		created, err := parseScript(setup)
		if err != nil {
			t.Fatal(err)
		}
		removed, err := parseScript(removal)
		if err != nil {
			t.Fatal(err)
		}
		if len(created) != len(removed) {
			t.Fatalf("%s: %d created, %d removed", top, len(created), len(removed))
		}
		for i, c := range created {
			r := removed[len(removed)-1-i]
			if want := strings.Replace(c.cmdlet, "New-", "Remove-", 1); r.cmdlet != want {
				t.Errorf("%s: removal %d is %s, want %s", top, len(removed)-i, r.cmdlet, want)
			}
			if name, id := c.args[0].values[0], r.args[0].values[0]; c.args[0].name != "Name" || r.args[0].name != "Identity" || name != id {
				t.Errorf("%s: created %q, removed %q", top, name, id)
			}
		}
	}
}

// TestRecallSignsMatchRules: each header field the rules test for recall
// traffic is classified as such by rules.ClassifyRecall, so the transport
// rules keep off the relay what the relay itself recognizes.
func TestRecallSignsMatchRules(t *testing.T) {
	s := testSetup(t, Direct)
	signs := map[string]string{recallRequestField: "true"} // the route rule's exception
	for _, k := range s.names.skips {
		if k.reason == "vendor-processed" {
			continue
		}
		v := k.values[0]
		if k.header == legacyRecallField {
			// The legacy artefact holds a message class, with companions.
			v = "IPM.Note\r\nX-VoiceMessageDuration: 0\r\nX-FaxNumberOfPages: 0"
		} else if k.header == trafficTypeField {
			v = "SJ0PR15MB4197:" + v
		}
		signs[k.header] = v
	}
	if len(signs) != 4 {
		t.Fatalf("want 4 recall signs, got %v", signs)
	}
	for field, v := range signs {
		h, _, err := headers.ReadHeader(strings.NewReader(field+": "+v+"\r\nSubject: x\r\n\r\n"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if r, why := rules.ClassifyRecall(h, nil); r == rules.NotRecall {
			t.Errorf("%s: %s is not recall traffic to rules.ClassifyRecall", field, v)
		} else {
			t.Logf("%s: %s (%s)", field, r, why)
		}
	}
}

func TestVendorMarkersFromRulesFile(t *testing.T) {
	dir := t.TempDir()
	rf := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rf, []byte("defaults:\n  vendor_markers: [X-Acme-Signed]\ndefault_route: [signatures]\n"), 0o600)
	cfg := testConfig(t, `rules_file: ""`, "rules_file: "+rf)
	s, err := Plan(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.VendorMarkers, ",") != "X-Acme-Signed" || !strings.Contains(s.MarkersFrom, "rules_file") {
		t.Errorf("markers %v from %s", s.VendorMarkers, s.MarkersFrom)
	}
	script, _ := s.SetupScript()
	if !strings.Contains(script, "-HeaderMatchesMessageHeader 'X-Acme-Signed'") || strings.Contains(script, "X-CodeTwoProcessed") {
		t.Errorf("script does not use the rules file's markers:\n%s", script)
	}
}

// TestPlanErrors: a configuration lacking what the setup needs gives an
// error naming the field.
func TestPlanErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		edits []string
		opts  Options
		want  []string
	}{
		{"placeholder hostname", []string{"hostname: relay.contoso.com", "hostname: relay.example.com"}, Options{},
			[]string{`hostname: "relay.example.com" is a placeholder (example.com is reserved for documentation)`}},
		{".invalid hostname", []string{"hostname: relay.contoso.com", "hostname: relay.demo.invalid"}, Options{},
			[]string{`hostname: "relay.demo.invalid" is a placeholder or private name (.invalid`}},
		{"bare hostname", []string{"hostname: relay.contoso.com", "hostname: relay"}, Options{},
			[]string{`hostname: "relay" is not a fully qualified domain name`}},
		{"IP hostname", []string{"hostname: relay.contoso.com", "hostname: 192.0.2.7"}, Options{},
			[]string{`hostname: "192.0.2.7" is an IP address`}},
		{"no listener certificate", []string{"cert_file: {{DIR}}/tenant-listener.pem", `cert_file: ""`}, Options{},
			[]string{"listeners.tenant.tls.cert_file: not set: Exchange Online's outbound connector (TlsSettings DomainValidation, TlsDomain relay.contoso.com)"}},
		{"listener certificate for another name", []string{"cert_file: {{DIR}}/tenant-listener.pem", "cert_file: {{DIR}}/return-listener.pem"}, Options{},
			[]string{"listeners.tenant.tls.cert_file: the certificate (names relay-return.contoso.com) does not cover relay.contoso.com"}},
		{"no client certificate", []string{"client_cert_file: {{DIR}}/client.pem", `client_cert_file: ""`}, Options{},
			[]string{"tenant.client_cert_file: not set: the relay must present a client certificate to Exchange Online"}},
		{"ambiguous certificate name", []string{"client_cert_file: {{DIR}}/client.pem", "client_cert_file: {{DIR}}/client-two-names.pem"}, Options{},
			[]string{"--cert-name: tenant.client_cert_file has several names (mail.contoso.com, contoso.com)"}},
		{"certificate name not on the certificate", nil, Options{CertName: "other.contoso.com"},
			[]string{`--cert-name: "other.contoso.com" is not a name on tenant.client_cert_file (names: relay.contoso.com)`}},
		{"empty loop marker value", []string{`value: "true"`, `value: " "`}, Options{},
			[]string{"headers.loop_marker.value: empty"}},
		{"loop marker value with a control character", []string{`value: "true"`, `value: "tr\u0007ue"`}, Options{},
			[]string{"headers.loop_marker.value:", "control character"}},
		{"via-tenant without return host", nil, Options{Topology: ViaTenant},
			[]string{"--return-host: required for the via-tenant topology: the configuration has no public name for the return listener (listeners.return.listen is \"0.0.0.0:2526\")"}},
		{"via-tenant return host is hostname", nil, Options{Topology: ViaTenant, ReturnHost: "relay.contoso.com"},
			[]string{`--return-host: "relay.contoso.com" is hostname`}},
		{"via-tenant return listener without certificate", []string{"cert_file: {{DIR}}/return-listener.pem", `cert_file: ""`}, Options{Topology: ViaTenant, ReturnHost: "relay-return.contoso.com"},
			[]string{"listeners.return.tls.cert_file: not set"}},
		{"via-tenant without vendor markers", nil, Options{Topology: ViaTenant, ReturnHost: "relay-return.contoso.com", VendorMarkers: []string{}},
			[]string{"--vendor-markers: no vendor marker"}},
		{"bad vendor marker", nil, Options{VendorMarkers: []string{"X-Bad Marker"}},
			[]string{`--vendor-markers: marker 1 "X-Bad Marker"`}},
		{"unknown topology", nil, Options{Topology: "hybrid"},
			[]string{`--topology: unknown topology "hybrid"`}},
		{"name too long", nil, Options{Prefix: strings.Repeat("R", 60)},
			[]string{"--prefix: object name", "longer than 64 characters"}},
		{"several problems at once", []string{"hostname: relay.contoso.com", "hostname: relay.example.com", "client_cert_file: {{DIR}}/client.pem", `client_cert_file: ""`}, Options{},
			[]string{"hostname:", "tenant.client_cert_file:"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(testConfig(t, tt.edits...), tt.opts)
			if err == nil {
				t.Fatal("Plan accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			var fe FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v is not a FieldError", err)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	cfg := testConfig(t, "listen: 0.0.0.0:25", "listen: 0.0.0.0:2525", "      - 104.47.0.0/17\n", "", "require: true", "require: false")
	s, err := Plan(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(s.Warnings, "\n")
	for _, w := range []string{
		`listeners.tenant.listen is "0.0.0.0:2525": Exchange Online delivers on port 25 only`,
		"listeners.tenant.allow_nets does not admit Exchange Online's published ranges 104.47.0.0/17",
		"listeners.tenant.tls.require is false",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("warnings %q lack %q", all, w)
		}
	}
	script, _ := s.SetupScript()
	if !strings.Contains(script, "# WARNING: listeners.tenant.listen") {
		t.Errorf("the script does not carry the warnings")
	}
}

func TestQuote(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "''"},
		{"relay.contoso.com", "'relay.contoso.com'"},
		{"it's", "'it''s'"},
		{"''", "''''''"},
		{"$env:USERNAME `whoami` $(Get-Date)", "'$env:USERNAME `whoami` $(Get-Date)'"},
		{"it\u2019s", "'it\u2019\u2019s'"},
		{"\u2018a\u201b", "'\u2018\u2018a\u201b\u201b'"},
		{"naïve", "'naïve'"},
	} {
		got, err := Quote(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Quote(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"a\nRemove-InboundConnector x", "a\rb", "a\x00b", "tab\there", "\x7f", "a\u0085b", "a\u2028b", "\xff"} {
		if got, err := Quote(in); err == nil {
			t.Errorf("Quote(%q) = %q, want an error", in, got)
		}
	}
}

// TestQuoteRoundTrip: what Quote writes, the script parser (PowerShell's
// single-quoted string rules) reads back unchanged.
func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a'b", "'", "x\u2019'\u2018y", "a,b", "-Confirm:$false", "' -Confirm:$false; Remove-Thing '"} {
		q, err := Quote(s)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseCall("New-TransportRule -Name " + q)
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		if len(c.args) != 1 || len(c.args[0].values) != 1 || c.args[0].values[0] != s {
			t.Errorf("Quote(%q) = %s parsed back as %+v", s, q, c.args)
		}
	}
}

func TestParseTopology(t *testing.T) {
	for in, want := range map[string]Topology{"direct": Direct, "via-tenant": ViaTenant, " Via-Tenant ": ViaTenant} {
		if got, err := ParseTopology(in); err != nil || got != want {
			t.Errorf("ParseTopology(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseTopology("hybrid"); err == nil {
		t.Error("hybrid accepted")
	}
}
