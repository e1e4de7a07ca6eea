//go:build unix

package relay

import (
	"errors"
	"net"
	"syscall"
)

// peekAlive looks at a connection without reading from it (recv with
// MSG_PEEK and MSG_DONTWAIT): alive when nothing is waiting to be read
// and the peer has not closed it. A read with a deadline could not tell
// (Go refuses a read whose deadline has passed before it looks at the
// socket), and a short deadline would cost its length on every check.
func peekAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true // cannot tell; a failed MAIL is retried on a fresh connection
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Data waiting (n > 0) or the end of the stream (n == 0, no
		// error) both mean: do not use it.
		alive = errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
