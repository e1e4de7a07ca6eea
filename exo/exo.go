// Package exo is recallrelay's Exchange Online setup: from a relay
// configuration (config.Config) it generates the PowerShell an Exchange
// administrator runs in Exchange Online PowerShell (after
// Connect-ExchangeOnline) to put the relay into the tenant's mail flow, the
// script that takes it out again, and a checklist to verify the result.
//
// What it creates, in this order (the removal script works backwards):
//
//   - an inbound connector (OnPremises, certificate-based,
//     CloudServicesMailEnabled) that accepts the mail the relay delivers
//     back, so that Exchange promotes its cross-premises headers and treats
//     it as internal again;
//   - a rule-scoped outbound connector (OnPremises, smart host = the relay's
//     hostname, TLS DomainValidation, CloudServicesMailEnabled) to the
//     relay's tenant listener, and, in the via-tenant topology, a second one
//     to the relay's return listener;
//   - in the via-tenant topology, transport rules that send mail carrying a
//     vendor's processed marker, but not the relay's loop marker, to the
//     return listener;
//   - "skip" transport rules that stop rule processing for recall requests,
//     recall reports and mail a vendor has already processed;
//   - the transport rule that routes the organization's mail to the relay,
//     except mail carrying the relay's loop marker or a recall field.
//
// A transport rule tests one header field per condition or exception
// parameter (HeaderContainsMessageHeader and HeaderMatchesMessageHeader
// each take a single field name), so one rule cannot except every marker:
// the skip rules, placed above the route rule, do it with
// StopRuleProcessing.
//
// Nothing here talks to Exchange Online. The scripts are proven against
// Microsoft's documented cmdlet parameters (the package tests) and the
// relay against the repository's fake MTA; none of it has been run
// against a real tenant. docs/exchange-online.md explains each setting.
package exo

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/rules"
)

// Topology is how mail comes back from the vendor.
type Topology string

const (
	// Direct: the vendor delivers to the relay's return listener, and the
	// relay reinjects into the tenant through the inbound connector.
	Direct Topology = "direct"
	// ViaTenant: the vendor delivers back to Exchange Online, as hosted
	// signature services document; a second transport rule sends mail
	// carrying the vendor's processed marker (and not the relay's loop
	// marker) through a second outbound connector to the relay's return
	// listener, which restores it and reinjects it through the inbound
	// connector.
	ViaTenant Topology = "via-tenant"
)

// ParseTopology parses "direct" or "via-tenant".
func ParseTopology(s string) (Topology, error) {
	switch t := Topology(strings.ToLower(strings.TrimSpace(s))); t {
	case Direct, ViaTenant:
		return t, nil
	}
	return "", fmt.Errorf("unknown topology %q: want direct or via-tenant", s)
}

// Options are what the configuration does not say.
type Options struct {
	// Topology defaults to Direct.
	Topology Topology
	// CertName is the inbound connector's TlsSenderCertificateName: a name
	// on the certificate the relay presents to Exchange Online
	// (tenant.client_cert_file). Default: the certificate's only name, or
	// hostname when the certificate has several names and hostname is one
	// of them. The configuration has no field for it.
	CertName string
	// ReturnHost is the public DNS name of the relay's return listener,
	// reachable on port 25, for the via-tenant topology's second outbound
	// connector. Required there; the configuration has no field for it.
	ReturnHost string
	// VendorMarkers are the header fields vendors stamp on mail they have
	// processed. nil: defaults.vendor_markers of the configuration's
	// rules_file, or rules.DefaultVendorMarkers() without one.
	VendorMarkers []string
	// Prefix starts the name of every object created. Default:
	// "RecallRelay".
	Prefix string
}

// Setup is everything the scripts are generated from, derived and
// checked by Plan.
type Setup struct {
	Topology Topology
	// Hostname is the relay's public name: the outbound connector's smart
	// host and TLS domain.
	Hostname string
	// TenantListen and ReturnListen are the listeners' listen addresses.
	TenantListen, ReturnListen string
	// CertName is the inbound connector's TlsSenderCertificateName.
	CertName string
	// ReturnHost is the via-tenant return connector's smart host.
	ReturnHost string
	// LoopMarker is the field the relay stamps on mail it delivers back.
	LoopMarker config.LoopMarker
	// RefHeader is the relay's reference header.
	RefHeader string
	// VendorMarkers and MarkersFrom: the vendors' processed markers and
	// where they came from.
	VendorMarkers []string
	MarkersFrom   string
	// Warnings are things the administrator should look at; the scripts
	// carry them as comments.
	Warnings []string

	names names
}

// names are the names of the Exchange objects.
type names struct {
	inbound, outbound, returnOutbound, route string
	returns                                  []string // one per vendor marker (via-tenant)
	skips                                    []skipRule
}

// FieldError is a problem with a configuration field (its YAML path) or
// with an option (its command-line flag).
type FieldError struct {
	Field string
	Msg   string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// maxNameLength is the longest connector or transport rule name Exchange
// Online accepts (New-TransportRule -Name, New-OutboundConnector -Name:
// "The maximum length is 64 characters").
const maxNameLength = 64

// Plan checks cfg and opts and derives the Setup. Every problem is
// reported, each as a FieldError naming the configuration field (or
// option) to change.
func Plan(cfg *config.Config, opts Options) (*Setup, error) {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, FieldError{field, fmt.Sprintf(format, a...)})
	}
	s := &Setup{
		Topology:     opts.Topology,
		Hostname:     strings.TrimSuffix(strings.ToLower(strings.TrimSpace(cfg.Hostname)), "."),
		TenantListen: cfg.Listeners.Tenant.Listen,
		ReturnListen: cfg.Listeners.Return.Listen,
		LoopMarker:   cfg.Headers.LoopMarker,
		RefHeader:    cfg.Reference.Header,
	}
	if s.Topology == "" {
		s.Topology = Direct
	}
	if _, err := ParseTopology(string(s.Topology)); err != nil {
		add("--topology", "%v", err)
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "RecallRelay"
	}

	// hostname: the outbound connector's SmartHosts and TlsDomain.
	if why := publicName(s.Hostname); why != "" {
		add("hostname", "%q %s: set hostname to the relay's public DNS name, the name Exchange Online connects to (the outbound connector's SmartHosts and TlsDomain)%s",
			cfg.Hostname, why, defaultedHostname(cfg))
	}
	s.listenerChecks(cfg.Listeners.Tenant, "listeners.tenant", s.Hostname, add)

	// The loop marker: the route rule's exception.
	if err := headers.CheckFieldName(s.LoopMarker.Name); err != nil {
		add("headers.loop_marker.name", "%v", err)
	}
	if strings.TrimSpace(s.LoopMarker.Value) == "" {
		add("headers.loop_marker.value", "empty: the route rule excepts mail whose loop marker contains this value")
	} else if _, err := Quote(s.LoopMarker.Value); err != nil {
		add("headers.loop_marker.value", "%v", err)
	}

	// The vendors' markers.
	if opts.VendorMarkers != nil {
		s.VendorMarkers, s.MarkersFrom = slices.Clone(opts.VendorMarkers), "--vendor-markers"
	} else {
		m, from, err := VendorMarkers(cfg)
		if err != nil {
			add("rules_file", "%v", err)
		}
		s.VendorMarkers, s.MarkersFrom = m, from
	}
	for i, m := range s.VendorMarkers {
		if err := headers.CheckFieldName(m); err != nil {
			add(s.MarkersFrom, "marker %d %q: %v", i+1, m, err)
		}
		if strings.EqualFold(m, s.LoopMarker.Name) {
			add(s.MarkersFrom, "marker %q is the relay's own loop marker (headers.loop_marker.name)", m)
		}
	}

	// The inbound connector's certificate name.
	s.CertName = certName(cfg, opts.CertName, s.Hostname, add)

	// The via-tenant return connector.
	if s.Topology == ViaTenant {
		s.ReturnHost = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(opts.ReturnHost)), ".")
		switch {
		case s.ReturnHost == "":
			add("--return-host", "required for the via-tenant topology: the configuration has no public name for the return listener (listeners.return.listen is %q), and Exchange Online's second outbound connector needs one, reachable on port 25", s.ReturnListen)
		case publicName(s.ReturnHost) != "":
			add("--return-host", "%q %s", opts.ReturnHost, publicName(s.ReturnHost))
		case s.ReturnHost == s.Hostname:
			add("--return-host", "%q is hostname, the tenant listener's name: Exchange Online delivers on port 25 only, so the return listener needs a name (an address) of its own", opts.ReturnHost)
		default:
			s.listenerChecks(cfg.Listeners.Return, "listeners.return", s.ReturnHost, add)
		}
		if len(s.VendorMarkers) == 0 {
			add(s.MarkersFrom, "no vendor marker: the via-tenant topology recognizes mail coming back from the vendor by its processed marker")
		}
	}

	s.names = makeNames(prefix, s)
	for _, n := range s.allNames() {
		if len(n) > maxNameLength {
			add("--prefix", "object name %q is longer than %d characters, Exchange Online's limit", n, maxNameLength)
		}
	}
	if s.Topology == Direct && len(cfg.Listeners.Return.AllowNets) == 0 && len(cfg.Listeners.Return.TLS.ClientCertNames) == 0 && cfg.Listeners.Return.Auth.UsersFile == "" {
		s.Warnings = append(s.Warnings, "listeners.return admits every client (no allow_nets, no client authentication): the vendor delivers there; restrict it to the vendor's addresses")
	}
	if !strings.HasSuffix(strings.ToLower(hostOnly(cfg.Tenant.Address)), ".mail.protection.outlook.com") {
		s.Warnings = append(s.Warnings, fmt.Sprintf("tenant.address %q is not a <tenant>.mail.protection.outlook.com host: the relay must deliver back to the tenant's MX endpoint for the inbound connector to match", cfg.Tenant.Address))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// listenerChecks checks a listener Exchange Online connects to as name.
func (s *Setup) listenerChecks(l config.Listener, path, name string, add func(string, string, ...any)) {
	if l.TLS.CertFile == "" {
		add(path+".tls.cert_file", "not set: Exchange Online's outbound connector (TlsSettings DomainValidation, TlsDomain %s) delivers only over TLS to a certificate for %s", name, name)
	} else if leaf, err := readLeaf(l.TLS.CertFile); err != nil {
		add(path+".tls.cert_file", "%v", err)
	} else if err := leaf.VerifyHostname(name); err != nil {
		add(path+".tls.cert_file", "the certificate (names %s) does not cover %s: DomainValidation would refuse it", strings.Join(certNames(leaf), ", "), name)
	}
	if !l.TLS.Require {
		s.Warnings = append(s.Warnings, path+".tls.require is false: set it to true, so that nothing reaches the relay without TLS")
	}
	if _, port, err := net.SplitHostPort(l.Listen); err == nil && port != "25" {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s.listen is %q: Exchange Online delivers on port 25 only; forward port 25 of %s to it", path, l.Listen, name))
	}
	if missing := missingRanges(l.AllowNets); len(l.AllowNets) > 0 && len(missing) > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s.allow_nets does not admit Exchange Online's published ranges %s (Office 365 URLs and IP address ranges, Exchange Online, ID 10): mail from there would be refused", path, strings.Join(missing, ", ")))
	}
}

// ExchangeOnlineRanges are the addresses Exchange Online delivers from:
// the "Exchange Online" endpoint set ID 10 (*.mail.protection.outlook.com,
// TCP 25) of Microsoft's "Office 365 URLs and IP address ranges",
// worldwide instance, as published in endpoints version 2022072800 (the
// version read for this list). Microsoft changes it rarely, with notice:
// compare it with https://endpoints.office.com/endpoints/worldwide?clientrequestid=<GUID>
// (the web service the page is generated from) before deploying.
var ExchangeOnlineRanges = []string{
	"40.92.0.0/15",
	"40.107.0.0/16",
	"52.100.0.0/14",
	"104.47.0.0/17",
	"2a01:111:f400::/48",
	"2a01:111:f403::/48",
}

// missingRanges lists the ExchangeOnlineRanges no prefix of allow covers.
func missingRanges(allow []string) []string {
	var nets []netip.Prefix
	for _, a := range allow {
		if p, err := config.ParseNet(a); err == nil {
			nets = append(nets, p)
		}
	}
	var out []string
	for _, r := range ExchangeOnlineRanges {
		want := netip.MustParsePrefix(r)
		if !slices.ContainsFunc(nets, func(p netip.Prefix) bool {
			return p.Bits() <= want.Bits() && p.Contains(want.Addr())
		}) {
			out = append(out, r)
		}
	}
	return out
}

// defaultedHostname explains where a hostname came from when the file
// may not have set it.
func defaultedHostname(cfg *config.Config) string {
	if h, err := os.Hostname(); err == nil && h == cfg.Hostname {
		return " (without hostname in the file, it is this machine's name)"
	}
	return ""
}

// publicName says why name cannot be a public DNS name Exchange Online
// connects to, or "" when it can.
func publicName(name string) string {
	n := strings.TrimSuffix(strings.ToLower(name), ".")
	switch {
	case n == "":
		return "is empty"
	case net.ParseIP(n) != nil:
		return "is an IP address, not a DNS name (TLS DomainValidation needs a name)"
	case !strings.Contains(n, "."):
		return "is not a fully qualified domain name"
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") ||
			strings.ContainsFunc(label, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) {
			return "is not a valid DNS name"
		}
	}
	for _, tld := range []string{"example", "invalid", "test", "localhost", "local", "internal", "home.arpa"} {
		if n == tld || strings.HasSuffix(n, "."+tld) {
			return "is a placeholder or private name (." + tld + " is reserved and not resolvable from Exchange Online)"
		}
	}
	for _, d := range []string{"example.com", "example.net", "example.org"} {
		if n == d || strings.HasSuffix(n, "."+d) {
			return "is a placeholder (" + d + " is reserved for documentation)"
		}
	}
	return ""
}

// certName derives the inbound connector's TlsSenderCertificateName from
// the relay's client certificate towards the tenant.
func certName(cfg *config.Config, want, hostname string, add func(string, string, ...any)) string {
	want = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(want)), ".")
	if cfg.Tenant.ClientCertFile == "" {
		add("tenant.client_cert_file", "not set: the relay must present a client certificate to Exchange Online, and the inbound connector identifies the relay by a name on it (TlsSenderCertificateName, an accepted domain of the tenant); set tenant.client_cert_file and tenant.client_key_file")
		return ""
	}
	leaf, err := readLeaf(cfg.Tenant.ClientCertFile)
	if err != nil {
		add("tenant.client_cert_file", "%v", err)
		return ""
	}
	ns := certNames(leaf)
	var got string
	switch {
	case want != "":
		if !slices.Contains(ns, want) {
			add("--cert-name", "%q is not a name on tenant.client_cert_file (names: %s)", want, strings.Join(ns, ", "))
			return ""
		}
		got = want
	case len(ns) == 1:
		got = ns[0]
	case slices.Contains(ns, hostname):
		got = hostname
	case len(ns) == 0:
		add("tenant.client_cert_file", "the certificate has no DNS name and no subject common name for TlsSenderCertificateName")
		return ""
	default:
		add("--cert-name", "tenant.client_cert_file has several names (%s) and hostname is not one of them: choose the one that is an accepted domain of the tenant", strings.Join(ns, ", "))
		return ""
	}
	if why := publicName(strings.TrimPrefix(got, "*.")); why != "" {
		add("tenant.client_cert_file", "certificate name %q %s: the inbound connector's TlsSenderCertificateName must be an accepted domain of the tenant", got, why)
		return ""
	}
	return got
}

// readLeaf reads the first certificate of a PEM file.
func readLeaf(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM certificate", path)
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return c, nil
		}
	}
}

// certNames lists a certificate's DNS names, or its common name when it
// has none, in lower case.
func certNames(c *x509.Certificate) []string {
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, strings.ToLower(n))
	}
	if len(out) == 0 && c.Subject.CommonName != "" {
		out = append(out, strings.ToLower(c.Subject.CommonName))
	}
	return out
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// VendorMarkers returns the vendors' processed markers the relay counts:
// defaults.vendor_markers of cfg's rules file when it sets them, else
// rules.DefaultVendorMarkers(); and says where they came from. The rules
// file is checked with rules.Load first.
func VendorMarkers(cfg *config.Config) ([]string, string, error) {
	if cfg.RulesFile == "" {
		return rules.DefaultVendorMarkers(), "rules.DefaultVendorMarkers, no rules_file", nil
	}
	if _, err := rules.Load(cfg.RulesFile); err != nil {
		return nil, "rules_file", err
	}
	data, err := os.ReadFile(cfg.RulesFile)
	if err != nil {
		return nil, "rules_file", err
	}
	var f struct {
		Defaults struct {
			VendorMarkers *[]string `yaml:"vendor_markers"`
		} `yaml:"defaults"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, "rules_file", fmt.Errorf("%s: %w", cfg.RulesFile, err)
	}
	if f.Defaults.VendorMarkers == nil {
		return rules.DefaultVendorMarkers(), "rules.DefaultVendorMarkers, rules_file sets no defaults.vendor_markers", nil
	}
	return *f.Defaults.VendorMarkers, "rules_file defaults.vendor_markers", nil
}
