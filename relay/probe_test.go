package relay_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/store/storetest"
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

// A relay shut down right after it started stops: go-smtp's Serve may not
// have registered its listener yet when Shutdown comes.
func TestShutdownRightAfterStart(t *testing.T) {
	st := storetest.Bolt(t)
	for i := 0; i < 50; i++ {
		cfg := looptest.Config(t, "127.0.0.1:9", looptest.Hop("vendor", "127.0.0.1:9"))
		cfg.Store = st
		r, err := relay.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Shutdown(context.Background()) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Shutdown right after Start did not return (round %d)", i)
		}
	}
}
