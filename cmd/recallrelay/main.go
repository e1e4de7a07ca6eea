// Command recallrelay runs the relay that keeps Microsoft 365 mail internal
// and recallable across a round trip through a third-party mail service.
//
//	recallrelay serve --config FILE    run the relay
//	recallrelay check --config FILE    validate a configuration and explain it
//	recallrelay demo                   run a complete round trip in-process
//	recallrelay conformance            the recall-survival report
//	recallrelay rules check|explain    validate rules, explain a decision
//	recallrelay trace --config FILE ID what the store holds about a message
//	recallrelay version                the build's version and revision
//	recallrelay healthcheck            ask the admin listener (containers)
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/admin"
	"github.com/recallrelay/recallrelay/config"
	"github.com/recallrelay/recallrelay/metrics"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/status"
	"github.com/recallrelay/recallrelay/store"
)

const usage = `recallrelay keeps Microsoft 365 mail internal and recallable across a
round trip through a signature or scanning service.

Usage:
  recallrelay serve --config FILE [--grace 30s]
  recallrelay check --config FILE
  recallrelay demo [--messages DIR] [--behaviors LIST] [--verbose]
  recallrelay conformance [--messages DIR] [--json FILE] [--html FILE]
                          [--vendor HOST:PORT --return-listen ADDR --path direct|relay]
  recallrelay rules check (--config FILE | --vendors LIST) [--rules FILE]
  recallrelay rules explain (--config FILE | --vendors LIST) [--rules FILE]
                          [--from ADDR] [--to LIST] MESSAGE.eml
  recallrelay trace --config FILE [--as auto|ref|message-id|address]
                          [--limit N] [--json] MESSAGE-ID|REFERENCE|ADDRESS
  recallrelay version | --version
  recallrelay healthcheck [--url URL] [--timeout 5s] [--token-file FILE]
  recallrelay exo-setup --config FILE [--topology direct|via-tenant]
                          [--remove] [--checklist] [--out DIR]

Commands:
  serve   run the tenant and return listeners
  check   validate a configuration file and print what it configures
  demo    start the relay, a fake tenant and a fake vendor in this process,
          send realistic Exchange messages round the loop and show what the
          vendor broke and what the relay restored (no Redis, no config)
  conformance
          the recall-survival report: every vendor behaviour, directly and
          through the relay, over the same messages (see --help)
  rules   check a mail-flow rules file; explain which rules match a message
          and where it would go (rules help)
  trace   show the records the store holds for a Message-ID, a reference
          (or X-RecallRelay-Ref value), or an address (MAIL FROM or
          recipient, found by a scan that stops after --limit matches):
          connection, envelope, vendor chain, captured fields, expiry and
          each recipient's delivery state; exits 1 when none matches
  version print the version, VCS revision and Go version of this binary
  healthcheck
          GET an admin endpoint (default http://127.0.0.1:9025/healthz) and
          exit 0 on 200, 1 otherwise with the reason: a health check for
          images without curl (Docker HEALTHCHECK, Kubernetes exec probes)
  exo-setup
          print the Exchange Online PowerShell (connectors, transport rules)
          that puts this relay into the tenant's mail flow, its removal
          script, or a verification checklist (docs/exchange-online.md)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], stderr)
	case "check":
		err = cmdCheck(args[1:], stdout)
	case "demo":
		err = cmdDemo(args[1:], stdout, stderr)
	case "conformance":
		err = cmdConformance(args[1:], stdout, stderr)
	case "rules":
		err = cmdRules(args[1:], stdout)
	case "trace":
		err = cmdTrace(args[1:], stdout)
	case "version", "--version":
		err = cmdVersion(args[1:], stdout)
	case "healthcheck":
		err = cmdHealthcheck(args[1:], stdout)
	case "exo-setup":
		err = cmdExoSetup(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "recallrelay: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	var he helpError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &he):
		fmt.Fprint(stdout, he.usage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "recallrelay %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "recallrelay %s: %v\n", args[0], err)
		return 1
	}
}

// relayReloadError is a reload the relay refused (it told its observers).
type relayReloadError struct{ error }

func (e relayReloadError) Unwrap() error { return e.error }

// usageError is a bad command line: exit 2.
type usageError struct{ error }

// helpError is --help (or -h): the command's flags go to standard output,
// exit 0.
type helpError struct{ usage string }

func (h helpError) Error() string { return "help requested" }

// redisLogger adapts zerolog to go-redis's logger interface.
type redisLogger struct{ l zerolog.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn().Msgf(format, v...)
}

// parseFlagsArgs parses the flags of a command that also takes
// arguments: --help is a helpError, a bad flag a usageError that lists
// the flags.
func parseFlagsArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpError{flagUsage(fs)}
		}
		return usageError{fmt.Errorf("%w\n\n%s", err, flagUsage(fs))}
	}
	return nil
}

// flagUsage lists fs's flags with their defaults.
func flagUsage(fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage of recallrelay %s:\n", fs.Name())
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	return b.String()
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlagsArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func cmdCheck(args []string, stdout io.Writer) (err error) {
	fs := newFlags("check")
	path := fs.String("config", "", "configuration file")
	connect := fs.Bool("connect", false, "also ping the store and open an SMTP session (STARTTLS as configured) to every vendor and to the tenant")
	production := fs.Bool("production", false, "also list what a production relay needs and this configuration lacks (TLS, certificates, placeholders, secret file modes)")
	strict := fs.Bool("strict", false, "with --production, fail (exit 1) when anything is listed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{errors.New("--config FILE is required")}
	}
	cfg, engine, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if *connect {
		defer func() {
			if cerr := checkConnect(cfg, stdout); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}
	verdict := "valid"
	switch n := len(cfg.Warnings()); n {
	case 0:
	case 1:
		verdict += ", with 1 warning"
	default:
		verdict += fmt.Sprintf(", with %d warnings", n)
	}
	// Explain ends with the warnings, one "WARNING: " line each.
	fmt.Fprintf(stdout, "%s: %s\n\n%s", *path, verdict, cfg.Explain(engine))
	if *production {
		findings := cfg.Production(time.Now())
		fmt.Fprintf(stdout, "\nproduction: %d findings\n", len(findings))
		for _, f := range findings {
			fmt.Fprintf(stdout, "PRODUCTION: %s\n", f.Error())
		}
		if *strict && len(findings) > 0 {
			return fmt.Errorf("%d production findings (--strict)", len(findings))
		}
	} else if *strict {
		return usageError{errors.New("--strict goes with --production")}
	}
	return nil
}

// checkConnect pings the store and probes every next hop, one line each;
// it fails when any did.
func checkConnect(cfg *config.Config, stdout io.Writer) error {
	fmt.Fprintln(stdout, "\nconnect:")
	failed := 0
	report := func(what string, err error, ok string) {
		if err != nil {
			failed++
			msg := err.Error()
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				e := se.EnhancedCode
				msg = fmt.Sprintf("%d %d.%d.%d %s", se.Code, e[0], e[1], e[2], se.Message)
			}
			fmt.Fprintf(stdout, "  %-24s FAILED: %s\n", what, msg)
			return
		}
		fmt.Fprintf(stdout, "  %-24s ok%s\n", what, ok)
	}
	st, err := openStore(cfg.Store)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = st.Ping(ctx)
		cancel()
		st.Close()
	}
	report("store", err, "")
	rc, err := relayConfig(cfg, nil, nil, &certSet{}, zerolog.Nop())
	if err != nil {
		return err
	}
	for _, h := range append(rc.Vendors, rc.Target) {
		usedTLS, err := relay.Probe(h, cfg.Hostname)
		how := ", plaintext"
		if usedTLS {
			how = ", STARTTLS"
		}
		report(h.Name+" "+h.Address, err, how)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d connections failed", failed, len(rc.Vendors)+2)
	}
	return nil
}

func cmdServe(args []string, stderr io.Writer) error {
	fs := newFlags("serve")
	path := fs.String("config", "", "configuration file")
	grace := fs.Duration("grace", 30*time.Second, "how long SIGTERM waits for open transactions")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{errors.New("--config FILE is required")}
	}
	started := time.Now()
	cfg, engine, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	logWarnings(log, cfg)
	// go-redis logs connection trouble through a package-level logger; set
	// once here, the process's entry point, it goes to the same log.
	redis.SetLogger(redisLogger{log.With().Str("component", "redis").Logger()})
	st, err := openStore(cfg.Store)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer st.Close()
	certs := &certSet{}
	rc, err := relayConfig(cfg, engine, st, certs, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	var r *relay.Relay
	m, err := metrics.New(reg, metrics.Options{Runtime: true, Certificates: certs.expiry,
		Sessions: func() map[string]int {
			if r == nil {
				return nil
			}
			return r.Sessions()
		}})
	if err != nil {
		return err
	}
	recent := status.New(status.Config{Keep: cfg.Admin.RecentMessages})
	rc.Observers = append(rc.Observers, m, recent)
	if r, err = relay.New(rc); err != nil {
		return err
	}
	if err := r.Start(); err != nil {
		return err
	}
	src := readySource{Relay: r, certs: certs, now: time.Now}
	if err := certs.invalid(time.Now()); err != nil {
		// Serving on: a crash loop would help nobody. /readyz says not
		// ready until a valid certificate is in place (SIGHUP reloads it),
		// and the certificate metric and alert say the same.
		log.Error().Err(err).Msg("a certificate in use is not valid: this instance is not ready until it is replaced (then SIGHUP)")
	}
	summary := &liveSummary{}
	summary.set(cfg, engine)
	page := status.NewPage(status.PageConfig{
		Recorder: recent, Source: src, Version: currentVersion().String(), Started: started,
		Summary: summary.get, Recipients: rc.LogRecipients, Log: log,
	})
	adm, err := startAdmin(cfg.Admin, reg, page, src.Ready, certs, log)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), *grace)
		defer cancel()
		r.Shutdown(ctx)
		return err
	}
	log.Info().Str("config", *path).Str("rules", engine.Summary()).EmbedObject(currentVersion()).Msg("serving")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var s os.Signal
	for s = range sig {
		if s != syscall.SIGHUP {
			break
		}
		if err := reloadConfig(*path, cfg, r, st, certs, summary, log); err != nil {
			log.Error().Err(err).Str("config", *path).Msg("SIGHUP: new configuration refused; the one in force stays")
			var re relayReloadError
			if !errors.As(err, &re) {
				m.Reloaded(err) // the relay reports the reloads it saw itself
			}
		}
	}
	log.Info().Str("signal", s.String()).Int64("grace_ms", grace.Milliseconds()).Msg("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	// The admin listener outlives the relay's draining, so that /readyz
	// says "shutting down" to the load balancer meanwhile.
	err = r.Shutdown(ctx)
	if adm != nil {
		adm.Shutdown(ctx)
	}
	return err
}

// startAdmin starts the admin listener when the configuration names one.
func startAdmin(c config.Admin, reg *prometheus.Registry, page http.Handler, ready func(context.Context) error, certs *certSet, log zerolog.Logger) (*admin.Server, error) {
	if c.Listen == "" {
		return nil, nil
	}
	token, err := c.Token()
	if err != nil {
		return nil, fmt.Errorf("admin.token_file: %w", err)
	}
	ac := admin.Config{Listen: c.Listen, Token: token, InsecureOpen: c.InsecureOpen, Gatherer: reg, Status: page, Pprof: c.Pprof, Ready: ready, Log: log}
	if c.TLS.CertFile != "" {
		cf, err := certs.open(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("admin.tls: %w", err)
		}
		ac.TLS = &tls.Config{GetCertificate: cf.server, MinVersion: tls.VersionTLS12}
	}
	a, err := admin.New(ac)
	if err != nil {
		return nil, err
	}
	if err := a.Start(); err != nil {
		return nil, err
	}
	return a, nil
}

// reloadConfig reads the configuration file again on SIGHUP and, when it is
// valid, puts it in force without dropping a session: certificates are
// reloaded, and vendors, the tenant target, rules, reference keys, header
// selections and policies apply from each session's next transaction. The
// sections only a restart can change (hostname, log, store, listeners) are
// kept as they were at start (started) and named in a warning. An invalid
// file changes nothing: the error says why.
func reloadConfig(path string, started *config.Config, r *relay.Relay, st store.Store, certs *certSet, summary *liveSummary, log zerolog.Logger) error {
	next, engine, err := loadConfig(path)
	if err != nil {
		return err
	}
	rc, err := relayConfig(next, engine, st, certs, log)
	if err != nil {
		return err
	}
	if err := r.Reload(rc.Policy); err != nil {
		return relayReloadError{err}
	}
	summary.set(next, engine)
	logWarnings(log, next)
	n, err := certs.reload()
	if err != nil {
		log.Error().Err(err).Int("reloaded", n).Msg("SIGHUP: some certificates failed to load; they stay as they were")
	}
	if changed := started.RestartOnly(next); len(changed) > 0 {
		log.Warn().Strs("sections", changed).Msg("SIGHUP: these sections differ from the running ones and take effect only after a restart")
	}
	log.Info().Int("certificates", n).Str("rules", engine.Summary()).Msg("SIGHUP: configuration reloaded")
	return nil
}

// logWarnings logs each of cfg's warnings (an open listener accepted by
// insecure_open, fallback_matching: any) at warn level, with its field.
func logWarnings(log zerolog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn().Str("field", w.Path).Int("line", w.Line).Msg(w.Msg)
	}
}
