package relay_test

import (
	"net"
	"strings"
	"testing"
	"time"
)

// A health check that connects to an SMTP port and closes (or resets) at
// once is no misdeed: it leaves no warning in the log.
func TestBareProbeIsQuiet(t *testing.T) {
	h := newHarness(t, nil)
	for _, reset := range []bool{false, true} {
		c, err := net.Dial("tcp", h.relay.TenantAddr())
		if err != nil {
			t.Fatal(err)
		}
		if reset {
			c.(*net.TCPConn).SetLinger(0) // close with RST
		}
		c.Close()
	}
	time.Sleep(300 * time.Millisecond)
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			t.Errorf("a bare probe was logged: %s", line)
		}
	}
}
