package relay

import (
	"crypto/tls"
	"net"
	"sync/atomic"
	"time"
)

// guardedListener wraps every accepted connection in a guardedConn.
type guardedListener struct {
	net.Listener
}

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c}, nil
}

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
type guardedConn struct {
	net.Conn
	dataIdle atomic.Int64 // nanoseconds; 0 leaves deadlines to go-smtp
	failed   atomic.Bool  // a read returned an error, EOF included
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if d := time.Duration(c.dataIdle.Load()); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

// receiving switches idle-timeout mode on (d > 0) or off (d == 0).
func (c *guardedConn) receiving(d time.Duration) { c.dataIdle.Store(int64(d)) }

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
