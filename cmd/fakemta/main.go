// Command fakemta runs the fake mail servers of package relaytest from the
// command line: a tenant that records what it receives, a vendor that
// processes mail and sends it back, and a sender that delivers .eml files or
// generated Exchange messages.
//
// Usage:
//
//	fakemta tenant    --listen ADDR
//	fakemta vendor    --listen ADDR --return ADDR --behaviors LIST
//	fakemta send      --to ADDR (--dir DIR | --file FILE | --generate) [flags]
//	fakemta behaviors
//
// The servers run until SIGINT or SIGTERM.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/emersion/go-message/textproto"

	"github.com/recallrelay/recallrelay/internal/tlsflags"
	"github.com/recallrelay/recallrelay/relaytest"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // something did not work (a server, a delivery)
	exitUsage   = 2 // bad command line
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{stdout: os.Stdout, stderr: os.Stderr}
	os.Exit(a.run(ctx, os.Args[1:]))
}

// app holds the command's outputs; ready, when set, is told the address a
// server listens on (tests use it).
type app struct {
	stdout, stderr io.Writer
	ready          func(role, addr string)
}

const usage = `Usage: fakemta COMMAND [flags]

Commands:
  tenant     receive mail and print every delivery
  vendor     receive mail, apply behaviours and send it back
  send       send .eml files or generated Exchange messages
  load       put SMTP load on a server or the built-in sink and measure it
  behaviors  list the vendor behaviours

Run "fakemta COMMAND -h" for the flags of a command.
`

// errUsage marks command-line errors, already reported.
var errUsage = errors.New("usage")

func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "tenant":
		err = a.tenant(ctx, args[1:])
	case "vendor":
		err = a.vendor(ctx, args[1:])
	case "send":
		err = a.send(ctx, args[1:])
	case "load":
		err = a.load(ctx, args[1:])
	case "behaviors", "behaviours":
		err = a.behaviors(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(a.stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(a.stderr, "fakemta: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	default:
		fmt.Fprintf(a.stderr, "fakemta %s: %v\n", args[0], err)
		return exitFailure
	}
}

// newFlags returns a flag set that reports errors instead of exiting.
func (a *app) newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: fakemta %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and rejects positional arguments.
func (a *app) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(a.stderr, "fakemta %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

func (a *app) usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(a.stderr, "fakemta %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return errUsage
}

func (a *app) logger() *log.Logger { return log.New(a.stderr, "", log.LstdFlags) }

func (a *app) tenant(ctx context.Context, args []string) error {
	fs := a.newFlags("tenant", "[--listen ADDR]")
	listen := fs.String("listen", relaytest.DefaultListen, "address to listen on")
	domain := fs.String("domain", "", "host name in the greeting")
	if err := a.parse(fs, args); err != nil {
		return err
	}
	t, err := relaytest.NewTenant(relaytest.TenantConfig{
		Listen: *listen, Domain: *domain, ErrorLog: a.logger(),
		OnDelivery: func(d relaytest.Delivery) {
			fmt.Fprintf(a.stdout, "delivery from=<%s> rcpts=%s size=%d message-id=%s\n",
				d.MailFrom, strings.Join(d.Rcpts, ","), len(d.Data), messageID(d.Data))
		},
	})
	if err != nil {
		return err
	}
	if err := t.Start(); err != nil {
		return err
	}
	a.announce("tenant", t.Addr())
	<-ctx.Done()
	return t.Close()
}

func (a *app) announce(role, addr string) {
	fmt.Fprintf(a.stdout, "%s listening on %s\n", role, addr)
	if a.ready != nil {
		a.ready(role, addr)
	}
}

func (a *app) vendor(ctx context.Context, args []string) error {
	fs := a.newFlags("vendor", "--return ADDR [--listen ADDR] [--behaviors LIST]")
	listen := fs.String("listen", relaytest.DefaultListen, "address to listen on")
	ret := fs.String("return", "", "address to send processed mail back to (required)")
	list := fs.String("behaviors", "passthrough", `comma-separated behaviours (see "fakemta behaviors")`)
	name := fs.String("name", "vendor", "vendor name for logs")
	attempts := fs.Int("attempts", relaytest.DefaultMaxAttempts, "send-back attempts per message")
	if err := a.parse(fs, args); err != nil {
		return err
	}
	if *ret == "" {
		return a.usageError(fs, "--return is required")
	}
	bs, err := relaytest.ParseBehaviors(*list)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	v, err := relaytest.NewVendor(relaytest.VendorConfig{
		Name: *name, Listen: *listen, ReturnAddr: *ret, Behaviors: bs, MaxAttempts: *attempts,
		ErrorLog: a.logger(),
		OnReceive: func(d relaytest.Delivery) {
			fmt.Fprintf(a.stdout, "received from=<%s> rcpts=%s size=%d message-id=%s\n",
				d.MailFrom, strings.Join(d.Rcpts, ","), len(d.Data), messageID(d.Data))
		},
		OnReturn: func(o relaytest.ReturnOutcome) {
			status := "returned"
			if !o.Result.Accepted {
				status = "return-failed"
			}
			fmt.Fprintf(a.stdout, "%s from=<%s> rcpts=%s size=%d message-id=%s attempts=%d reply=%q\n",
				status, o.Delivery.MailFrom, strings.Join(o.Delivery.Rcpts, ","), len(o.Delivery.Data),
				messageID(o.Delivery.Data), o.Result.Attempts, lastReply(o.Result))
			for _, err := range o.TransformErrors {
				fmt.Fprintf(a.stdout, "  transform skipped: %v\n", err)
			}
		},
	})
	if err != nil {
		return err
	}
	if err := v.Start(); err != nil {
		return err
	}
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Name()
	}
	a.announce("vendor", v.Addr())
	fmt.Fprintf(a.stdout, "vendor returns to %s with behaviours [%s]\n", *ret, strings.Join(names, ", "))
	<-ctx.Done()
	return v.Close()
}

func (a *app) send(ctx context.Context, args []string) error {
	fs := a.newFlags("send", "--to ADDR (--dir DIR | --file FILE | --generate) [flags]")
	to := fs.String("to", "", "server address to send to (required)")
	dir := fs.String("dir", "", "send every .eml file of this directory")
	file := fs.String("file", "", "send this .eml file")
	generate := fs.Bool("generate", false, "send generated Exchange messages")
	seed := fs.Int64("seed", 1, "seed for --generate")
	org := fs.String("org-domain", "", "tenant domain for --generate (default contoso.com)")
	big := fs.Int("big-bytes", 0, "with --generate, add a message with an attachment of this many bytes")
	fromOverride := fs.String("from-override", "", "MAIL FROM for every message instead of the header's")
	rcptOverride := fs.String("rcpt-override", "", "comma-separated RCPT TO list for every message instead of the header's")
	helo := fs.String("helo", relaytest.DefaultHelo, "EHLO name")
	attempts := fs.Int("attempts", relaytest.DefaultMaxAttempts, "attempts per message")
	timeout := fs.Duration("timeout", relaytest.DefaultTimeout, "timeout of every network operation")
	clientTLS := tlsflags.Register(fs, "", "to", "issue STARTTLS and fail the attempt without it, as Exchange Online does towards a connector that requires TLS")
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
	sources := 0
	for _, set := range []bool{*dir != "", *file != "", *generate} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return a.usageError(fs, "exactly one of --dir, --file and --generate is required")
	}
	if *attempts < 1 || *timeout <= 0 || *big < 0 {
		return a.usageError(fs, "--attempts, --timeout and --big-bytes must be positive")
	}

	var msgs []relaytest.Message
	switch {
	case *dir != "":
		var err error
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
		msgs = relaytest.Generate(relaytest.GenerateOptions{Seed: *seed, OrgDomain: *org, BigAttachmentBytes: *big})
	}
	var rcpts []string
	for _, r := range strings.Split(*rcptOverride, ",") {
		if r = strings.TrimSpace(r); r != "" {
			rcpts = append(rcpts, r)
		}
	}

	s := relaytest.Sender{Addr: *to, Helo: *helo, MaxAttempts: *attempts, Timeout: *timeout, TLSConfig: tlsConfig}
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

func (a *app) behaviors(args []string) error {
	fs := a.newFlags("behaviors", "")
	if err := a.parse(fs, args); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, b := range relaytest.Behaviors() {
		name := b.Name
		if b.Param != "" {
			name += "[" + b.Param + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\n", name, b.Description)
	}
	return tw.Flush()
}

// lastReply returns the final reply of a result, or its error.
func lastReply(r relaytest.Result) string {
	if n := len(r.Replies); n > 0 && r.Err == nil {
		return r.Replies[n-1]
	}
	if r.Err != nil {
		return r.Err.Error()
	}
	return ""
}

// messageID returns the Message-ID of a message, "-" when it has none.
func messageID(data []byte) string {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
	if err != nil && h.Len() == 0 {
		return "-"
	}
	if id := h.Get("Message-Id"); id != "" {
		return id
	}
	return "-"
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allASCII(ss []string) bool {
	for _, s := range ss {
		if !isASCII(s) {
			return false
		}
	}
	return true
}
