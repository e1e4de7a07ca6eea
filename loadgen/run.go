package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures Run.
type Config struct {
	Addr   string // host:port of the server under load
	Source Source
	// Senders is the number of concurrent connections (at least 1).
	Senders int
	// Messages is how many messages to send in all; Duration how long to
	// start new messages. One of them, or both (whichever ends first).
	Messages int64
	Duration time.Duration
	// PerConn is how many messages a connection carries before QUIT; 0 is
	// no limit. RSET sends RSET between the messages of a connection.
	PerConn int
	RSET    bool
	// BDAT sends the content with BDAT chunks of ChunkSize bytes instead
	// of DATA (the server must offer CHUNKING).
	BDAT      bool
	ChunkSize int
	// Pipelining, when the server offers PIPELINING, writes MAIL, every
	// RCPT and DATA (or the BDAT chunks) without waiting for replies.
	Pipelining bool
	Helo       string        // EHLO name; "loadgen.invalid" when empty
	TLSConfig  *tls.Config   // when set, STARTTLS is required
	Timeout    time.Duration // of every read and write; 60 s when zero
	// PID, when positive, is a process whose memory is sampled every
	// RSSInterval (100 ms when zero) from /proc/PID/status.
	PID         int
	RSSInterval time.Duration
}

// DefaultChunkSize is the BDAT chunk size when Config.ChunkSize is 0.
const DefaultChunkSize = 1 << 20

// Result is the outcome of a run. Bytes and rates count the message data
// of accepted messages (not the SMTP commands, nor dot-stuffing).
type Result struct {
	Target      string       `json:"target"`
	Describe    string       `json:"messages"`
	Mode        string       `json:"mode"`
	Senders     int          `json:"senders"`
	Attempted   int64        `json:"attempted"`
	Accepted    int64        `json:"accepted"`
	Failed      int64        `json:"failed"`
	Bytes       int64        `json:"bytes"`
	Connections int64        `json:"connections"`
	Seconds     float64      `json:"seconds"`
	MsgPerSec   float64      `json:"msg_per_sec"`
	MBPerSec    float64      `json:"mb_per_sec"` // 10^6 bytes of message data per second
	Latency     LatencyStats `json:"latency_ms"`
	Errors      []ErrorCount `json:"errors"`
	RSS         *RSSStats    `json:"rss,omitempty"`
}

// LatencyStats are per accepted message, from writing MAIL to the final
// reply, in milliseconds.
type LatencyStats struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// ErrorCount is how often one kind of error happened: Key is the reply
// code ("451", "550") or, without a reply, "connect", "network",
// "timeout", "malformed-reply", "tls" or "protocol"; Example is one of them
// in full.
type ErrorCount struct {
	Key     string `json:"key"`
	Count   int64  `json:"count"`
	Example string `json:"example"`
}

// Run puts the load on cfg.Addr and returns what happened. It returns an
// error only for a bad configuration; everything the server does is in the
// Result. Cancelling ctx stops the run early (the Result covers what was
// done).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Source == nil || cfg.Addr == "" {
		return nil, errors.New("loadgen: Addr and Source are required")
	}
	if cfg.Messages <= 0 && cfg.Duration <= 0 {
		return nil, errors.New("loadgen: Messages or Duration is required")
	}
	if cfg.Senders < 1 {
		cfg.Senders = 1
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.Helo == "" {
		cfg.Helo = "loadgen.invalid"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	var sampler *rssSampler
	if cfg.PID > 0 {
		var err error
		if sampler, err = startRSS(cfg.PID, cfg.RSSInterval); err != nil {
			return nil, err
		}
	}

	var next atomic.Int64
	var deadline time.Time
	start := time.Now()
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	claim := func() (int64, bool) {
		if ctx.Err() != nil || (!deadline.IsZero() && time.Now().After(deadline)) {
			return 0, false
		}
		i := next.Add(1) - 1
		if cfg.Messages > 0 && i >= cfg.Messages {
			return 0, false
		}
		return i, true
	}
	stats := make([]senderStats, cfg.Senders)
	var wg sync.WaitGroup
	for s := range stats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[s].run(ctx, &cfg, claim)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := &Result{Target: cfg.Addr, Describe: cfg.Source.Describe(), Mode: cfg.mode(), Senders: cfg.Senders,
		Seconds: elapsed.Seconds()}
	var lat []time.Duration
	errs := map[string]*ErrorCount{}
	for i := range stats {
		st := &stats[i]
		res.Attempted += st.attempted
		res.Accepted += st.accepted
		res.Bytes += st.bytes
		res.Connections += st.conns
		lat = append(lat, st.latencies...)
		for _, e := range st.errors {
			ec := errs[e.Key]
			if ec == nil {
				ec = &ErrorCount{Key: e.Key, Example: e.Example}
				errs[e.Key] = ec
			}
			ec.Count += e.Count
		}
	}
	res.Failed = res.Attempted - res.Accepted
	if s := elapsed.Seconds(); s > 0 {
		res.MsgPerSec = float64(res.Accepted) / s
		res.MBPerSec = float64(res.Bytes) / s / 1e6
	}
	res.Latency = latencyStats(lat)
	for _, ec := range errs {
		res.Errors = append(res.Errors, *ec)
	}
	sort.Slice(res.Errors, func(i, j int) bool {
		if res.Errors[i].Count != res.Errors[j].Count {
			return res.Errors[i].Count > res.Errors[j].Count
		}
		return res.Errors[i].Key < res.Errors[j].Key
	})
	if sampler != nil {
		res.RSS = sampler.stop()
	}
	return res, nil
}

func (cfg *Config) mode() string {
	var parts []string
	if cfg.BDAT {
		parts = append(parts, "BDAT "+FormatSize(int64(cfg.ChunkSize))+" chunks")
	} else {
		parts = append(parts, "DATA")
	}
	if cfg.Pipelining {
		parts = append(parts, "pipelining")
	}
	if cfg.PerConn == 0 {
		parts = append(parts, "one connection per sender")
	} else {
		parts = append(parts, fmt.Sprintf("%d msg/connection", cfg.PerConn))
	}
	if cfg.RSET {
		parts = append(parts, "RSET")
	}
	if cfg.TLSConfig != nil {
		parts = append(parts, "STARTTLS")
	}
	return strings.Join(parts, ", ")
}

// senderStats is one sender's tally; merged when all are done.
type senderStats struct {
	attempted, accepted, bytes, conns int64
	latencies                         []time.Duration
	errors                            []ErrorCount
}

func (st *senderStats) addError(key, example string) {
	for i := range st.errors {
		if st.errors[i].Key == key {
			st.errors[i].Count++
			return
		}
	}
	st.errors = append(st.errors, ErrorCount{Key: key, Count: 1, Example: example})
}

func (st *senderStats) run(ctx context.Context, cfg *Config, claim func() (int64, bool)) {
	var c *clientConn
	defer func() {
		if c != nil {
			c.quit()
		}
	}()
	for {
		i, ok := claim()
		if !ok {
			return
		}
		if c == nil {
			var err error
			if c, err = dial(ctx, cfg); err != nil {
				c = nil
				if ctx.Err() != nil {
					return // cancelled while dialling: the message was not attempted
				}
				st.attempted++
				st.addError(errorKey(err, "connect"), err.Error())
				select { // a dead server must not turn the run into a busy loop
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
			st.conns++
		}
		st.attempted++
		m := cfg.Source.Message(i)
		tx, err := c.send(m)
		if err != nil {
			st.addError(errorKey(err, "network"), err.Error())
			c.nc.Close()
			c = nil
			continue
		}
		for _, r := range tx.rejects {
			if tx.fail != r { // a refused recipient of an accepted message
				st.addError(strconv.Itoa(r.Reply.Code), r.Error())
			}
		}
		if tx.fail != nil {
			st.addError(strconv.Itoa(tx.fail.Reply.Code), tx.fail.Error())
		} else {
			st.accepted++
			st.bytes += m.Size
			st.latencies = append(st.latencies, tx.latency)
		}
		if cfg.PerConn > 0 && c.used >= cfg.PerConn {
			c.quit()
			c = nil
		}
	}
}

// errorKey classifies an error without a reply.
func errorKey(err error, fallback string) string {
	var re *ReplyError
	var me *MalformedReplyError
	var ne net.Error
	var te *tls.CertificateVerificationError
	switch {
	case errors.As(err, &re):
		return strconv.Itoa(re.Reply.Code)
	case errors.As(err, &me):
		return "malformed-reply"
	case errors.As(err, &te), errors.Is(err, errNoSTARTTLS), errors.Is(err, errTLSHandshake),
		// crypto/tls's errors on an established connection (alerts, bad
		// records) have no exported type in common, only this prefix
		strings.Contains(err.Error(), "tls:"):
		return "tls"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, errNotOffered), errors.Is(err, errContent), errors.Is(err, errNoRecipients):
		return "protocol"
	}
	return fallback
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted values
// by the nearest-rank method: the smallest value with at least p% of the
// values at or below it. It returns 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func latencyStats(lat []time.Duration) LatencyStats {
	if len(lat) == 0 {
		return LatencyStats{}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return LatencyStats{
		P50: ms(Percentile(lat, 50)), P90: ms(Percentile(lat, 90)), P99: ms(Percentile(lat, 99)),
		Max: ms(lat[len(lat)-1]), Mean: ms(sum / time.Duration(len(lat))),
	}
}

// RSSStats is the memory of the process given by Config.PID, in KiB:
// VmHWM is its peak resident set over its whole life (read at the end of
// the run), MaxRSS the highest VmRSS sampled during the run, StartRSS the
// VmRSS when the run began.
type RSSStats struct {
	PID      int   `json:"pid"`
	VmHWM    int64 `json:"vmhwm_kib"`
	MaxRSS   int64 `json:"max_vmrss_kib"`
	StartRSS int64 `json:"start_vmrss_kib"`
	Samples  int   `json:"samples"`
}

type rssSampler struct {
	pid  int
	quit chan struct{}
	done chan struct{}
	st   RSSStats
}

func startRSS(pid int, every time.Duration) (*rssSampler, error) {
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	rss, _, err := ReadProcMemory(pid)
	if err != nil {
		return nil, err
	}
	s := &rssSampler{pid: pid, quit: make(chan struct{}), done: make(chan struct{}),
		st: RSSStats{PID: pid, StartRSS: rss, MaxRSS: rss, Samples: 1}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s, nil
}

func (s *rssSampler) sample() {
	rss, hwm, err := ReadProcMemory(s.pid)
	if err != nil {
		return
	}
	s.st.Samples++
	s.st.MaxRSS = max(s.st.MaxRSS, rss)
	s.st.VmHWM = max(s.st.VmHWM, hwm)
}

func (s *rssSampler) stop() *RSSStats {
	close(s.quit)
	<-s.done
	s.sample()
	st := s.st
	return &st
}

// ReadProcMemory returns VmRSS and VmHWM of a process, in KiB, from
// /proc/PID/status.
func ReadProcMemory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	return parseStatus(string(b))
}

func parseStatus(s string) (rss, hwm int64, err error) {
	found := 0
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status: bad %s line %q", k, line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: bad %s line %q", k, line)
		}
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
		found++
	}
	if found < 2 {
		return 0, 0, errors.New("/proc status: no VmRSS and VmHWM (a kernel thread or an exited process?)")
	}
	return rss, hwm, nil
}
