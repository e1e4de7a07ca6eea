package relay

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// guardedConn works around two limits of go-smtp's server (v0.25):
//
//   - Server.ReadTimeout is set once per command line, so it bounds a whole
//     DATA or BDAT transfer rather than idleness: a slow 100 MB upload would
//     be cut. While a message is being received, guardedConn instead moves
//     the read deadline forward on every read, so only an idle peer times out.
//   - A BDAT chunk cut short by the peer closing the connection is handed to
//     the backend as a complete message (io.Copy through an io.LimitReader
//     treats the early EOF as success). guardedConn records that the
//     connection failed, and the session checks it before it lets the next
//     hop commit the message.
//
// It also enforces the limits go-smtp has no hook for: the number of command
// lines a client may send without starting a mail transaction, and closing
// the connection right after a final reply (too many errors, shutdown).
type guardedConn struct {
	net.Conn
	dataIdle atomic.Int64 // nanoseconds; 0 leaves deadlines to go-smtp
	failed   atomic.Bool  // a read returned an error, EOF included

	// The transfer in progress, while dataIdle > 0: when it started, the
	// minimum rate it must keep (bytes per second; 0: none) and the bytes
	// read since it started. Read runs on one goroutine at a time, but
	// receiving may be called from another (go-smtp's BDAT goroutine).
	dataStart atomic.Int64 // unix nanoseconds
	minRate   atomic.Int64
	dataBytes atomic.Int64

	maxCmds    int          // command lines allowed before the first MAIL; 0: no limit
	cmds       atomic.Int64 // command lines so far; counting stops at the first MAIL
	mailSeen   atomic.Bool
	closeAfter atomic.Bool // close once the next reply has been written
	reply      atomic.Pointer[net.Conn]

	// held keeps the lines of a multi-line reply ("250-PIPELINING") until
	// its last line, so that the reply leaves in one write: go-smtp's
	// server (v0.25.1, Conn.writeResponse) flushes every line on its own,
	// which made the EHLO reply 7 write system calls. A reply over TLS
	// reaches this layer as ciphertext, which never looks like a reply
	// line, and is written as it comes.
	heldMu sync.Mutex
	held   []byte

	closeOnce sync.Once
	onClose   func()
	// limit logs a limit this connection hit (reason, then the reply);
	// nil logs nothing.
	limit func(reason, reply string)
}

// goSMTPLimitReplies are the replies go-smtp writes on its own, without
// telling the backend, when a connection hits one of its limits: the
// connection recognizes them so that the limit still gets a log line. Over
// TLS this layer sees ciphertext and cannot; the idle timeout is therefore
// logged from Read, and the recipient limit is the session's own.
var goSMTPLimitReplies = []struct{ prefix, reason string }{
	{"500 5.4.0 Too long line", "command line too long"},
}

// errTooManyCommands ends a connection that sends commands without ever
// starting a transaction.
var errTooManyCommands = errors.New("too many commands before MAIL")

// errDataTooSlow is the read error of a transfer that fell below its
// minimum rate.
var errDataTooSlow = errors.New("message data arriving too slowly")

func (c *guardedConn) Read(p []byte) (int, error) {
	d := time.Duration(c.dataIdle.Load())
	var transferDeadline time.Time
	if d > 0 {
		deadline := time.Now().Add(d)
		if rate := c.minRate.Load(); rate > 0 {
			// Postfix's smtpd_min_data_rate, in effect: the transfer may
			// take DataTimeout plus the time its bytes need at the rate.
			allowed := d + time.Duration(float64(c.dataBytes.Load())/float64(rate)*float64(time.Second))
			transferDeadline = time.Unix(0, c.dataStart.Load()).Add(allowed)
			if transferDeadline.Before(deadline) {
				deadline = transferDeadline
			}
		}
		c.Conn.SetReadDeadline(deadline)
	} else if c.maxCmds > 0 && !c.mailSeen.Load() && c.cmds.Load() > int64(c.maxCmds) {
		reply := fmt.Sprintf("421 4.7.0 More than %d commands before MAIL; closing", c.maxCmds)
		c.logLimit("too many commands before MAIL", reply)
		c.sendReply(reply)
		c.failed.Store(true)
		return 0, errTooManyCommands
	}
	n, err := c.Conn.Read(p)
	if d > 0 {
		c.dataBytes.Add(int64(n))
	}
	if err != nil {
		c.failed.Store(true)
		var ne net.Error
		switch {
		case !errors.As(err, &ne) || !ne.Timeout():
		case d == 0:
			c.logLimit("idle timeout waiting for a command", "421 4.4.2 Idle timeout")
		case !transferDeadline.IsZero() && !time.Now().Before(transferDeadline):
			// The relay answers and closes itself: for BDAT, go-smtp
			// would answer a failed chunk read with 554 5.0.0, which
			// makes the sender bounce the message.
			reply := replyLine(dataTooSlowReply(c.minRate.Load()))
			c.logLimit("message data too slow", reply)
			c.sendReply(reply)
			return n, fmt.Errorf("%w: %w", errDataTooSlow, err)
		default:
			reply := replyLine(dataIdleReply(d))
			c.logLimit("idle timeout during message data", reply)
			c.sendReply(reply)
		}
	}
	if d == 0 && n > 0 && !c.mailSeen.Load() {
		c.cmds.Add(int64(bytes.Count(p[:n], []byte{'\n'})))
	}
	return n, err
}

// Write holds the lines of a multi-line reply until its last (see held),
// and closes the connection after a reply when asked to. The flag is read
// before the write: a reply already being written when closeAfter is set
// (a 354 racing with a shutdown) is not the one it means.
func (c *guardedConn) Write(p []byte) (int, error) {
	closing := c.closeAfter.Load()
	for _, r := range goSMTPLimitReplies {
		if bytes.HasPrefix(p, []byte(r.prefix)) {
			c.logLimit(r.reason, string(bytes.TrimRight(p, "\r\n")))
		}
	}
	c.heldMu.Lock()
	if !closing && continuationLine(p) && len(c.held)+len(p) <= maxHeldReply {
		c.held = append(c.held, p...)
		c.heldMu.Unlock()
		return len(p), nil
	}
	var n int
	var err error
	if len(c.held) > 0 {
		out := append(c.held, p...)
		c.held = c.held[:0]
		n, err = c.Conn.Write(out)
		// What the caller wrote now is p; the held lines it was told
		// were written.
		n = max(n-(len(out)-len(p)), 0)
	} else {
		n, err = c.Conn.Write(p)
	}
	c.heldMu.Unlock()
	if closing {
		c.Close()
	}
	return n, err
}

// maxHeldReply bounds what Write holds back: a multi-line reply longer
// than this goes out in more than one write.
const maxHeldReply = 4096

// continuationLine tells whether p is exactly one line of a multi-line
// reply that more lines follow: three digits, a hyphen, text, CRLF.
func continuationLine(p []byte) bool {
	if len(p) < 6 || p[3] != '-' || !bytes.HasSuffix(p, crlf) {
		return false
	}
	for _, d := range p[:3] {
		if d < '0' || d > '9' {
			return false
		}
	}
	return bytes.IndexByte(p[:len(p)-1], '\n') < 0
}

func (c *guardedConn) logLimit(reason, reply string) {
	if c.limit != nil {
		c.limit(reason, reply)
	}
}

// Close closes once and releases the connection's admission slot.
func (c *guardedConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

// sendReply writes a reply line on the connection as the client sees it
// (through TLS once STARTTLS is done) and closes it. It is only called
// while go-smtp waits for a command, so it never interleaves with a reply.
func (c *guardedConn) sendReply(line string) {
	w := net.Conn(c)
	if r := c.reply.Load(); r != nil {
		w = *r
	}
	w.SetWriteDeadline(time.Now().Add(5 * time.Second))
	w.Write([]byte(line + "\r\n"))
	c.Close()
}

// mailStarted ends the count of commands before MAIL. (Counting later
// commands at this level cannot tell them from the rest of a refused
// message that go-smtp drains after the backend returned.)
func (c *guardedConn) mailStarted() { c.mailSeen.Store(true) }

// receiving switches message-data mode on (idle > 0) or off (idle == 0):
// while it is on, each read may wait for idle at most, and the whole
// transfer must keep minRate bytes per second (see Read); minRate <= 0
// sets no rate.
func (c *guardedConn) receiving(idle time.Duration, minRate int64) {
	if idle > 0 {
		c.dataStart.Store(time.Now().UnixNano())
		c.dataBytes.Store(0)
		c.minRate.Store(max(minRate, 0))
	}
	c.dataIdle.Store(int64(idle))
}

// unwrapGuarded finds the guardedConn under a connection go-smtp hands out,
// which after STARTTLS is a *tls.Conn over it.
func unwrapGuarded(c net.Conn) *guardedConn {
	for c != nil {
		switch v := c.(type) {
		case *guardedConn:
			return v
		case *tls.Conn:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// idleWriteConn gives every write to a next hop its own deadline. go-smtp's
// client clears deadlines once DATA is accepted, so without this a next hop
// that stops reading would block a session forever.
type idleWriteConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleWriteConn) Write(p []byte) (int, error) {
	if c.idle > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	}
	return c.Conn.Write(p)
}
