package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/rules"
)

const rulesUsage = `Usage:
  recallrelay rules check   (--config FILE | --vendors LIST) [--rules FILE]
  recallrelay rules explain (--config FILE | --vendors LIST) [--rules FILE]
                            [--from ADDR] [--to ADDR,...] MESSAGE.eml

check validates a rules file: every problem with its file, rule, field and
line. explain shows what every rule makes of a message, why each matched or
not, and where the message would go; nothing is sent.

--config takes the vendors, the loop marker and rules_file from a relay
configuration; --rules checks another rules file against it (the file to be
put in place before SIGHUP). Without --config, --vendors names the vendors
that routes may use and --rules is required. explain takes the envelope from
the message's From, To and Cc unless --from and --to are given.
`

// cmdRules runs `recallrelay rules check|explain`.
func cmdRules(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("%s\n\n%s", "want rules check or rules explain", rulesUsage)}
	}
	sub, args := args[0], args[1:]
	fs := newFlags("rules " + sub)
	cfgPath := fs.String("config", "", "relay configuration")
	rulesPath := fs.String("rules", "", "rules file (default: the configuration's rules_file)")
	vendors := fs.String("vendors", "", "vendor names, without --config")
	from := fs.String("from", "", "envelope sender (explain)")
	to := fs.String("to", "", "envelope recipients, comma-separated (explain)")
	switch sub {
	case "check":
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		e, err := rulesEngine(*cfgPath, *rulesPath, *vendors)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: valid\n%s\n", e.Source(), e.Summary())
		return nil
	case "explain":
		if err := parseFlagsArgs(fs, args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usageError{errors.New("explain takes one MESSAGE.eml")}
		}
		e, err := rulesEngine(*cfgPath, *rulesPath, *vendors)
		if err != nil {
			return err
		}
		x, err := explainFile(e, fs.Arg(0), *from, splitList(*to))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rules: %s\n\n%s", e.Summary(), x)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, rulesUsage)
		return nil
	}
	return usageError{fmt.Errorf("unknown rules command %q\n\n%s", sub, rulesUsage)}
}

// rulesEngine compiles the rules a relay with configuration cfgPath would
// run, or rulesPath in its place; without a configuration, rulesPath
// against the vendors listed.
func rulesEngine(cfgPath, rulesPath, vendors string) (*rules.Engine, error) {
	if cfgPath != "" {
		if vendors != "" {
			return nil, usageError{errors.New("--vendors is for use without --config: the configuration names the vendors")}
		}
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, err
		}
		if rulesPath != "" {
			cfg.RulesFile = rulesPath
		}
		cfg.ApplyEnv(os.LookupEnv)
		e, err := checkConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("config %s:\n%w", cfgPath, err)
		}
		return e, nil
	}
	if rulesPath == "" || vendors == "" {
		return nil, usageError{errors.New("give --config FILE, or --rules FILE with --vendors LIST")}
	}
	set, err := rules.Load(rulesPath)
	if err != nil {
		return nil, err
	}
	return set.Compile(rules.CompileOptions{Vendors: splitList(vendors), LoopMarker: relay.DefaultLoopMarkerName})
}

// explainFile explains the decision on the message in path, as the tenant
// leg would make it: header block, body scan, exact size.
func explainFile(e *rules.Engine, path, from string, to []string) (string, error) {
	msg, err := relaytest.LoadFile(path)
	if err != nil {
		return "", err
	}
	if from == "" {
		from = msg.From
	}
	if len(to) == 0 {
		to = msg.To
	}
	h, body, err := headers.ReadHeader(bytes.NewReader(msg.Data), 1<<20)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	m := &rules.Message{From: from, Rcpts: to, Size: int64(len(msg.Data)), Header: h}
	// The relay scans only bodies the decision may depend on; explain
	// scans every one, so each rule's trace sees the parts.
	var note string
	info, err := rules.ScanBody(h, body, rules.ScanLimits{})
	m.Body = info
	if err != nil {
		note = fmt.Sprintf("note: %v\n", err)
	}
	x := e.Explain(m)
	var b strings.Builder
	fmt.Fprintf(&b, "envelope: MAIL FROM:<%s> RCPT TO:<%s>\n", from, strings.Join(to, ">, <"))
	b.WriteString(note)
	b.WriteString(x.String())
	return b.String(), nil
}
