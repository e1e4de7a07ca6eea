package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/exo"
)

const exoSetupUsage = `Usage:
  recallrelay exo-setup --config FILE [--topology direct|via-tenant]
                        [--remove] [--checklist] [--out DIR]
                        [--cert-name NAME] [--return-host NAME]
                        [--vendor-markers LIST] [--prefix NAME]

exo-setup writes the PowerShell an Exchange administrator runs in Exchange
Online PowerShell (Connect-ExchangeOnline) to route the organization's mail
through this relay: the inbound connector for the relay's return, the
rule-scoped outbound connector(s) to it, and the transport rules, with the
exceptions that keep the relay's own returns and recall traffic off it.
docs/exchange-online.md explains every setting.

By default it prints the setup script. --remove prints the script that
removes the same objects, in reverse order; --checklist the verification
checklist (message trace, headers, a recall test); both may be given.
--out DIR writes each into DIR instead (exo-setup-TOPOLOGY.ps1,
exo-remove-TOPOLOGY.ps1, exo-checklist-TOPOLOGY.txt).

Topologies: direct (the vendor delivers back to the relay's return
listener) and via-tenant (the vendor delivers back to Exchange Online, and a
second rule sends its mail to the return listener; needs --return-host).

The configuration is parsed, not fully validated (its secrets are not
needed here): run recallrelay check for that. A configuration lacking what
the setup needs (a public hostname, the listeners' certificates, the client
certificate Exchange identifies the relay by) is an error naming the field.
`

// cmdExoSetup runs `recallrelay exo-setup`.
func cmdExoSetup(args []string, stdout io.Writer) error {
	fs := newFlags("exo-setup")
	cfgPath := fs.String("config", "", "relay configuration")
	topology := fs.String("topology", "direct", "direct or via-tenant")
	remove := fs.Bool("remove", false, "the removal script")
	checklist := fs.Bool("checklist", false, "the verification checklist")
	out := fs.String("out", "", "write into this directory instead of standard output")
	certName := fs.String("cert-name", "", "the inbound connector's TlsSenderCertificateName (default: the name on tenant.client_cert_file, or hostname when it has several)")
	returnHost := fs.String("return-host", "", "via-tenant: the return listener's public DNS name, reachable on port 25")
	markers := fs.String("vendor-markers", "", "vendors' processed-marker fields, comma-separated (default: the rules file's defaults.vendor_markers, or the built-in list)")
	prefix := fs.String("prefix", "", "start of every connector and rule name (default RecallRelay)")
	if err := parseFlags(fs, args); err != nil {
		var he helpError
		if errors.As(err, &he) {
			return helpError{exoSetupUsage + "\n" + he.usage}
		}
		return err
	}
	if *cfgPath == "" {
		return usageError{errors.New("--config FILE is required")}
	}
	top, err := exo.ParseTopology(*topology)
	if err != nil {
		return usageError{fmt.Errorf("--topology: %w", err)}
	}
	opts := exo.Options{Topology: top, CertName: *certName, ReturnHost: *returnHost, Prefix: *prefix}
	flagSet := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { flagSet[f.Name] = true })
	if flagSet["vendor-markers"] {
		opts.VendorMarkers = []string{}
		for _, m := range strings.Split(*markers, ",") {
			if m = strings.TrimSpace(m); m != "" {
				opts.VendorMarkers = append(opts.VendorMarkers, m)
			}
		}
	}

	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	cfg.ApplyEnv(os.LookupEnv)
	setup, err := exo.Plan(cfg, opts)
	if err != nil {
		return fmt.Errorf("config %s: the Exchange Online setup needs:\n%w", *cfgPath, err)
	}

	type product struct {
		file string
		gen  func() (string, error)
	}
	var products []product
	if !*remove && !*checklist {
		products = append(products, product{"exo-setup-" + string(top) + ".ps1", setup.SetupScript})
	}
	if *remove {
		products = append(products, product{"exo-remove-" + string(top) + ".ps1", setup.RemovalScript})
	}
	if *checklist {
		products = append(products, product{"exo-checklist-" + string(top) + ".txt", func() (string, error) { return setup.Checklist(), nil }})
	}
	for _, p := range products {
		text, err := p.gen()
		if err != nil {
			return err
		}
		if *out == "" {
			if _, err := io.WriteString(stdout, text); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		path := filepath.Join(*out, p.file)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
	}
	for _, w := range setup.Warnings {
		if *out != "" {
			fmt.Fprintf(stdout, "WARNING: %s\n", w)
		}
	}
	return nil
}
