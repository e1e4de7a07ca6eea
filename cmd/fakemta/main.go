// Command fakemta runs the fake mail servers of package relaytest from the
// command line: a tenant that records what it receives, a vendor that
// processes mail and sends it back, and a sender that delivers .eml files or
// generated Exchange messages.
//
// Usage:
//
//	fakemta tenant    [--listen ADDR] [--domain NAME] [--save-dir DIR] [--compare-dir DIR] [--expect N|all] [TLS and AUTH flags]
//	fakemta vendor    --return ADDR [--listen ADDR] [--behaviors LIST] [TLS, AUTH and retry flags]
//	fakemta send      --to ADDR (--dir DIR | --file FILE | --generate [generate flags]) [TLS, AUTH and retry flags]
//	fakemta generate  --out DIR [--seed N] [--kind LIST] [--count N] [--senders LIST] [--recipients LIST] [--test-names]
//	fakemta load      (--to ADDR | --sink) [flags]
//	fakemta behaviors
//
// "fakemta COMMAND -h" prints the flags of a command. The servers run until
// SIGINT or SIGTERM, or, for a tenant given --expect, until the expected
// mail has arrived.
//
// The exit status is 0 when everything worked, 2 for a bad command line and
// 1 otherwise: a server that could not start, a message not delivered, a
// tenant's --expect not met or a compared delivery not intact, and a vendor
// stopped while messages it had accepted were still queued (it prints a
// "dropped" line for each first).
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

	"github.com/recallrelay/recallrelay/relaytest"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // something did not work (a server, a delivery, an expectation)
	exitUsage   = 2 // bad command line
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{stdout: os.Stdout, stderr: os.Stderr}
	os.Exit(a.run(ctx, os.Args[1:]))
}

// app holds the command's outputs; ready, when set, is told the address a
// server listens on (tests use it). registry, when set, is the behaviour
// registry of "vendor --behaviors" and "behaviors" instead of the built-in
// one (a program wrapping fakemta, or a test, adds its own behaviours).
type app struct {
	stdout, stderr io.Writer
	ready          func(role, addr string)
	registry       *relaytest.Registry
}

// behaviorRegistry returns a.registry, or relaytest's built-in behaviours.
func (a *app) behaviorRegistry() *relaytest.Registry {
	if a.registry != nil {
		return a.registry
	}
	return relaytest.NewRegistry()
}

const usage = `Usage: fakemta COMMAND [flags]

Commands:
  tenant     receive mail, print, save and compare every delivery
  vendor     receive mail, apply behaviours and send it back
  send       send .eml files or generated Exchange messages
  generate   write generated Exchange messages as .eml files
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
	case "generate":
		err = a.generate(args[1:])
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

// flagSet is the flag set of one command with what its usage text says
// besides the flags.
type flagSet struct {
	*flag.FlagSet
	synopsis string // the arguments after "fakemta NAME"
	summary  string // what the command does, one or more lines
}

// newFlags returns a flag set that reports nothing itself: parse and
// usageError print the errors and the usage.
func (a *app) newFlags(name, synopsis, summary string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, synopsis: synopsis, summary: summary}
}

// printUsage writes the usage line, the summary and every flag to w.
func (fs *flagSet) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: fakemta %s", fs.Name())
	if fs.synopsis != "" {
		fmt.Fprintf(w, " %s", fs.synopsis)
	}
	fmt.Fprintf(w, "\n\n%s\n", strings.TrimSpace(fs.summary))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		fmt.Fprint(w, "\nThis command has no flags.\n")
		return
	}
	fmt.Fprint(w, "\nFlags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses args and rejects positional arguments. -h prints the usage
// on standard output and returns flag.ErrHelp; errors print it on standard
// error and return errUsage.
func (a *app) parse(fs *flagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.printUsage(a.stdout)
			return err
		}
		return a.usageError(fs, "%v", err)
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// usageError reports a command-line error and the usage on standard error
// and returns errUsage.
func (a *app) usageError(fs *flagSet, format string, args ...any) error {
	fmt.Fprintf(a.stderr, "fakemta %s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.printUsage(a.stderr)
	return errUsage
}

func (a *app) logger() *log.Logger { return log.New(a.stderr, "", log.LstdFlags) }

// announce prints the address a server listens on and tells a.ready.
func (a *app) announce(role, addr string) {
	fmt.Fprintf(a.stdout, "%s listening on %s\n", role, addr)
	if a.ready != nil {
		a.ready(role, addr)
	}
}

func (a *app) behaviors(args []string) error {
	fs := a.newFlags("behaviors", "", `List the behaviours "fakemta vendor --behaviors" accepts, with their
parameters and defaults.`)
	if err := a.parse(fs, args); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, b := range a.behaviorRegistry().Behaviors() {
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
	if id := headerField(data, "Message-Id"); id != "" {
		return id
	}
	return "-"
}

// identityFields returns the values of the Message-ID and test-name
// (testNameHeader) fields of the message's top-level header as headerField
// does, reading the header once.
func identityFields(data []byte) (messageID, testName string) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
	if err != nil && h.Len() == 0 {
		return "", ""
	}
	return strings.TrimSpace(h.Get("Message-Id")), strings.TrimSpace(h.Get(testNameHeader))
}

// headerField returns the value of the first field name of the message's
// top-level header, trimmed; "" when there is none.
func headerField(data []byte, name string) string {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
	if err != nil && h.Len() == 0 {
		return ""
	}
	return strings.TrimSpace(h.Get(name))
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
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
