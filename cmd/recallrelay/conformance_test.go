package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/conformance"
	"github.com/recallrelay/recallrelay/internal/testpki"
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
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("no certificate here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	// ext is a --vendor run that passes the other checks.
	ext := func(more ...string) []string {
		return append([]string{"--vendor", "127.0.0.1:1", "--return-listen", "127.0.0.1:2", "--path", "direct"}, more...)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"vendor STARTTLS without vendor", []string{"--vendor-starttls"}, "--vendor-starttls: only used with --vendor"},
		{"vendor TLS flags without vendor", []string{"--vendor-starttls", "--vendor-client-cert", "c.pem", "--vendor-client-key", "k.pem"},
			"--vendor-starttls, --vendor-client-cert, --vendor-client-key: only used with --vendor"},
		{"ehlo without vendor", []string{"--ehlo", "mta.example.com"}, "--ehlo: only used with --vendor"},
		{"return certificate without vendor", []string{"--return-cert", "c.pem", "--return-key", "k.pem"}, "--return-cert, --return-key: only used with --vendor"},
		{"CA file without STARTTLS", ext("--vendor-ca-file", "ca.pem"), "--vendor-ca-file needs --vendor-starttls"},
		{"TLS flags without STARTTLS", ext("--vendor-tls-server-name", "mx.example.com", "--vendor-insecure-skip-verify"),
			"--vendor-tls-server-name and --vendor-insecure-skip-verify need --vendor-starttls"},
		{"client certificate without key", ext("--vendor-starttls", "--vendor-client-cert", "c.pem"), "--vendor-client-cert needs --vendor-client-key"},
		{"client key without certificate", ext("--vendor-starttls", "--vendor-client-key", "k.pem"), "--vendor-client-key needs --vendor-client-cert"},
		{"unreadable CA file", ext("--vendor-starttls", "--vendor-ca-file", missing), "--vendor-ca-file: open " + missing},
		{"CA file without certificates", ext("--vendor-starttls", "--vendor-ca-file", notPEM), "--vendor-ca-file " + notPEM + ": no PEM certificates"},
		{"client certificate that does not load", ext("--vendor-starttls", "--vendor-client-cert", notPEM, "--vendor-client-key", notPEM), "--vendor-client-cert: "},
		{"return certificate without key", ext("--return-cert", "c.pem"), "--return-cert needs --return-key"},
		{"return key without certificate", ext("--return-key", "k.pem"), "--return-key needs --return-cert"},
		{"return certificate that does not load", ext("--return-cert", missing, "--return-key", missing), "--return-cert: open " + missing},
		{"EHLO name with a space", ext("--ehlo", "mta example"), `--ehlo "mta example": want a host name or an address literal`},
		{"EHLO name with a bad literal", ext("--ehlo", "[300.1.2.3]"), `--ehlo "[300.1.2.3]"`},
		{"sender domain that is an address", []string{"--sender-domain", "admin@example.com"}, `--sender-domain "admin@example.com": want a domain name`},
		{"sender domain with message files", []string{"--sender-domain", "example.com", "--messages", dir}, "--messages sends the files' own addresses"},
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

func TestValidEHLOName(t *testing.T) {
	for _, tt := range []struct {
		name      string
		host, lit bool // validHostname, validAddressLiteral
	}{
		{"mta.contoso.com", true, false},
		{"localhost", true, false},
		{"mail-1.example.org.", true, false},
		{"[192.0.2.1]", false, true},
		{"[IPv6:2001:db8::1]", false, true},
		{"[2001:db8::1]", false, false},
		{"[IPv6:192.0.2.1]", false, false},
		{"192.0.2.1]", false, false},
		{"", false, false},
		{"-mta.example.com", false, false},
		{"mta..example.com", false, false},
		{"mta_1.example.com", false, false},
		{"mta example.com", false, false},
		{"user@example.com", false, false},
		{strings.Repeat("a", 64) + ".com", false, false},
	} {
		if got := validHostname(tt.name); got != tt.host {
			t.Errorf("validHostname(%q) = %v, want %v", tt.name, got, tt.host)
		}
		if got := validAddressLiteral(tt.name); got != tt.lit {
			t.Errorf("validAddressLiteral(%q) = %v, want %v", tt.name, got, tt.lit)
		}
	}
}

// vendorTxn is what a tlsVendor saw of one transaction it accepted.
type vendorTxn struct {
	helo       string   // the EHLO name in force at MAIL FROM
	from       string   // MAIL FROM
	rcpts      []string // RCPT TO
	clientCert string   // the client certificate's common name
}

// tlsVendor is a vendor service configured as production ones are: it
// refuses MAIL FROM before STARTTLS (530 5.7.0), its handshake requires a
// client certificate from its CA, and it sends every message it accepts
// back unchanged to ret, with STARTTLS verified by retTLS.
type tlsVendor struct {
	addr string
	ret  relaytest.Sender

	mu      sync.Mutex
	txns    []vendorTxn
	refused int // MAIL FROM refused for want of TLS
	back    sync.WaitGroup
}

// startTLSVendor starts a tlsVendor on a free loopback port with a server
// certificate for "vendor.test" from ca, accepting client certificates from
// ca; it is closed when the test ends.
func startTLSVendor(t *testing.T, ca *testpki.CA, ret string, retTLS *tls.Config) *tlsVendor {
	t.Helper()
	v := &tlsVendor{ret: relaytest.Sender{Addr: ret, Helo: "vendor.test", TLSConfig: retTLS, Backoff: 50 * time.Millisecond}}
	srv := smtp.NewServer(v)
	srv.Domain = "vendor.test"
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	srv.TLSConfig = &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, "vendor.test", x509.ExtKeyUsageServerAuth)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	v.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		v.back.Wait()
	})
	return v
}

// NewSession implements smtp.Backend.
func (v *tlsVendor) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &tlsVendorSession{v: v, c: c}, nil
}

// seen returns the transactions accepted so far.
func (v *tlsVendor) seen() ([]vendorTxn, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.txns), v.refused
}

type tlsVendorSession struct {
	v    *tlsVendor
	c    *smtp.Conn
	txn  vendorTxn
	utf8 bool
}

func (s *tlsVendorSession) Reset()        { s.txn, s.utf8 = vendorTxn{}, false }
func (s *tlsVendorSession) Logout() error { return nil }

func (s *tlsVendorSession) Mail(from string, opts *smtp.MailOptions) error {
	state, ok := s.c.TLSConnectionState()
	if !ok {
		s.v.mu.Lock()
		s.v.refused++
		s.v.mu.Unlock()
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	s.txn = vendorTxn{helo: s.c.Hostname(), from: from}
	if len(state.PeerCertificates) > 0 {
		s.txn.clientCert = state.PeerCertificates[0].Subject.CommonName
	}
	s.utf8 = opts != nil && opts.UTF8
	return nil
}

func (s *tlsVendorSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.txn.rcpts = append(s.txn.rcpts, to)
	return nil
}

func (s *tlsVendorSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.v.mu.Lock()
	s.v.txns = append(s.v.txns, s.txn)
	s.v.mu.Unlock()
	m := relaytest.Message{Name: "returned", From: s.txn.from, To: slices.Clone(s.txn.rcpts), UTF8: s.utf8, Data: data}
	s.v.back.Add(1)
	go func() {
		defer s.v.back.Done()
		s.v.ret.Send(context.Background(), m)
	}()
	return nil
}

// A production vendor requires STARTTLS and a client certificate: without
// the --vendor-* flags it refuses every message the test sends it; with
// them, and --return-cert for its delivery back over TLS, every message
// arrives exactly once, on both paths, and the vendor saw the --ehlo name,
// the client certificate and senders in --sender-domain.
func TestCmdConformanceVendorTLS(t *testing.T) {
	ca := testpki.NewCA(t, "conformance test CA")
	dir := t.TempDir()
	caFile := ca.WriteCA(t, dir)
	clientCert, clientKey := testpki.WritePair(t, dir, "client", ca.Issue(t, "tenant.test", x509.ExtKeyUsageClientAuth))
	returnCert, returnKey := testpki.WritePair(t, dir, "return", ca.Issue(t, "return.test", x509.ExtKeyUsageServerAuth))
	ret, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	v := startTLSVendor(t, ca, ret, &tls.Config{RootCAs: ca.Pool, ServerName: "return.test"})
	const ehlo, domain = "mta.contoso.test", "fabrikam-tenant.test"
	base := []string{"--json", "-", "--vendor", v.addr, "--return-listen", ret}
	tlsArgs := []string{
		"--vendor-starttls", "--vendor-ca-file", caFile, "--vendor-tls-server-name", "vendor.test",
		"--vendor-client-cert", clientCert, "--vendor-client-key", clientKey,
		"--ehlo", ehlo, "--sender-domain", domain,
		"--return-cert", returnCert, "--return-key", returnKey,
	}
	for _, p := range []conformance.Path{conformance.PathDirect, conformance.PathRelay} {
		t.Run(string(p), func(t *testing.T) {
			// Through the relay, the recall-safe rules keep the two recall
			// requests, the recall report and the calendar item off the
			// vendor: it is sent the other eight. The relay opens the
			// vendor's transaction at MAIL FROM, before the rules have seen
			// the header, so a vendor that refuses MAIL fails those four
			// too.
			bypassed := 0
			if p == conformance.PathRelay {
				bypassed = 4
			}
			before, _ := v.seen()

			rep, stderr, err := runConformance(t, append(base, "--path", string(p))...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			c := cell(t, rep, v.addr, p)
			txns, refused := v.seen()
			if len(txns) != len(before) || refused == 0 || c.NotAccepted != c.Sent || c.Complete() {
				t.Fatalf("without the TLS flags: vendor accepted %d, refused %d; cell not accepted %d of %d, complete %v; want every message for the vendor refused",
					len(txns)-len(before), refused, c.NotAccepted, c.Sent, c.Complete())
			}

			rep, stderr, err = runConformance(t, append(append(base, "--path", string(p)), tlsArgs...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			c = cell(t, rep, v.addr, p)
			if !c.Complete() || c.NotAccepted != 0 || c.Incomplete != "" {
				t.Fatalf("with the TLS flags: %s (not accepted %d, incomplete %q)", c.Damage.Summary, c.NotAccepted, c.Incomplete)
			}
			if pr := rep.Params; !pr.VendorTLS || !pr.ReturnTLS || pr.EHLO != ehlo || pr.SenderDomain != domain {
				t.Errorf("report parameters %+v", pr)
			}
			txns, _ = v.seen()
			got := txns[len(before):]
			if len(got) != c.Sent-bypassed {
				t.Fatalf("the vendor accepted %d transactions, want %d", len(got), c.Sent-bypassed)
			}
			for _, tx := range got {
				inDomain := slices.ContainsFunc(tx.rcpts, func(r string) bool { return strings.HasSuffix(r, "@"+domain) })
				if tx.helo != ehlo || tx.clientCert != "tenant.test" || !strings.HasSuffix(tx.from, "@"+domain) || !inDomain {
					t.Errorf("vendor saw EHLO %q, client certificate %q, MAIL FROM <%s>, RCPT TO %v; want %s, tenant.test and addresses in %s",
						tx.helo, tx.clientCert, tx.from, tx.rcpts, ehlo, domain)
				}
			}
		})
	}
}
