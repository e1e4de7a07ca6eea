package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/recallrelay/recallrelay/conformance"
	"github.com/recallrelay/recallrelay/internal/tlsflags"
	"github.com/recallrelay/recallrelay/relaytest"
)

// cmdConformance runs the recall-survival matrix (package conformance):
// every vendor behaviour, or one real vendor, directly and through a fresh
// in-process relay, and reports per cell how many messages arrived exactly
// once with their recall identity intact. It fails on a run error, and on
// a gate violation when --require-relay-survival or --expect-damage is
// given; the survival itself does not fail the run.
func cmdConformance(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("conformance")
	dir := fs.String("messages", "", "send the .eml files of `DIR` instead of generated Exchange messages")
	jsonOut := fs.String("json", "", "write the full report as JSON to `FILE` (- for stdout)")
	htmlOut := fs.String("html", "", "write a self-contained HTML report to `FILE`")
	vendor := fs.String("vendor", "", "test the real vendor service at `HOST:PORT` instead of fake vendors")
	returnListen := fs.String("return-listen", "", "with --vendor: the `ADDR` the vendor sends mail back to")
	returnAllow := fs.String("return-allow", "", "with --vendor --path relay: the comma-separated `NETS` the vendor sends from, the return leg's allow_nets (default: --vendor's address when it is an IP address)")
	vf := registerVendorFlags(fs)
	senderDomain := fs.String("sender-domain", "", "the `DOMAIN` of the generated messages' senders and internal recipients (default contoso.com), so that a vendor applies its configuration for that domain; not with --messages")
	pathFlag := fs.String("path", "", "direct, relay or both (default both; with --vendor, direct or relay is required)")
	cases := fs.String("cases", "", "run only these comma-separated `CASES` of the matrix")
	minSurvival := fs.Float64("require-relay-survival", -1, "exit 1 if a relay-path cell not in --expect-damage survives below `N` percent")
	expect := fs.String("expect-damage", "", "comma-separated `CASES` whose relay-path cell must be below 100%")
	noRecall := fs.Bool("require-no-recall-to-vendor", false, "exit 1 if recall requests or reports reach a fake vendor through the relay")
	senders := fs.Int("senders", conformance.DefaultSenders, "messages sent at once per cell")
	settle := fs.Duration("settle", conformance.DefaultSettle, "quiet time after the vendor is idle before a cell is evaluated")
	cellTimeout := fs.Duration("cell-timeout", conformance.DefaultCellTimeout, "time limit per cell")
	verbose := fs.Bool("verbose", false, "print the relays' log lines to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	cfg := conformance.Config{
		VendorAddr:   *vendor,
		ReturnListen: *returnListen,
		SenderDomain: *senderDomain,
		Senders:      *senders,
		Settle:       *settle,
		CellTimeout:  *cellTimeout,
	}
	if err := vf.apply(&cfg); err != nil {
		return err
	}
	if *senderDomain != "" {
		if *dir != "" {
			return usageError{errors.New("--sender-domain sets the generated messages' domain; --messages sends the files' own addresses")}
		}
		if !validHostname(*senderDomain) {
			return usageError{fmt.Errorf("--sender-domain %q: want a domain name such as example.com", *senderDomain)}
		}
	}
	switch *pathFlag {
	case "direct":
		cfg.Paths = []conformance.Path{conformance.PathDirect}
	case "relay":
		cfg.Paths = []conformance.Path{conformance.PathRelay}
	case "both":
		cfg.Paths = []conformance.Path{conformance.PathDirect, conformance.PathRelay}
	case "":
		if *vendor != "" {
			return usageError{errors.New("--vendor needs --path direct or --path relay: the tenant and the relay's return leg cannot both listen on --return-listen")}
		}
	default:
		return usageError{fmt.Errorf("--path %q: want direct, relay or both", *pathFlag)}
	}
	if *senders <= 0 || *settle <= 0 || *cellTimeout <= 0 {
		return usageError{errors.New("--senders, --settle and --cell-timeout must be positive")}
	}
	if *vendor != "" {
		if *returnListen == "" {
			return usageError{errors.New("--vendor needs --return-listen ADDR, where the vendor sends mail back")}
		}
		if len(cfg.Paths) != 1 {
			return usageError{errors.New("--vendor needs --path direct or --path relay, not both")}
		}
		if *cases != "" {
			return usageError{errors.New("--cases selects fake-vendor behaviours; it cannot be used with --vendor")}
		}
		cfg.Cases = []conformance.Case{{Name: *vendor}}
		if *returnAllow == "" {
			if host, _, err := net.SplitHostPort(*vendor); err == nil {
				if _, err := netip.ParseAddr(host); err == nil {
					*returnAllow = host
				}
			}
		}
	} else {
		if *returnListen != "" || *returnAllow != "" {
			return usageError{errors.New("--return-listen and --return-allow are only used with --vendor")}
		}
		cfg.Cases = conformance.DefaultCases()
		if *cases != "" {
			var err error
			if cfg.Cases, err = selectCases(cfg.Cases, splitList(*cases)); err != nil {
				return usageError{err}
			}
		}
	}
	gate := conformance.Gate{MinRelaySurvival: *minSurvival, ExpectDamage: splitList(*expect), NoRecallToVendor: *noRecall}
	for _, name := range gate.ExpectDamage {
		if !slices.ContainsFunc(cfg.Cases, func(c conformance.Case) bool { return c.Name == name }) {
			return usageError{fmt.Errorf("--expect-damage: %q is not a case of this run", name)}
		}
	}
	gated := *minSurvival >= 0 || len(gate.ExpectDamage) > 0 || *noRecall
	if *dir != "" {
		msgs, err := relaytest.LoadDir(*dir)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return fmt.Errorf("--messages %s: no .eml files", *dir)
		}
		cfg.Messages, cfg.MessageSource = msgs, *dir
	}

	logw := io.Discard
	if *verbose {
		logw = stderr
	}
	cfg.StartRelay = conformanceRelay(logw, splitList(*returnAllow))
	cfg.Progress = newProgress(stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := conformance.Run(ctx, cfg)
	if err != nil {
		return err
	}

	table := stdout
	if *jsonOut == "-" {
		table = stderr // keep stdout pure JSON
		if err := rep.WriteJSON(stdout); err != nil {
			return err
		}
	} else if *jsonOut != "" {
		if err := writeFile(*jsonOut, rep.WriteJSON); err != nil {
			return err
		}
	}
	if *htmlOut != "" {
		if err := writeFile(*htmlOut, rep.WriteHTML); err != nil {
			return err
		}
	}
	if err := rep.WriteText(table); err != nil {
		return err
	}
	if gated {
		if v := gate.Check(rep); len(v) > 0 {
			return fmt.Errorf("conformance gate failed:\n  %s", strings.Join(v, "\n  "))
		}
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// selectCases returns the cases of all named in names, in matrix order.
func selectCases(all []conformance.Case, names []string) ([]conformance.Case, error) {
	var out []conformance.Case
	for _, n := range names {
		if !slices.ContainsFunc(all, func(c conformance.Case) bool { return c.Name == n }) {
			var known []string
			for _, c := range all {
				known = append(known, c.Name)
			}
			return nil, fmt.Errorf("--cases: unknown case %q (known: %s)", n, strings.Join(known, ", "))
		}
	}
	for _, c := range all {
		if slices.Contains(names, c.Name) {
			out = append(out, c)
		}
	}
	return out, nil
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// newProgress returns the progress reporter for w: a redrawn bar when w is
// a terminal, one line per finished cell otherwise. golang.org/x/term is not
// among the module's dependencies, so a character device counts as a
// terminal.
func newProgress(w io.Writer) func(conformance.Progress) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	start := time.Now()
	return func(p conformance.Progress) {
		if !tty {
			if p.Result != nil {
				fmt.Fprintf(w, "conformance: [%d/%d] %s, %s: %.1f%% (%.1fs)\n",
					p.Done, p.Total, p.Case, p.Path, p.Result.SurvivalPercent, p.Result.DurationSeconds)
			}
			return
		}
		const width = 30
		filled := width * p.Done / max(p.Total, 1)
		fmt.Fprintf(w, "\r\033[K[%s%s] %d/%d %s, %s  %s",
			strings.Repeat("#", filled), strings.Repeat(".", width-filled),
			p.Done, p.Total, p.Case, p.Path, time.Since(start).Round(time.Second))
		if p.Result != nil && p.Done == p.Total {
			fmt.Fprintln(w)
		}
	}
}

// conformanceRelay returns the relay starter of the conformance command:
// localRelay, the relay exactly as demo and serve run it, on loopback
// ports unless the return leg must listen on a fixed address (--vendor
// --return-listen), with the vendor's STARTTLS, EHLO name and the return
// leg's certificate as c gives them (--vendor-*, --ehlo, --return-*).
//
// A return leg on a fixed address admits allow (the vendor's sending
// networks) only, as a deployed one would: one reachable by everyone is
// refused.
func conformanceRelay(logw io.Writer, allow []string) conformance.StartRelayFunc {
	return func(c conformance.RelayConfig) (conformance.RunningRelay, error) {
		l := localRelay{
			VendorAddr: c.VendorAddr, TenantAddr: c.TenantAddr, ReturnListen: c.ReturnListen,
			VendorTLS: c.VendorTLS, VendorHELO: c.HELO, ReturnTLS: c.ReturnTLS, Log: logw,
		}
		if c.ReturnListen != "" {
			l.ReturnAllow = allow
		}
		r, _, stop, err := l.start()
		if err != nil {
			return conformance.RunningRelay{}, err
		}
		return conformance.RunningRelay{TenantAddr: r.TenantAddr(), ReturnAddr: r.ReturnAddr(), Stop: stop}, nil
	}
}

// vendorFlags are the conformance command's settings for a real vendor
// (--vendor) beyond its address: how the test speaks to the vendor and
// how the vendor delivers back.
type vendorFlags struct {
	tls                   *tlsflags.Client // --vendor-starttls and the rest
	ehlo                  string
	returnCert, returnKey string
}

// registerVendorFlags defines the vendorFlags on fs.
func registerVendorFlags(fs *flag.FlagSet) *vendorFlags {
	v := &vendorFlags{tls: tlsflags.Register(fs, "vendor-", "vendor",
		"with --vendor: issue STARTTLS to the vendor and fail without it, from the test's sender (--path direct) or the relay's tenant leg (--path relay, starttls: required)")}
	fs.StringVar(&v.ehlo, "ehlo", "", "with --vendor: the EHLO `NAME` given to the vendor, e.g. the name its connector expects (default: "+
		relaytest.DefaultHelo+" on --path direct, the relay's host name on --path relay); the EHLO before STARTTLS says localhost")
	fs.StringVar(&v.returnCert, "return-cert", "", "with --vendor: offer STARTTLS on --return-listen with this PEM certificate chain `FILE`, so the vendor can deliver back over TLS; needs --return-key")
	fs.StringVar(&v.returnKey, "return-key", "", "the PEM private key `FILE` of --return-cert")
	return v
}

// apply checks the flags against cfg.VendorAddr, loads the files they name
// and sets cfg's VendorTLS, HELO and ReturnTLS. Its errors are usage
// errors, naming the flags.
func (v *vendorFlags) apply(cfg *conformance.Config) error {
	if cfg.VendorAddr == "" {
		set := v.tls.Set()
		for _, f := range []struct{ name, value string }{{"--ehlo", v.ehlo}, {"--return-cert", v.returnCert}, {"--return-key", v.returnKey}} {
			if f.value != "" {
				set = append(set, f.name)
			}
		}
		if len(set) > 0 {
			return usageError{fmt.Errorf("%s: only used with --vendor", strings.Join(set, ", "))}
		}
		return nil
	}
	var err error
	if cfg.VendorTLS, err = v.tls.Config(cfg.VendorAddr); err != nil {
		return usageError{err}
	}
	if v.ehlo != "" && !validHostname(v.ehlo) && !validAddressLiteral(v.ehlo) {
		return usageError{fmt.Errorf("--ehlo %q: want a host name or an address literal such as [192.0.2.1]", v.ehlo)}
	}
	cfg.HELO = v.ehlo
	if cfg.ReturnTLS, err = tlsflags.ServerConfig("return-cert", v.returnCert, "return-key", v.returnKey); err != nil {
		return usageError{err}
	}
	return nil
}

// validHostname reports whether s is a host name: dot-separated labels of
// letters, digits and hyphens, none empty or longer than 63 bytes, neither
// beginning nor ending with a hyphen.
func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// validAddressLiteral reports whether s is an EHLO address literal:
// [IPv4] or [IPv6:address] (RFC 5321, section 4.1.3).
func validAddressLiteral(s string) bool {
	inner, ok := strings.CutPrefix(s, "[")
	if !ok {
		return false
	}
	if inner, ok = strings.CutSuffix(inner, "]"); !ok {
		return false
	}
	if v6, isV6 := strings.CutPrefix(inner, "IPv6:"); isV6 {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6()
	}
	a, err := netip.ParseAddr(inner)
	return err == nil && a.Is4()
}
