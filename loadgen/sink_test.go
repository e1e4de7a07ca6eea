package loadgen

import (
	"bytes"
	"net"
	"net/textproto"
	"testing"
)

// sinkClient is a hand-driven SMTP client of a sink.
type sinkClient struct {
	t *testing.T
	c *textproto.Conn
}

func dialSink(t *testing.T, s *Sink) *sinkClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := &sinkClient{t: t, c: textproto.NewConn(nc)}
	t.Cleanup(func() { c.c.Close() })
	c.expect(220)
	return c
}

// expect reads a reply and fails the test unless its code is code.
func (c *sinkClient) expect(code int) {
	c.t.Helper()
	if _, msg, err := c.c.ReadResponse(code); err != nil {
		c.t.Fatalf("want %d: %v %s", code, err, msg)
	}
}

// cmd sends a command line and checks the reply's code.
func (c *sinkClient) cmd(code int, line string) {
	c.t.Helper()
	if err := c.c.PrintfLine("%s", line); err != nil {
		c.t.Fatal(err)
	}
	c.expect(code)
}

// raw sends bytes as they are and checks the reply's code.
func (c *sinkClient) raw(code int, b string) {
	c.t.Helper()
	if _, err := c.c.W.WriteString(b); err != nil {
		c.t.Fatal(err)
	}
	if err := c.c.W.Flush(); err != nil {
		c.t.Fatal(err)
	}
	c.expect(code)
}

// A BDAT transaction abandoned between chunks gives its kept-message place
// back: the next message is kept whole.
func TestSinkAbandonedBDATKeepsNext(t *testing.T) {
	t.Parallel()
	for _, abandon := range []string{"RSET", "EHLO again.example", "HELO again.example"} {
		t.Run(abandon, func(t *testing.T) {
			t.Parallel()
			s, err := StartSink(SinkConfig{Keep: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c := dialSink(t, s)
			c.cmd(250, "EHLO client.example")
			c.cmd(250, "MAIL FROM:<a@example.com>")
			c.cmd(250, "RCPT TO:<b@example.com>")
			c.raw(250, "BDAT 7\r\nabandon")
			c.cmd(250, abandon)
			c.cmd(250, "MAIL FROM:<c@example.com>")
			c.cmd(250, "RCPT TO:<d@example.com>")
			c.cmd(354, "DATA")
			c.raw(250, "Subject: kept\r\n\r\nbody\r\n.\r\n")
			c.cmd(221, "QUIT")

			kept := s.Kept()
			if len(kept) != 1 {
				t.Fatalf("kept %d messages, want 1", len(kept))
			}
			k := kept[0]
			if k.From != "c@example.com" || len(k.To) != 1 || k.To[0] != "d@example.com" || !bytes.Equal(k.Data, []byte("Subject: kept\r\n\r\nbody\r\n")) {
				t.Errorf("kept %+v", k)
			}
		})
	}
}

// A connection that ends between BDAT chunks gives its place back: no
// empty message is kept.
func TestSinkDisconnectMidBDATKeepsNothing(t *testing.T) {
	t.Parallel()
	s, err := StartSink(SinkConfig{Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := dialSink(t, s)
	c.cmd(250, "EHLO client.example")
	c.cmd(250, "MAIL FROM:<a@example.com>")
	c.cmd(250, "RCPT TO:<b@example.com>")
	c.raw(250, "BDAT 7\r\nabandon")
	if err := c.c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // waits for the connection's goroutine
		t.Fatal(err)
	}
	if kept := s.Kept(); len(kept) != 0 {
		t.Errorf("kept %+v, want nothing", kept)
	}
}
