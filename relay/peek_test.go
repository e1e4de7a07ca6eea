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
	// notAlive waits for the bytes or the FIN to arrive: it polls
	// peekAlive until it says false, with a generous deadline.
	notAlive := func(c net.Conn) bool {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if !peekAlive(c) {
				return true
			}
		}
		return false
	}

	c, _ := pair()
	if !peekAlive(c) {
		t.Error("a silent open connection is not alive")
	}
	c, s := pair()
	s.Write([]byte("421 4.4.2 idle timeout\r\n"))
	if !notAlive(c) {
		t.Error("a connection with an unasked reply waiting is alive")
	}
	b := make([]byte, 3)
	if n, _ := io.ReadFull(c, b); n != 3 || string(b) != "421" {
		t.Errorf("peekAlive consumed what was waiting: read %q after it", b[:n])
	}
	c, s = pair()
	s.Close()
	if !notAlive(c) {
		t.Error("a connection the peer closed is alive")
	}
}
