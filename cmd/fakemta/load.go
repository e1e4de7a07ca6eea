package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/recallrelay/recallrelay/internal/tlsflags"
	"github.com/recallrelay/recallrelay/internal/yamlconf"
	"github.com/recallrelay/recallrelay/loadgen"
)

// load is "fakemta load": package loadgen at the command line.
func (a *app) load(ctx context.Context, args []string) error {
	fs := a.newFlags("load", "(--to ADDR [--compare-direct] | --sink) [flags]",
		"Put SMTP load on a server (--to) or on a built-in sink (--sink) and report throughput\nand latency.")
	to := fs.String("to", "", "server to put the load on (host:port)")
	sink := fs.Bool("sink", false, "start the built-in sink on loopback and put the load on it (instead of --to)")
	sinkImpl := fs.String("sink-impl", loadgen.SinkFast, "built-in sink: fast (hand-written) or go-smtp (go-smtp's server, slower on DATA)")
	compare := fs.Bool("compare-direct", false, "after the run against --to, run the same load against the built-in sink and report both and the ratio")
	senders := fs.Int("senders", 1, "concurrent senders (connections)")
	messages := fs.Int64("messages", 0, "messages to send in all (default 1000 without --duration)")
	duration := fs.Duration("duration", 0, "start messages for this long (with --messages: whichever ends first)")
	perConn := fs.Int("per-conn", 1, "messages per connection before QUIT; 0 = one connection per sender for the whole run")
	rset := fs.Bool("rset", false, "send RSET between the messages of a connection")
	bdat := fs.Bool("bdat", false, "send content with BDAT (CHUNKING) instead of DATA")
	chunk := fs.String("chunk-size", "1MiB", "with --bdat, the chunk `SIZE`")
	pipelining := fs.Bool("pipelining", true, "when the server offers PIPELINING, send MAIL, RCPT and DATA (or the BDAT chunks) as one group")
	size := fs.String("size", "", "message `SIZE` (B, KiB, MiB, KB, MB; 1 KiB to 100 MB and more, streamed; default 4KiB, with --exchange the generated messages' own sizes)")
	exchange := fs.Bool("exchange", false, "send relaytest's realistic Exchange messages (with --size: the ones with an attachment, padded to it)")
	seed := fs.Int64("seed", 1, "seed of --exchange")
	from := fs.String("from", "", "MAIL FROM (default "+loadgen.DefaultFrom+"; with --exchange, the message's)")
	rcpt := fs.String("rcpt", "", "comma-separated RCPT TO (default "+loadgen.DefaultRcpt+"; with --exchange, the message's)")
	helo := fs.String("helo", "loadgen.invalid", "EHLO name")
	timeout := fs.Duration("timeout", time.Minute, "timeout of every read and write")
	pid := fs.Int("pid", 0, "sample the memory (/proc/PID/status VmRSS, VmHWM) of this process during the run against --to")
	rssEvery := fs.Duration("rss-interval", 100*time.Millisecond, "with --pid, the sampling interval")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of a table")
	clientTLS := tlsflags.Register(fs.FlagSet, "", "to", "issue STARTTLS and fail without it (against --sink, the sink offers a throwaway certificate)")
	if err := a.parse(fs, args); err != nil {
		return err
	}
	switch {
	case *sink == (*to != ""):
		return a.usageError(fs, "exactly one of --to and --sink is required")
	case *compare && *sink:
		return a.usageError(fs, "--compare-direct needs --to (it adds the run against the built-in sink)")
	case *pid != 0 && *to == "":
		return a.usageError(fs, "--pid needs --to")
	case *senders < 1 || *perConn < 0 || *messages < 0 || *duration < 0 || *timeout <= 0:
		return a.usageError(fs, "--senders must be at least 1; --per-conn, --messages, --duration and --timeout not negative")
	case *sinkImpl != loadgen.SinkFast && *sinkImpl != loadgen.SinkGoSMTP:
		return a.usageError(fs, "--sink-impl must be %s or %s", loadgen.SinkFast, loadgen.SinkGoSMTP)
	}
	if *messages == 0 && *duration == 0 {
		*messages = 1000
	}
	if *size == "" && !*exchange {
		*size = "4KiB"
	}
	msgSize, err := int64(0), error(nil)
	if *size != "" {
		msgSize, err = parseSize(*size)
	}
	if err != nil {
		return a.usageError(fs, "--size: %v", err)
	}
	chunkSize, err := parseSize(*chunk)
	if err != nil || chunkSize < 1 || chunkSize > 1<<30 {
		return a.usageError(fs, "--chunk-size: want 1 B to 1 GiB")
	}
	rcpts := splitList(*rcpt)
	var src loadgen.Source
	if *exchange {
		src, err = loadgen.NewExchange(loadgen.ExchangeOptions{Seed: *seed, Size: msgSize, From: *from, To: rcpts})
	} else {
		src, err = loadgen.NewSynthetic(loadgen.SyntheticOptions{Size: msgSize, From: *from, To: rcpts})
	}
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	addr := *to
	if *sink {
		addr = "127.0.0.1:0"
	}
	tlsConfig, err := clientTLS.Config(addr)
	if err != nil {
		return a.usageError(fs, "%v", err)
	}
	cfg := loadgen.Config{
		Source: src, Senders: *senders, Messages: *messages, Duration: *duration, PerConn: *perConn, RSET: *rset,
		BDAT: *bdat, ChunkSize: int(chunkSize), Pipelining: *pipelining, Helo: *helo, TLSConfig: tlsConfig,
		Timeout: *timeout, RSSInterval: *rssEvery,
	}

	var labels []string
	var results []*loadgen.Result
	if *to != "" {
		c := cfg
		c.Addr, c.PID = *to, *pid
		res, err := loadgen.Run(ctx, c)
		if err != nil {
			return err
		}
		labels, results = append(labels, *to), append(results, res)
	}
	if *sink || *compare {
		res, err := a.runSink(ctx, cfg, *sinkImpl)
		if err != nil {
			return err
		}
		labels, results = append(labels, "direct sink ("+*sinkImpl+")"), append(results, res)
	}
	var cmp *loadgen.Comparison
	if len(results) == 2 {
		c := loadgen.Compare(results[0], results[1])
		cmp = &c
	}
	if *asJSON {
		type run struct {
			Label string `json:"label"`
			*loadgen.Result
		}
		out := struct {
			Runs  []run               `json:"runs"`
			Ratio *loadgen.Comparison `json:"target_over_direct,omitempty"`
		}{Ratio: cmp}
		for i, r := range results {
			out.Runs = append(out.Runs, run{labels[i], r})
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else if err := loadgen.WriteTable(a.stdout, labels, results, cmp); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, r := range results {
		if r.Accepted == 0 {
			return errors.New("no message was accepted")
		}
	}
	return nil
}

// runSink puts the load of cfg on a built-in sink started for it.
func (a *app) runSink(ctx context.Context, cfg loadgen.Config, impl string) (*loadgen.Result, error) {
	sc := loadgen.SinkConfig{Impl: impl}
	if cfg.TLSConfig != nil {
		cert, err := selfSignedCert("loadgen-sink")
		if err != nil {
			return nil, err
		}
		sc.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c := cfg.TLSConfig.Clone()
		c.InsecureSkipVerify, c.RootCAs = true, nil // our own sink, with a throwaway certificate
		cfg.TLSConfig = c
	}
	s, err := loadgen.StartSink(sc)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	cfg.Addr, cfg.PID = s.Addr(), 0
	res, err := loadgen.Run(ctx, cfg)
	if err == nil && s.Stats().Messages != res.Accepted {
		err = fmt.Errorf("the sink counted %d messages, the generator %d accepted", s.Stats().Messages, res.Accepted)
	}
	return res, err
}

// parseSize reads a size in the project's one syntax of sizes,
// yamlconf.ParseByteSize's ("4096", "4KiB", "1MiB", "100MB": KiB and MiB
// are powers of 1024, kB and MB of 1000, no fractions), refusing negative
// ones.
func parseSize(s string) (int64, error) {
	b, err := yamlconf.ParseByteSize(s)
	if err != nil {
		return 0, err
	}
	if b < 0 {
		return 0, fmt.Errorf("invalid size %q: negative", s)
	}
	return int64(b), nil
}
