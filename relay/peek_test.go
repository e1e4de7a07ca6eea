package relay

import (
	"io"
	"net"
	"testing"
	"time"
)

// peekAlive tells a silent open connection from one the peer wrote to
// unasked or closed, without consuming anything.
func TestPeekAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (client, server net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	settle := func() { time.Sleep(50 * time.Millisecond) } // let the bytes or the FIN arrive

	c, _ := pair()
	if !peekAlive(c) {
		t.Error("a silent open connection is not alive")
	}
	c, s := pair()
	s.Write([]byte("421 4.4.2 idle timeout\r\n"))
	settle()
	if peekAlive(c) {
		t.Error("a connection with an unasked reply waiting is alive")
	}
	b := make([]byte, 3)
	if n, _ := io.ReadFull(c, b); n != 3 || string(b) != "421" {
		t.Errorf("peekAlive consumed what was waiting: read %q after it", b[:n])
	}
	c, s = pair()
	s.Close()
	settle()
	if peekAlive(c) {
		t.Error("a connection the peer closed is alive")
	}
}
