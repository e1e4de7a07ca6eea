package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/recallrelay/recallrelay/internal/tlsflags"
	"github.com/recallrelay/recallrelay/relaytest"
)

func (a *app) send(ctx context.Context, args []string) error {
	fs := a.newFlags("send", "--to ADDR (--dir DIR | --file FILE | --generate [--kind LIST] [--count N]) [flags]",
		`Send .eml files or generated Exchange Online messages to a server the way Exchange
Online delivers to a smart host, retrying temporary failures, and print one line per
message. --kind, --count, --senders, --recipients and --test-names choose what
--generate makes, as for "fakemta generate". It exits with status 1 when a message was
not delivered.`)
	to := fs.String("to", "", "`ADDR` (host:port) of the server to send to (required)")
	dir := fs.String("dir", "", "send every .eml file of `DIR`")
	file := fs.String("file", "", "send this .eml `FILE`")
	generate := fs.Bool("generate", false, "send generated Exchange messages")
	gen := registerGenerate(fs)
	fromOverride := fs.String("from-override", "", "MAIL FROM for every message instead of the header's")
	rcptOverride := fs.String("rcpt-override", "", "comma-separated RCPT TO list for every message instead of the header's")
	helo := fs.String("helo", relaytest.DefaultHelo, "EHLO name")
	attempts := fs.Int("attempts", relaytest.DefaultMaxAttempts, "attempts per message")
	backoff := fs.Duration("backoff", relaytest.DefaultBackoff, "wait before the second attempt, doubling for every further one up to "+relaytest.MaxBackoff.String())
	timeout := fs.Duration("timeout", relaytest.DefaultTimeout, "timeout of every network operation")
	clientTLS := tlsflags.Register(fs.FlagSet, "", "to", "issue STARTTLS and fail the attempt without it, as Exchange Online does towards a connector that requires TLS")
	cliAuth := registerClientAuth(fs, "", "--to")
	if err := a.parse(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return a.usageError(fs, "--to is required")
	}
	tlsConfig, err := clientTLS.Config(*to)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	auth, err := cliAuth.credentials()
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	sources := 0
	for _, set := range []bool{*dir != "", *file != "", *generate} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return a.usageError(fs, "exactly one of --dir, --file and --generate is required")
	}
	if *attempts < 1 || *timeout <= 0 || *backoff <= 0 {
		return a.usageError(fs, "--attempts, --backoff and --timeout must be positive")
	}
	if !*generate {
		if set := gen.set(fs); len(set) > 0 {
			return a.usageError(fs, "%s only with --generate", strings.Join(set, ", "))
		}
	}

	var msgs []relaytest.Message
	switch {
	case *dir != "":
		if msgs, err = relaytest.LoadDir(*dir); err != nil {
			return err
		}
	case *file != "":
		m, err := relaytest.LoadFile(*file)
		if err != nil {
			return err
		}
		msgs = []relaytest.Message{m}
	default:
		if msgs, err = gen.messages(); err != nil {
			return a.usageError(fs, "%v", err)
		}
	}
	rcpts := splitList(*rcptOverride)

	s := relaytest.Sender{Addr: *to, Helo: *helo, MaxAttempts: *attempts, Backoff: *backoff, Timeout: *timeout, TLSConfig: tlsConfig, Auth: auth}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MESSAGE\tRESULT\tATTEMPTS\tREPLY")
	failed := 0
	for _, m := range msgs {
		if *fromOverride != "" {
			m.From = *fromOverride
		}
		if len(rcpts) > 0 {
			m.To = rcpts
		}
		m.UTF8 = m.UTF8 || !isASCII(m.From) || !allASCII(m.To)
		res := s.Send(ctx, m)
		status := "accepted"
		if !res.Accepted {
			status, failed = "FAILED", failed+1
		}
		reply := lastReply(res)
		if len(res.RejectedRcpts) > 0 {
			reply += fmt.Sprintf(" (refused: %v)", res.RejectedRcpts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", m.Name, status, res.Attempts, reply)
		if ctx.Err() != nil {
			break
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d messages not delivered", failed, len(msgs))
	}
	return nil
}

// generate is "fakemta generate": Generate's messages as .eml files.
func (a *app) generate(args []string) error {
	fs := a.newFlags("generate", "--out DIR [--seed N] [--kind LIST] [--count N] [--senders LIST] [--recipients LIST] [--test-names] [--org-domain DOMAIN] [--big-bytes N]",
		`Write the generated Exchange Online messages "fakemta send --generate" sends to a
directory, one NAME.eml file each: to edit them, to send them with "fakemta send --dir",
or to compare what a tenant receives with them ("fakemta tenant --compare-dir"). It
prints one line per file with the message's kind. By default there is one message of
every kind; --kind and --count choose others, --senders and --recipients replace the
generated addresses, and --test-names stamps every message with its name in an
X-Relaytest-Name field, which a tenant matches even where Message-ID was rewritten.`)
	out := fs.String("out", "", "write the messages to `DIR`, created if needed (required)")
	gen := registerGenerate(fs)
	if err := a.parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return a.usageError(fs, "--out is required")
	}
	msgs, err := gen.messages()
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, m := range msgs {
		name := sanitizeName(m.Name) + ".eml"
		if err := writeFileAtomic(*out, name, m.Data); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s\t%s\n", name, m.Kind)
	}
	return nil
}

// generateFlags are the flags that select generated messages.
type generateFlags struct {
	seed       int64
	org        string
	big        int
	kinds      string
	count      int
	senders    string
	recipients string
	testNames  bool
	names      []string // of the flags registerGenerate defined
}

// registerGenerate defines the flags that select generated messages on fs
// and records their names.
func registerGenerate(fs *flagSet) *generateFlags {
	g := &generateFlags{}
	before := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
	fs.Int64Var(&g.seed, "seed", 1, "seed of the generated messages: the same flags give the same bytes")
	fs.StringVar(&g.org, "org-domain", "", "tenant `DOMAIN` of the generated messages (default contoso.com)")
	fs.IntVar(&g.big, "big-bytes", 0, "attachment size in `BYTES` of kind "+relaytest.KindBigAttachment+"; without --kind, a positive value adds that kind")
	fs.StringVar(&g.kinds, "kind", "", "comma-separated message kinds, in order, repeats allowed (`LIST`: "+strings.Join(relaytest.Kinds(), ", ")+"; default one of each but "+relaytest.KindBigAttachment+")")
	fs.IntVar(&g.count, "count", 0, "generate `N` messages, going through the kinds cyclically (default one per kind)")
	fs.StringVar(&g.senders, "senders", "", "comma-separated sender `LIST` (addresses, or \"Name <address>\") used in turn instead of the generated senders")
	fs.StringVar(&g.recipients, "recipients", "", "comma-separated recipient `LIST` used in turn instead of the generated recipients")
	fs.BoolVar(&g.testNames, "test-names", false, "add an X-Relaytest-Name field with the message's name (gen-NN-KIND) to every message")
	fs.VisitAll(func(f *flag.Flag) {
		if !before[f.Name] {
			g.names = append(g.names, f.Name)
		}
	})
	return g
}

// set lists the flags of registerGenerate that are set on fs, as "--name".
func (g *generateFlags) set(fs *flagSet) []string {
	var out []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(g.names, f.Name) {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

// messages returns the generated messages the flags select. An unknown
// kind is an error that lists the known ones.
func (g *generateFlags) messages() ([]relaytest.Message, error) {
	if g.big < 0 || g.count < 0 {
		return nil, fmt.Errorf("--big-bytes and --count must not be negative")
	}
	opts := relaytest.GenerateOptions{
		Seed: g.seed, OrgDomain: g.org, BigAttachmentBytes: g.big,
		Kinds: splitList(g.kinds), Count: g.count,
		Senders: splitList(g.senders), Recipients: splitList(g.recipients),
		TestNames: g.testNames,
	}
	for _, k := range opts.Kinds {
		if !slices.Contains(relaytest.Kinds(), k) {
			return nil, fmt.Errorf("unknown message kind %q; the kinds are %s", k, strings.Join(relaytest.Kinds(), ", "))
		}
	}
	return relaytest.GenerateMessages(opts)
}
