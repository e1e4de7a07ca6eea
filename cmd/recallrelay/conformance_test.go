package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/conformance"
	"github.com/recallrelay/recallrelay/relaytest"
)

// fastFlags keep a test run short: deliveries over loopback settle in
// milliseconds.
var fastFlags = []string{"--settle", "200ms", "--cell-timeout", "20s"}

func runConformance(t *testing.T, args ...string) (*conformance.Report, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := cmdConformance(append(append([]string{}, fastFlags...), args...), &stdout, &stderr)
	if err != nil {
		return nil, stderr.String(), err
	}
	rep, rerr := conformance.ReadReport(&stdout)
	if rerr != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", rerr, stdout.String())
	}
	return rep, stderr.String(), nil
}

func cell(t *testing.T, rep *conformance.Report, name string, p conformance.Path) *conformance.CellResult {
	t.Helper()
	for _, c := range rep.Cases {
		if c.Name == name {
			if cl := c.Cell(p); cl != nil {
				return cl
			}
		}
	}
	t.Fatalf("report has no %s cell for %s", p, name)
	return nil
}

// The small matrix through the relay exactly as serve runs it.
func TestCmdConformanceMatrix(t *testing.T) {
	htmlPath := filepath.Join(t.TempDir(), "report.html")
	rep, stderr, err := runConformance(t, "--json", "-", "--html", htmlPath,
		"--cases", "passthrough,strip-ms-headers,flatten-tnef",
		"--require-relay-survival", "100", "--expect-damage", "flatten-tnef")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if len(rep.Cases) != 3 {
		t.Fatalf("%d cases, want 3", len(rep.Cases))
	}
	for _, p := range []conformance.Path{conformance.PathDirect, conformance.PathRelay} {
		if c := cell(t, rep, "passthrough", p); !c.Complete() {
			t.Errorf("passthrough %s: %s", p, c.Damage.Summary)
		}
	}
	if c := cell(t, rep, "strip-ms-headers", conformance.PathDirect); c.Complete() || len(c.Damage.Missing) == 0 {
		t.Errorf("strip-ms-headers direct survived: %+v", c.Damage)
	}
	if c := cell(t, rep, "strip-ms-headers", conformance.PathRelay); !c.Complete() {
		t.Errorf("strip-ms-headers relay: %s", c.Damage.Summary)
	}
	// The generated set holds two recall requests and a recall report:
	// directly they all reach the vendor, through the relay none does.
	for _, name := range []string{"passthrough", "strip-ms-headers", "flatten-tnef"} {
		if rc := cell(t, rep, name, conformance.PathDirect).RecallToVendor; rc == nil || *rc != (conformance.RecallCount{Requests: 2, Reports: 1}) {
			t.Errorf("%s direct: recall to vendor %+v, want 2 requests and 1 report", name, rc)
		}
		if rc := cell(t, rep, name, conformance.PathRelay).RecallToVendor; rc == nil || *rc != (conformance.RecallCount{}) {
			t.Errorf("%s relay: recall to vendor %+v, want none", name, rc)
		}
	}
	// The tenant's DKIM signature: a vendor that drops X-MS-* fields drops
	// the signed X-MS-Exchange-SenderADCheck, which the relay puts back;
	// a vendor that removes a winmail.dat changes the body, which the
	// relay cannot undo.
	for _, tt := range []struct {
		name string
		p    conformance.Path
		want int
	}{
		{"passthrough", conformance.PathDirect, 12}, {"passthrough", conformance.PathRelay, 12},
		{"strip-ms-headers", conformance.PathDirect, 0}, {"strip-ms-headers", conformance.PathRelay, 12},
		{"flatten-tnef", conformance.PathRelay, 11},
	} {
		if got := cell(t, rep, tt.name, tt.p).DKIMIntact; got != tt.want {
			t.Errorf("%s %s: DKIM intact for %d messages, want %d", tt.name, tt.p, got, tt.want)
		}
	}
	if c := cell(t, rep, "flatten-tnef", conformance.PathRelay); c.Complete() || c.Damage.TNEFLost == 0 {
		t.Errorf("flatten-tnef relay: %+v", c.Damage)
	}
	// The table goes to stderr when stdout carries the JSON, after one
	// progress line per cell (stderr is not a terminal here).
	if !strings.Contains(stderr, "BEHAVIOUR") || strings.Count(stderr, "conformance: [") != 6 || !strings.Contains(stderr, "[6/6] flatten-tnef, relay") {
		t.Errorf("stderr:\n%s", stderr)
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte("<svg")) || !bytes.Contains(page, []byte("winmail.dat lost")) {
		t.Errorf("HTML report lacks the chart or the damage")
	}
}

func TestCmdConformanceGate(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // substring of the error; empty: success
	}{
		{"damage below threshold", []string{"--cases", "flatten-tnef", "--path", "relay", "--require-relay-survival", "100"},
			"flatten-tnef: relay survival 91.7% is below 100%"},
		{"expected damage missing", []string{"--cases", "passthrough", "--path", "relay", "--expect-damage", "passthrough"},
			"passthrough: expected damage through the relay"},
		{"lower threshold passes", []string{"--cases", "flatten-tnef", "--path", "relay", "--require-relay-survival", "80"}, ""},
		{"no gate, no failure", []string{"--cases", "flatten-tnef", "--path", "relay"}, ""},
		{"recall kept off the vendor", []string{"--cases", "signature-service", "--path", "relay", "--require-no-recall-to-vendor"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := cmdConformance(append(append([]string{}, fastFlags...), tt.args...), &stdout, &stderr)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var ue usageError
				if err == nil || !strings.Contains(err.Error(), tt.want) || errors.As(err, &ue) {
					t.Fatalf("err = %v, want a gate failure %q", err, tt.want)
				}
			}
			// The table is printed whatever the gate says.
			if !strings.Contains(stdout.String(), "BEHAVIOUR") {
				t.Errorf("no table on stdout:\n%s", stdout.String())
			}
		})
	}
}

// --vendor points the run at a "real" vendor: here a relaytest.Vendor the
// test starts, which sends mail back to --return-listen.
func TestCmdConformanceExternalVendor(t *testing.T) {
	ret, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	v, err := relaytest.NewVendor(relaytest.VendorConfig{
		Name: "external", ReturnAddr: ret, Behaviors: relaytest.MustParseBehaviors("strip-ms-headers,footer-html"),
		Backoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(); err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	args := []string{"--json", "-", "--vendor", v.Addr(), "--return-listen", ret}

	rep, stderr, err := runConformance(t, append(args, "--path", "direct")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if rep.Params.Vendor != v.Addr() || rep.Params.ReturnListen != ret || len(rep.Cases) != 1 || rep.Cases[0].Relay != nil {
		t.Fatalf("report %+v", rep)
	}
	direct := rep.Cases[0].Direct
	if direct.Complete() || direct.Lost != 0 || direct.Incomplete != "" {
		t.Errorf("direct: once/lost/dup %d/%d/%d, survived %d, incomplete %q; want every recipient once, identity stripped",
			direct.DeliveredOnce, direct.Lost, direct.Duplicated, direct.Survived, direct.Incomplete)
	}
	if rc := direct.RecallToVendor; rc == nil || *rc != (conformance.RecallCount{Requests: 2, Reports: 1}) {
		t.Errorf("direct recall to vendor = %+v, want 2 requests, 1 report", rc)
	}
	received := len(v.Received())

	rep, stderr, err = runConformance(t, append(args, "--path", "relay")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	relayCell := rep.Cases[0].Relay
	if rep.Cases[0].Direct != nil || relayCell == nil {
		t.Fatalf("relay cell: %+v", rep.Cases[0])
	}
	if !relayCell.Complete() {
		t.Errorf("relay: %s; want every message restored", relayCell.Damage.Summary)
	}
	if relayCell.RecallToVendor != nil {
		t.Errorf("recall to an external vendor behind the relay cannot be observed, got %+v", relayCell.RecallToVendor)
	}
	// The relay's recall-safe rules keep the two recall requests, the
	// recall report and the calendar item of the generated set off the
	// vendor; it gets the other eight, none of them recall traffic.
	through := v.Received()[received:]
	if len(through) != relayCell.Sent-4 {
		t.Errorf("the vendor received %d messages through the relay, want %d", len(through), relayCell.Sent-4)
	}
	for _, d := range through {
		if k := conformance.ClassifyRecall(d.Data); k != conformance.NotRecall {
			t.Errorf("recall traffic (%v) reached the external vendor through the relay", k)
		}
	}
}

func TestCmdConformanceUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad path", []string{"--path", "sideways"}, "--path"},
		{"vendor without path", []string{"--vendor", "127.0.0.1:1", "--return-listen", "127.0.0.1:2"}, "--path direct or --path relay"},
		{"vendor on both paths", []string{"--vendor", "127.0.0.1:1", "--return-listen", "127.0.0.1:2", "--path", "both"}, "not both"},
		{"vendor without return address", []string{"--vendor", "127.0.0.1:1", "--path", "direct"}, "--return-listen"},
		{"vendor with cases", []string{"--vendor", "127.0.0.1:1", "--return-listen", "127.0.0.1:2", "--path", "direct", "--cases", "duplicate"}, "--cases"},
		{"return address without vendor", []string{"--return-listen", "127.0.0.1:2"}, "only used with --vendor"},
		{"unknown case", []string{"--cases", "passthrough,teleport"}, `unknown case "teleport"`},
		{"unknown expected damage", []string{"--expect-damage", "teleport"}, `"teleport" is not a case`},
		{"expected damage outside the selection", []string{"--cases", "passthrough", "--expect-damage", "flatten-tnef"}, `"flatten-tnef" is not a case`},
		{"zero senders", []string{"--senders", "0"}, "must be positive"},
		{"unknown flag", []string{"--frobnicate"}, "frobnicate"},
		{"bad number", []string{"--require-relay-survival", "all"}, "require-relay-survival"},
		{"stray argument", []string{"now"}, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := cmdConformance(tt.args, &stdout, &stderr)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want a usage error mentioning %q", err, tt.want)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout: %s", stdout.String())
			}
		})
	}
}
