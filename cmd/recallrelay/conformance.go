package main

import (
	"context"
	"errors"
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
	"github.com/recallrelay/recallrelay/relay"
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
		Senders:      *senders,
		Settle:       *settle,
		CellTimeout:  *cellTimeout,
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
// startLocalRelay, the relay exactly as demo and serve run it, unless the
// return leg must listen on a fixed address (--vendor --return-listen).
//
// The return leg admits allow (the vendor's sending networks) only, as a
// deployed one would: one reachable by everyone is refused.
func conformanceRelay(logw io.Writer, allow []string) conformance.StartRelayFunc {
	return func(c conformance.RelayConfig) (conformance.RunningRelay, error) {
		var (
			r    *relay.Relay
			stop func()
			err  error
		)
		if c.ReturnListen == "" {
			r, _, stop, err = startLocalRelay(c.VendorAddr, c.TenantAddr, "", nil, logw)
		} else {
			r, _, stop, err = startLocalRelay(c.VendorAddr, c.TenantAddr, c.ReturnListen, allow, logw)
		}
		if err != nil {
			return conformance.RunningRelay{}, err
		}
		return conformance.RunningRelay{TenantAddr: r.TenantAddr(), ReturnAddr: r.ReturnAddr(), Stop: stop}, nil
	}
}
