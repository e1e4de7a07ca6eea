package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/internal/tlsflags"
	"github.com/recallrelay/recallrelay/relaytest"
)

func (a *app) vendor(ctx context.Context, args []string) error {
	fs := a.newFlags("vendor", "--return ADDR [--listen ADDR] [--behaviors LIST] [TLS, AUTH and retry flags]",
		`Receive mail like a signature or scanning service, apply the behaviours (see "fakemta
behaviors") and send the result back to --return from an in-memory queue. It prints one
line per message received, per message refused (tempfail-first and other receive
filters) and per send-back transaction, with every failed attempt of the latter
(drop-mid-data, a refusing relay). With --auth clients must log in; with
--return-auth-user it logs in when sending back.

It runs until SIGINT or SIGTERM and then stops at once. Messages still queued (a
delay, a retry) are not sent back: it prints a "dropped" line for each and exits
with status 1; with an empty queue it exits with status 0.`)
	listen := fs.String("listen", relaytest.DefaultListen, "`ADDR` (host:port) to listen on")
	ret := fs.String("return", "", "`ADDR` (host:port) to send processed mail back to (required)")
	list := fs.String("behaviors", "passthrough", "comma-separated behaviour `LIST` (see \"fakemta behaviors\")")
	name := fs.String("name", "vendor", "vendor `NAME` for logs")
	helo := fs.String("helo", "", "host `NAME` of the greeting and of EHLO when sending back (default NAME.vendor.relaytest.invalid)")
	attempts := fs.Int("attempts", relaytest.DefaultMaxAttempts, "send-back attempts per message")
	backoff := fs.Duration("backoff", relaytest.DefaultBackoff, "wait before the second send-back attempt, doubling up to "+relaytest.MaxBackoff.String())
	timeout := fs.Duration("timeout", relaytest.DefaultTimeout, "timeout of every network operation when sending back")
	srvTLS := registerServerTLS(fs)
	retTLS := tlsflags.Register(fs.FlagSet, "return-", "return", "issue STARTTLS when sending back and fail the attempt without it, as vendors deliver to Exchange Online")
	srvAuth := registerServerAuth(fs)
	retAuth := registerClientAuth(fs, "return-", "--return")
	if err := a.parse(fs, args); err != nil {
		return err
	}
	if *ret == "" {
		return a.usageError(fs, "--return is required")
	}
	if *attempts < 1 || *backoff <= 0 || *timeout <= 0 {
		return a.usageError(fs, "--attempts, --backoff and --timeout must be positive")
	}
	bs, err := a.behaviorRegistry().Parse(*list)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	tlsConfig, err := srvTLS.config(nonEmpty(*helo, *name+".vendor.relaytest.invalid"))
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	returnTLS, err := retTLS.Config(*ret)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	authFunc, requireAuth, err := srvAuth.config()
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	returnAuth, err := retAuth.credentials()
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	p := &vendorPrinter{out: a.stdout}
	v, err := relaytest.NewVendor(relaytest.VendorConfig{
		Name: *name, Listen: *listen, ReturnAddr: *ret, Helo: *helo,
		Behaviors:   bs,
		MaxAttempts: *attempts, Backoff: *backoff, Timeout: *timeout,
		TLSConfig: tlsConfig, ReturnTLSConfig: returnTLS,
		Auth: authFunc, RequireAuth: requireAuth, ReturnAuth: returnAuth,
		ErrorLog:  a.logger(),
		OnReceive: p.received,
		OnReturn:  p.returned,
		OnRefuse:  p.refused,
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
	return p.closed(v.Close())
}

// closed reports the error of Vendor.Close: a *relaytest.DroppedError
// becomes one "dropped" line per message on standard output and an error
// that counts them; any other error is returned as it is.
func (p *vendorPrinter) closed(err error) error {
	var dropped *relaytest.DroppedError
	if !errors.As(err, &dropped) {
		return err
	}
	var rest []error // Close joins a failure to stop the server with the drops
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !errors.As(e, new(*relaytest.DroppedError)) {
				rest = append(rest, e)
			}
		}
	}
	p.mu.Lock()
	for _, d := range dropped.Messages {
		fmt.Fprintf(p.out, "dropped from=<%s> rcpts=%s size=%d message-id=%s%s\n",
			d.MailFrom, strings.Join(d.Rcpts, ","), len(d.Data), messageID(d.Data), testNameSuffix(d.Data))
	}
	p.mu.Unlock()
	n := len(dropped.Messages)
	what := "messages"
	if n == 1 {
		what = "message"
	}
	return errors.Join(append(rest, fmt.Errorf("interrupted with %d accepted %s not sent back (the \"dropped\" lines)", n, what))...)
}

// testNameSuffix returns " test-name=NAME" for a message with a test-name
// field, "" otherwise.
func testNameSuffix(data []byte) string {
	if name := headerField(data, testNameHeader); name != "" {
		return " test-name=" + name
	}
	return ""
}

// vendorPrinter prints what a vendor does, one line (and indented detail
// lines) at a time.
type vendorPrinter struct {
	mu  sync.Mutex
	out io.Writer
}

func (p *vendorPrinter) received(d relaytest.Delivery) {
	p.mu.Lock()
	defer p.mu.Unlock()
	user := ""
	if d.AuthUser != "" {
		user = " user=" + d.AuthUser
	}
	fmt.Fprintf(p.out, "received from=<%s> rcpts=%s size=%d message-id=%s%s\n",
		d.MailFrom, strings.Join(d.Rcpts, ","), len(d.Data), messageID(d.Data), user)
}

func (p *vendorPrinter) refused(d relaytest.Delivery, behavior string, err *smtp.SMTPError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "refused from=<%s> rcpts=%s size=%d message-id=%s by=%s reply=%q\n",
		d.MailFrom, strings.Join(d.Rcpts, ","), len(d.Data), messageID(d.Data), behavior, smtpReply(err))
}

func (p *vendorPrinter) returned(o relaytest.ReturnOutcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	status := "returned"
	if !o.Result.Accepted {
		status = "return-failed"
	}
	fmt.Fprintf(p.out, "%s from=<%s> rcpts=%s size=%d message-id=%s attempts=%d reply=%q\n",
		status, o.Delivery.MailFrom, strings.Join(o.Delivery.Rcpts, ","), len(o.Delivery.Data),
		messageID(o.Delivery.Data), o.Result.Attempts, lastReply(o.Result))
	failed := o.Result.Replies
	if o.Result.Accepted && len(failed) > 0 {
		failed = failed[:len(failed)-1] // the last one is the reply above
	}
	for i, r := range failed {
		fmt.Fprintf(p.out, "  attempt %d failed: %s\n", i+1, r)
	}
	for _, err := range o.TransformErrors {
		fmt.Fprintf(p.out, "  transform skipped: %v\n", err)
	}
}

// smtpReply formats err as the reply line a client sees.
func smtpReply(err *smtp.SMTPError) string {
	if err.EnhancedCode == (smtp.EnhancedCode{}) || err.EnhancedCode == smtp.NoEnhancedCode {
		return fmt.Sprintf("%d %s", err.Code, err.Message)
	}
	c := err.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", err.Code, c[0], c[1], c[2], err.Message)
}
