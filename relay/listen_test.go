package relay

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// A listener refused port 25 for want of privilege says how to grant it.
func TestListenHint(t *testing.T) {
	denied := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)}
	if h := listenHint(denied); !strings.Contains(h, "CAP_NET_BIND_SERVICE") {
		t.Errorf("hint for permission denied: %q", h)
	}
	if h := listenHint(errors.New("address already in use")); h != "" {
		t.Errorf("hint for another error: %q", h)
	}
}
