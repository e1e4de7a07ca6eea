package relay

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestContinuationLine(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"250-PIPELINING\r\n", true},
		{"250-Hello client.test\r\n", true},
		{"250 SIZE 150000000\r\n", false}, // the last line
		{"250-PIPELINING", false},         // no line end: part of a longer write
		{"250-a\r\n250-b\r\n", false},     // more than one line
		{"25-x\r\n", false},               // not three digits
		{"2a0-x\r\n", false},              // not a digit
		{"\x17\x03\x03-abc\r\n", false},   // a TLS record
		{"354 Go ahead\r\n", false},       // a one-line reply
		{"250-\r\n", true},                // empty text
		{"250-x\n", false},                // bare LF
		{"", false},
	}
	for _, tt := range tests {
		if got := continuationLine([]byte(tt.in)); got != tt.want {
			t.Errorf("continuationLine(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// countingConn counts the writes that reach a real connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	client.SetDeadline(time.Now().Add(10 * time.Second))
	return client, server
}

// A multi-line reply written a line at a time, as go-smtp's server writes
// it, leaves the relay in one write, byte for byte; anything else is
// written as it comes.
func TestGuardedConnHoldsMultilineReply(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   int64 // writes on the connection
	}{
		{"EHLO reply", []string{"250-Hello client.test\r\n", "250-PIPELINING\r\n", "250-8BITMIME\r\n", "250-CHUNKING\r\n", "250 SIZE 1000\r\n"}, 1},
		{"one-line replies", []string{"250 2.0.0 Roger\r\n", "354 Go ahead\r\n"}, 2},
		{"TLS records", []string{"\x16\x03\x01\x00\x05hello", "\x17\x03\x03\x00\x02ab"}, 2},
		{"a line split by a full buffer", []string{"250-", "PIPELINING\r\n", "250 x\r\n"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			cc := &countingConn{Conn: server}
			gc := &guardedConn{Conn: cc}
			var all []byte
			for _, w := range tt.writes {
				n, err := gc.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
				all = append(all, w...)
			}
			got := make([]byte, len(all))
			if _, err := io.ReadFull(client, got); err != nil {
				t.Fatalf("read %d bytes: %v", len(all), err)
			}
			if !bytes.Equal(got, all) {
				t.Errorf("peer read %q, want %q", got, all)
			}
			if n := cc.writes.Load(); n != tt.want {
				t.Errorf("%d writes on the connection, want %d", n, tt.want)
			}
		})
	}
}

// A reply line held back goes out with the next write even when that write
// closes the connection (closeAfter), so nothing held is lost.
func TestGuardedConnFlushesHeldOnClose(t *testing.T) {
	client, server := tcpPair(t)
	gc := &guardedConn{Conn: server}
	gc.Write([]byte("250-first\r\n"))
	gc.closeAfter.Store(true)
	gc.Write([]byte("421 4.3.2 Shutting down\r\n"))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if want := "250-first\r\n421 4.3.2 Shutting down\r\n"; string(got) != want {
		t.Errorf("peer read %q, want %q", got, want)
	}
}
