package loadgen

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Sink implementations.
const (
	SinkFast   = "fast"    // hand-written: line reads over 64 KiB buffers
	SinkGoSMTP = "go-smtp" // go-smtp's server
)

// SinkConfig configures StartSink.
type SinkConfig struct {
	Listen string // "127.0.0.1:0" when empty
	Impl   string // SinkFast (default) or SinkGoSMTP
	// Keep is how many messages are kept whole (the first to arrive), for
	// comparison; the others are only counted.
	Keep int
	// TLSConfig, when set, makes the sink offer STARTTLS.
	TLSConfig *tls.Config
}

// SinkMessage is a message a sink kept.
type SinkMessage struct {
	From string
	To   []string
	Data []byte
}

// SinkStats counts what a sink accepted.
type SinkStats struct {
	Messages, Bytes, Connections int64
}

// Sink is an SMTP server that accepts every message, counts it and
// discards it.
type Sink struct {
	ln    net.Listener
	gs    *smtp.Server
	keep  int
	tls   *tls.Config
	msgs  atomic.Int64
	bytes atomic.Int64
	conns atomic.Int64

	mu     sync.Mutex
	kept   []SinkMessage
	open   map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// StartSink starts a sink.
func StartSink(cfg SinkConfig) (*Sink, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	s := &Sink{ln: ln, keep: cfg.Keep, tls: cfg.TLSConfig, open: map[net.Conn]struct{}{}}
	switch cfg.Impl {
	case "", SinkFast:
		s.wg.Add(1)
		go s.acceptLoop()
	case SinkGoSMTP:
		gs := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
			s.conns.Add(1)
			return &gsSession{s: s}, nil
		}))
		gs.Domain = "loadgen-sink"
		gs.EnableSMTPUTF8 = true
		gs.MaxMessageBytes = 0
		gs.MaxRecipients = 0
		gs.MaxLineLength = 4096
		gs.ReadTimeout = time.Minute
		gs.WriteTimeout = time.Minute
		gs.TLSConfig = cfg.TLSConfig
		gs.ErrorLog = discardLog{}
		s.gs = gs
		s.wg.Add(1)
		go func() { defer s.wg.Done(); _ = gs.Serve(ln) }()
	default:
		ln.Close()
		return nil, fmt.Errorf("unknown sink %q (want %s or %s)", cfg.Impl, SinkFast, SinkGoSMTP)
	}
	return s, nil
}

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}

// Addr is the address the sink listens on.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Stats returns the counts so far.
func (s *Sink) Stats() SinkStats {
	return SinkStats{Messages: s.msgs.Load(), Bytes: s.bytes.Load(), Connections: s.conns.Load()}
}

// Kept returns the messages kept so far.
func (s *Sink) Kept() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.kept...)
}

// Close stops the sink, closing every connection.
func (s *Sink) Close() error {
	if s.gs != nil {
		err := s.gs.Close()
		s.wg.Wait()
		return err
	}
	s.mu.Lock()
	s.closed = true
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// wantKeep reserves a place for one more kept message.
func (s *Sink) wantKeep() bool {
	if s.keep <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.kept) >= s.keep {
		return false
	}
	s.kept = append(s.kept, SinkMessage{}) // placeholder, replaced on delivery
	return true
}

func (s *Sink) delivered(n int64, from string, to []string, data []byte, kept bool) {
	s.msgs.Add(1)
	s.bytes.Add(n)
	if kept {
		s.mu.Lock()
		for i := range s.kept {
			if s.kept[i].Data == nil {
				s.kept[i] = SinkMessage{From: from, To: to, Data: data}
				break
			}
		}
		s.mu.Unlock()
	}
}

// unkeep releases a place wantKeep reserved that no delivery has filled.
func (s *Sink) unkeep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.kept {
		if s.kept[i].Data == nil {
			s.kept = append(s.kept[:i], s.kept[i+1:]...)
			return
		}
	}
}

// ----------------------------------------------------------------- go-smtp --

type gsSession struct {
	s    *Sink
	from string
	to   []string
}

func (g *gsSession) Mail(from string, _ *smtp.MailOptions) error {
	g.from, g.to = from, nil
	return nil
}
func (g *gsSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	g.to = append(g.to, to)
	return nil
}
func (g *gsSession) Data(r io.Reader) error {
	if g.s.wantKeep() {
		data, err := io.ReadAll(r)
		if err != nil {
			g.s.unkeep()
			return err
		}
		g.s.delivered(int64(len(data)), g.from, g.to, data, true)
		return nil
	}
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	g.s.delivered(n, g.from, g.to, nil, false)
	return nil
}
func (g *gsSession) Reset()        { g.from, g.to = "", nil }
func (g *gsSession) Logout() error { return nil }

// -------------------------------------------------------------------- fast --

func (s *Sink) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.open[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.conns.Add(1)
		go func() {
			defer s.wg.Done()
			sc := &sinkConn{s: s, nc: c}
			sc.serve()
			c.Close()
			s.mu.Lock()
			delete(s.open, c)
			s.mu.Unlock()
		}()
	}
}

// sinkConn is one connection to the fast sink. It answers a pipelined
// group with one write: replies are flushed only when no more input is
// buffered.
type sinkConn struct {
	s    *Sink
	nc   net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	from string
	to   []string
	mail bool
	tls  bool
	// BDAT state
	bdatBuf  []byte
	bdatN    int64
	bdatKeep bool
	bdatBad  bool
}

const sinkCaps = "250-loadgen-sink\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"

func (c *sinkConn) setConn(nc net.Conn) {
	c.nc = nc
	c.r = bufio.NewReaderSize(nc, ioBuffer)
	c.w = bufio.NewWriterSize(nc, ioBuffer)
}

func (c *sinkConn) reply(s string) {
	c.w.WriteString(s)
	c.w.WriteString("\r\n")
}

// reset ends the mail transaction. It releases the kept-message place of
// a BDAT transaction left unfinished (by RSET, EHLO, HELO, STARTTLS, DATA
// or the end of the connection).
func (c *sinkConn) reset() {
	if c.bdatKeep {
		c.s.unkeep()
	}
	c.from, c.to, c.mail = "", nil, false
	c.bdatBuf, c.bdatN, c.bdatKeep, c.bdatBad = nil, 0, false, false
}

func (c *sinkConn) serve() {
	defer c.reset()
	c.setConn(c.nc)
	c.reply("220 loadgen-sink ESMTP")
	for {
		if c.r.Buffered() == 0 {
			if c.w.Flush() != nil {
				return
			}
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Minute))
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(string(line), "\r\n")
		verb, arg, _ := strings.Cut(cmd, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			c.reset()
			c.w.WriteString(sinkCaps)
			if c.s.tls != nil && !c.tls {
				c.w.WriteString("250-STARTTLS\r\n")
			}
			c.reply("250 SIZE")
		case "HELO":
			c.reset()
			c.reply("250 loadgen-sink")
		case "STARTTLS":
			if c.s.tls == nil || c.tls {
				c.reply("502 5.5.1 STARTTLS not offered")
				continue
			}
			c.reply("220 2.0.0 ready")
			if c.w.Flush() != nil {
				return
			}
			tc := tls.Server(c.nc, c.s.tls)
			if tc.Handshake() != nil {
				return
			}
			c.setConn(tc)
			c.tls = true
			c.reset()
		case "MAIL":
			if c.mail {
				c.reply("503 5.5.1 nested MAIL")
				continue
			}
			a, ok := angle(arg, "FROM:")
			if !ok {
				c.reply("501 5.5.4 syntax: MAIL FROM:<address>")
				continue
			}
			c.from, c.mail = a, true
			c.reply("250 2.1.0 OK")
		case "RCPT":
			a, ok := angle(arg, "TO:")
			switch {
			case !c.mail:
				c.reply("503 5.5.1 MAIL first")
			case !ok:
				c.reply("501 5.5.4 syntax: RCPT TO:<address>")
			default:
				c.to = append(c.to, a)
				c.reply("250 2.1.5 OK")
			}
		case "DATA":
			if !c.mail || len(c.to) == 0 {
				c.reply("503 5.5.1 no valid recipients")
				continue
			}
			c.reply("354 go ahead")
			if c.w.Flush() != nil {
				return
			}
			if !c.data() {
				return
			}
		case "BDAT":
			if !c.bdat(arg) {
				return
			}
		case "RSET":
			c.reset()
			c.reply("250 2.0.0 OK")
		case "NOOP":
			c.reply("250 2.0.0 OK")
		case "QUIT":
			c.reply("221 2.0.0 bye")
			_ = c.w.Flush()
			return
		default:
			c.reply("502 5.5.2 command not recognized")
		}
	}
}

// angle parses "FROM:<a> PARAMS" (prefix case-insensitive).
func angle(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	return rest[1:end], true
}

// data reads DATA content up to the lone ".", undoing dot-stuffing. It
// scans what is buffered for dots that begin a line instead of reading line
// by line, so a large message costs a few calls per 64 KiB.
func (c *sinkConn) data() bool {
	keep := c.s.wantKeep()
	var buf []byte
	var n int64
	bol := true // at the beginning of a line
	fail := func() bool {
		if keep {
			c.s.unkeep()
		}
		return false
	}
	for {
		if c.r.Buffered() == 0 { // only a read that may block needs a deadline
			_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Minute))
		}
		if bol {
			p, err := c.r.Peek(1)
			if err != nil {
				return fail()
			}
			if p[0] == '.' {
				if p, err = c.r.Peek(3); err != nil {
					return fail()
				}
				if p[1] == '\r' && p[2] == '\n' {
					_, _ = c.r.Discard(3)
					break
				}
				_, _ = c.r.Discard(1) // the stuffed dot
			}
			bol = false
		}
		if c.r.Buffered() == 0 {
			if _, err := c.r.Peek(1); err != nil {
				return fail()
			}
		}
		p, _ := c.r.Peek(c.r.Buffered())
		if i := lineDot(p); i >= 0 {
			p, bol = p[:i], true
		} else {
			bol = p[len(p)-1] == '\n'
		}
		n += int64(len(p))
		if keep {
			buf = append(buf, p...)
		}
		_, _ = c.r.Discard(len(p))
	}
	if keep && buf == nil {
		buf = []byte{}
	}
	c.s.delivered(n, c.from, c.to, buf, keep)
	c.reset()
	c.reply("250 2.0.0 OK queued")
	return true
}

// lineDot returns the index of the first '.' of p that follows a '\n', or
// -1. It looks for dots, not line ends: they are rarer.
func lineDot(p []byte) int {
	for off := 0; ; {
		j := bytes.IndexByte(p[off:], '.')
		if j < 0 {
			return -1
		}
		if i := off + j; i > 0 && p[i-1] == '\n' {
			return i
		}
		off += j + 1
	}
}

// bdat reads one chunk: "BDAT size [LAST]".
func (c *sinkConn) bdat(arg string) bool {
	f := strings.Fields(arg)
	size, err := int64(0), error(nil)
	if len(f) >= 1 {
		size, err = strconv.ParseInt(f[0], 10, 64)
	}
	if len(f) < 1 || len(f) > 2 || err != nil || size < 0 || (len(f) == 2 && !strings.EqualFold(f[1], "LAST")) {
		c.reply("501 5.5.4 syntax: BDAT size [LAST]")
		return true // the size is unknown: nothing can be skipped
	}
	last := len(f) == 2
	if c.bdatN == 0 && !c.bdatBad {
		c.bdatKeep = c.mail && len(c.to) > 0 && c.s.wantKeep()
	}
	bad := !c.mail || len(c.to) == 0
	if c.bdatKeep {
		start := len(c.bdatBuf)
		c.bdatBuf = append(c.bdatBuf, make([]byte, size)...)
		if _, err := io.ReadFull(c.r, c.bdatBuf[start:]); err != nil {
			return false // serve's reset releases the place
		}
	} else if _, err := c.r.Discard(int(size)); err != nil {
		return false
	}
	c.bdatN += size
	if bad {
		c.bdatBad = true
		c.reply("503 5.5.1 no valid recipients")
		if last {
			c.reset()
		}
		return true
	}
	if !last {
		c.reply("250 2.0.0 " + strconv.FormatInt(size, 10) + " octets")
		return true
	}
	data, keep := c.bdatBuf, c.bdatKeep
	if keep && data == nil {
		data = []byte{}
	}
	c.bdatKeep = false // delivered fills the place: reset must not release it
	c.s.delivered(c.bdatN, c.from, c.to, data, keep)
	c.reset()
	c.reply("250 2.0.0 OK queued")
	return true
}
