package loadgen

// The client side of the protocol is written here on net.Conn and bufio,
// with explicit reply parsing, instead of go-smtp's client: go-smtp's client
// does not pipeline (it waits for every reply), chooses its own buffering
// and BDAT chunking, and a load generator must control its own wire
// behaviour: which commands go out in one write, how big a chunk is, when
// it waits for a reply.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// ioBuffer is the size of the client's read and write buffers.
const ioBuffer = 64 << 10

// bdatWindow is how many BDAT chunks may await their replies when
// pipelining; beyond it the client reads replies before it writes more, so
// unread replies never fill the socket buffers (a deadlock).
const bdatWindow = 16

// ReplyError is a negative (or unexpected) reply to a command.
type ReplyError struct {
	Step  string // MAIL, RCPT, DATA, END-OF-DATA, BDAT, RSET, EHLO, GREETING, STARTTLS
	Reply Reply
}

func (e *ReplyError) Error() string { return e.Step + ": " + e.Reply.String() }

// deadlineConn sets a deadline of timeout before every read and write.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// clientConn is one SMTP connection of a sender.
type clientConn struct {
	cfg     *Config
	nc      net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	caps    map[string]string
	dirty   bool // a transaction may be open: RSET before the next
	used    int  // messages sent on it
	pending []string
	fail    *ReplyError // first negative reply of the transaction
	rcptOK  int
	rejects []*ReplyError // negative RCPT replies
}

// dial connects, reads the greeting, says EHLO and, when configured, does
// STARTTLS and EHLO again.
func dial(ctx context.Context, cfg *Config) (*clientConn, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	c := &clientConn{cfg: cfg}
	c.setConn(&deadlineConn{Conn: nc, timeout: cfg.Timeout})
	if err := c.expect("GREETING", 2); err != nil {
		c.nc.Close()
		return nil, err
	}
	if err := c.ehlo(); err != nil {
		c.nc.Close()
		return nil, err
	}
	if cfg.TLSConfig != nil {
		if _, ok := c.caps["STARTTLS"]; !ok {
			c.nc.Close()
			return nil, errNoSTARTTLS
		}
		if err := c.cmd("STARTTLS"); err != nil {
			c.nc.Close()
			return nil, err
		}
		if err := c.expect("STARTTLS", 2); err != nil {
			c.nc.Close()
			return nil, err
		}
		tc := tls.Client(c.nc, cfg.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.nc.Close()
			return nil, fmt.Errorf("%w: %w", errTLSHandshake, err)
		}
		c.setConn(tc)
		if err := c.ehlo(); err != nil {
			c.nc.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *clientConn) setConn(nc net.Conn) {
	c.nc = nc
	c.r = bufio.NewReaderSize(nc, ioBuffer)
	c.w = bufio.NewWriterSize(nc, ioBuffer)
}

func (c *clientConn) cmd(line string) error {
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
	return c.w.Flush()
}

// expect reads a reply and wants its first digit to be class.
func (c *clientConn) expect(step string, class int) error {
	rep, err := ReadReply(c.r)
	if err != nil {
		return err
	}
	if rep.Code/100 != class {
		return &ReplyError{Step: step, Reply: rep}
	}
	return nil
}

func (c *clientConn) ehlo() error {
	if err := c.cmd("EHLO " + c.cfg.Helo); err != nil {
		return err
	}
	rep, err := ReadReply(c.r)
	if err != nil {
		return err
	}
	if rep.Code != 250 {
		return &ReplyError{Step: "EHLO", Reply: rep}
	}
	c.caps = map[string]string{}
	for _, l := range rep.Lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.caps[strings.ToUpper(k)] = v
	}
	return nil
}

func (c *clientConn) has(ext string) bool { _, ok := c.caps[ext]; return ok }

// quit says QUIT (reading its reply) and closes.
func (c *clientConn) quit() {
	if c.cmd("QUIT") == nil {
		_, _ = ReadReply(c.r)
	}
	c.nc.Close()
}

// queue writes a command into the buffer and records that its reply is due.
func (c *clientConn) queue(step, line string) {
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
	c.pending = append(c.pending, step)
}

// drain flushes and reads replies until at most keep are pending. The
// first negative reply of the transaction is kept in c.fail; RCPT replies
// are counted.
func (c *clientConn) drain(keep int) error {
	if err := c.w.Flush(); err != nil {
		return err
	}
	for len(c.pending) > keep {
		step := c.pending[0]
		c.pending = c.pending[1:]
		rep, err := ReadReply(c.r)
		if err != nil {
			return err
		}
		ok := rep.Positive() || (step == "DATA" && rep.Code == 354)
		switch {
		case step == "RCPT" && ok:
			c.rcptOK++
		case step == "RCPT":
			c.rejects = append(c.rejects, &ReplyError{Step: step, Reply: rep})
		case !ok && c.fail == nil:
			c.fail = &ReplyError{Step: step, Reply: rep}
		}
	}
	return nil
}

// step writes a command and, without pipelining, waits for its reply.
func (c *clientConn) step(pipe bool, name, line string) error {
	c.queue(name, line)
	if pipe {
		return nil
	}
	return c.drain(0)
}

// txResult is what one transaction did.
type txResult struct {
	latency time.Duration
	fail    *ReplyError   // why the message was not accepted (nil: accepted)
	rejects []*ReplyError // refused recipients (the message may still be accepted)
}

// send runs one mail transaction. A returned error means the connection
// is unusable (or, for a message without recipients, that nothing was
// sent); a refused message is a txResult with fail set.
func (c *clientConn) send(m Message) (txResult, error) {
	cfg := c.cfg
	pipe := cfg.Pipelining && c.has("PIPELINING")
	if cfg.BDAT && !c.has("CHUNKING") {
		return txResult{}, fmt.Errorf("%w CHUNKING (BDAT)", errNotOffered)
	}
	if len(m.To) == 0 {
		return txResult{}, errNoRecipients
	}
	c.fail, c.rcptOK, c.rejects, c.pending = nil, 0, nil, c.pending[:0]
	if (cfg.RSET && c.used > 0) || c.dirty {
		c.queue("RSET", "RSET")
		if !pipe {
			if err := c.drain(0); err != nil {
				return txResult{}, err
			}
			if c.fail != nil {
				return txResult{fail: c.fail}, nil
			}
		}
	}
	c.used++
	c.dirty = true

	mail := "MAIL FROM:<" + m.From + ">"
	if c.has("SIZE") {
		mail += " SIZE=" + strconv.FormatInt(m.Size, 10)
	}
	if m.EightBit && c.has("8BITMIME") {
		mail += " BODY=8BITMIME"
	}
	if m.UTF8 {
		mail += " SMTPUTF8"
	}
	start := time.Now()
	if err := c.step(pipe, "MAIL", mail); err != nil {
		return txResult{}, err
	}
	done := func() txResult {
		return txResult{latency: time.Since(start), fail: c.fail, rejects: c.rejects}
	}
	if !pipe && c.fail != nil {
		return done(), nil
	}
	for _, to := range m.To {
		if err := c.step(pipe, "RCPT", "RCPT TO:<"+to+">"); err != nil {
			return txResult{}, err
		}
	}
	if !pipe && c.rcptOK == 0 {
		c.fail = c.rejects[len(c.rejects)-1]
		return done(), nil
	}

	if cfg.BDAT {
		// Pipelined, the chunks follow MAIL and RCPT without waiting.
		bw := &bdatWriter{c: c, pipe: pipe, left: m.Size, chunk: int64(cfg.ChunkSize)}
		if _, err := m.Content.WriteTo(bw); err != nil && !errors.Is(err, errAbort) {
			return txResult{}, err
		}
		if bw.left > 0 && c.fail == nil {
			return txResult{}, fmt.Errorf("%w: %d bytes short of its size", errContent, bw.left)
		}
		if err := c.drain(0); err != nil {
			return txResult{}, err
		}
	} else {
		if err := c.step(pipe, "DATA", "DATA"); err != nil {
			return txResult{}, err
		}
		if pipe {
			if err := c.drain(0); err != nil {
				return txResult{}, err
			}
		}
		// A refused DATA (c.fail set) sends nothing; a server that says
		// 354 anyway gets the data.
		if c.fail == nil {
			dw := &dotWriter{w: c.w, bol: true}
			n, err := m.Content.WriteTo(dw)
			if err != nil {
				return txResult{}, err
			}
			if n != m.Size || !dw.crlf() {
				return txResult{}, fmt.Errorf("%w: %d bytes (size %d), ends in CRLF: %v", errContent, n, m.Size, dw.crlf())
			}
			c.queue("END-OF-DATA", ".")
			if err := c.drain(0); err != nil {
				return txResult{}, err
			}
		}
	}
	if c.rcptOK == 0 && len(c.rejects) > 0 && (c.fail == nil || c.fail.Step != "MAIL" && c.fail.Step != "RSET") {
		c.fail = c.rejects[len(c.rejects)-1] // the cause, not the 503 to DATA or BDAT that follows
	}
	if c.fail == nil {
		c.dirty = false
	}
	return done(), nil
}

var errAbort = errors.New("transaction refused")

// Errors without a reply that errorKey classifies. "protocol": the server
// lacks an extension the configuration needs (errNotOffered), a Source's
// Message does not match its Size (errContent) or has no recipients
// (errNoRecipients). "tls": the server does not offer STARTTLS
// (errNoSTARTTLS) or the TLS handshake failed (errTLSHandshake).
var (
	errNotOffered   = errors.New("server does not offer")
	errContent      = errors.New("message content")
	errNoRecipients = errors.New("message has no recipients")
	errNoSTARTTLS   = errors.New("server does not offer STARTTLS")
	errTLSHandshake = errors.New("TLS handshake")
)

// bdatWriter cuts the content into BDAT chunks of exactly chunk bytes (the
// last one smaller, with LAST), writing each chunk's command just before
// its data, so the data goes straight into the connection's buffer.
type bdatWriter struct {
	c     *clientConn
	pipe  bool
	left  int64 // bytes of the message still to come
	chunk int64
	inCh  int64 // bytes still due in the current chunk
}

func (b *bdatWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if b.inCh == 0 {
			n := min(b.chunk, b.left)
			if n <= 0 {
				return written, fmt.Errorf("%w longer than its size", errContent)
			}
			line := "BDAT " + strconv.FormatInt(n, 10)
			if n == b.left {
				line += " LAST"
			}
			b.c.queue("BDAT", line)
			b.inCh = n
		}
		k := int(min(int64(len(p)), b.inCh))
		if _, err := b.c.w.Write(p[:k]); err != nil {
			return written, err
		}
		written += k
		p = p[k:]
		b.inCh -= int64(k)
		b.left -= int64(k)
		if b.inCh == 0 {
			var err error
			if !b.pipe {
				err = b.c.drain(0)
			} else if len(b.c.pending) > bdatWindow {
				err = b.c.drain(bdatWindow / 2)
			}
			if err != nil {
				return written, err
			}
			if b.c.fail != nil && !b.pipe {
				return written, errAbort
			}
		}
	}
	return written, nil
}

// dotWriter dot-stuffs for DATA: a '.' that begins a line is doubled.
type dotWriter struct {
	w    io.Writer
	bol  bool // at the beginning of a line
	last [2]byte
}

var dot = []byte{'.'}

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	if n >= 2 {
		d.last = [2]byte{p[n-2], p[n-1]}
	} else {
		d.last = [2]byte{d.last[1], p[0]}
	}
	// Look for dots, not line ends (they are rarer); write everything up
	// to a dot that begins a line, then one more dot.
	start := 0
	for off := 0; ; {
		j := bytes.IndexByte(p[off:], '.')
		if j < 0 {
			break
		}
		i := off + j
		if (i == 0 && d.bol) || (i > 0 && p[i-1] == '\n') {
			if _, err := d.w.Write(p[start:i]); err != nil {
				return 0, err
			}
			if _, err := d.w.Write(dot); err != nil {
				return 0, err
			}
			start = i // the dot itself goes out with what follows
		}
		off = i + 1
	}
	if _, err := d.w.Write(p[start:]); err != nil {
		return 0, err
	}
	d.bol = p[n-1] == '\n'
	return n, nil
}

// crlf tells whether what was written ends in CRLF.
func (d *dotWriter) crlf() bool { return d.last == [2]byte{'\r', '\n'} }
