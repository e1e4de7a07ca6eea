package relay_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/relay"
)

// faultyHop is a next hop that misbehaves in one scripted way.
func faultyHop(t *testing.T, script func(c net.Conn, r *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				script(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

// answer replies to each command line with the given replies in order.
func answer(c net.Conn, r *bufio.Reader, replies ...string) bool {
	for _, rep := range replies {
		if _, err := r.ReadString('\n'); err != nil {
			return false
		}
		c.Write([]byte(rep + "\r\n"))
	}
	return true
}

// A next hop that fails in any way other than a clean reply becomes a 4xx
// upstream, and nothing is half-delivered.
func TestNextHopFaults(t *testing.T) {
	tests := []struct {
		name     string
		script   func(c net.Conn, r *bufio.Reader)
		stage    string // where the client sees the failure: MAIL or DATA
		wantCode int
		wantText string
	}{
		{"421 at greeting", func(c net.Conn, r *bufio.Reader) {
			c.Write([]byte("421 4.3.2 vendor busy\r\n"))
		}, "MAIL", 451, "vendor answered greeting: 421 vendor busy"},
		{"421 at MAIL", func(c net.Conn, r *bufio.Reader) {
			c.Write([]byte("220 vendor\r\n"))
			answer(c, r, "250 vendor", "421 4.4.5 shutting down")
		}, "MAIL", 451, "vendor answered MAIL FROM: 421 shutting down"},
		{"reset in the middle of DATA", func(c net.Conn, r *bufio.Reader) {
			c.Write([]byte("220 vendor\r\n"))
			if answer(c, r, "250 vendor", "250 ok", "250 ok", "354 go") {
				r.ReadString('\n') // one line of the message, then drop
				c.(*net.TCPConn).SetLinger(0)
			}
		}, "DATA", 451, "4.4.2"},
		{"closed before the final reply", func(c net.Conn, r *bufio.Reader) {
			c.Write([]byte("220 vendor\r\n"))
			if answer(c, r, "250 vendor", "250 ok", "250 ok", "354 go") {
				for {
					l, err := r.ReadString('\n')
					if err != nil || l == ".\r\n" {
						return
					}
				}
			}
		}, "DATA", 451, "4.4.2"},
		{"421 at end of data", func(c net.Conn, r *bufio.Reader) {
			c.Write([]byte("220 vendor\r\n"))
			if answer(c, r, "250 vendor", "250 ok", "250 ok", "354 go") {
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						c.Write([]byte("421 4.3.0 lost the message, sorry\r\n"))
						return
					}
				}
			}
		}, "DATA", 451, "vendor answered end of data: 421 lost the message"},
		{"silent after DATA", func(c net.Conn, r *bufio.Reader) {
			c.Write([]byte("220 vendor\r\n"))
			if answer(c, r, "250 vendor", "250 ok", "250 ok", "354 go") {
				time.Sleep(5 * time.Second)
			}
		}, "DATA", 451, "timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := faultyHop(t, tt.script)
			h := newHarness(t, func(c *relay.Config) {
				c.Vendors[0].Address = addr
				c.Vendors[0].CommandTimeout = time.Second
				c.Vendors[0].FinalTimeout = time.Second
			})
			c := dial(t, h.relay.TenantAddr())
			if tt.stage == "MAIL" {
				if text := c.cmd(tt.wantCode, "MAIL FROM:<a@contoso.com>"); !strings.Contains(text, tt.wantText) {
					t.Errorf("MAIL reply %q lacks %q", text, tt.wantText)
				}
				c.cmd(250, "NOOP") // the relay keeps the client's connection
				return
			}
			c.cmd(250, "MAIL FROM:<a@contoso.com>")
			c.cmd(250, "RCPT TO:<b@fabrikam.example>")
			c.cmd(354, "DATA")
			c.write(msg + ".\r\n")
			if text := c.expect(tt.wantCode); !strings.Contains(text, tt.wantText) {
				t.Errorf("DATA reply %q lacks %q", text, tt.wantText)
			}
		})
	}
}
