package storetest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PersistentRedisServer is a redis-server process owned by one test that
// keeps its data across restarts, as a production Redis with an append-only
// file does: every write is appended to the AOF in Dir and fsynced before
// Redis replies ("--appendonly yes --appendfsync always"), so that neither a
// stop nor a SIGKILL loses a write a client saw acknowledged.
//
// Unlike RedisServer, whose Start and Stop fail the test, its methods return
// errors, so that a fault-injecting goroutine may stop, kill and restart it
// while the test runs. All methods are safe for concurrent use.
type PersistentRedisServer struct {
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *lockedBuffer // output of the current process
}

// StartPersistentRedisServer starts a redis-server from PATH on a free
// 127.0.0.1 port with its append-only file in a directory of t.TempDir(), and
// waits until it answers PING. The server is stopped when the test ends. If
// redis-server is not installed, the test is skipped (failed under CI=true).
func StartPersistentRedisServer(t testing.TB) *PersistentRedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, fmt.Sprintf("redis-server not installed: %v", err))
	}
	s := &PersistentRedisServer{bin: bin, dir: t.TempDir()}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("storetest: %v", err)
		}
	})
	// Another process may take the free port before redis-server binds it:
	// try a few ports.
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("storetest: %v", err)
		}
		if err = s.Start(); err == nil {
			return s
		}
		if attempt == 2 {
			t.Fatalf("storetest: %v", err)
		}
	}
}

// Addr returns the server's "host:port".
func (s *PersistentRedisServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns a redis URL for database 0 of the server.
func (s *PersistentRedisServer) URL() string {
	return "redis://" + s.Addr() + "/0"
}

// Dir returns the directory holding the server's append-only file.
func (s *PersistentRedisServer) Dir() string { return s.dir }

// Running reports whether the server process is up.
func (s *PersistentRedisServer) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Start starts the server on its port, loading what its append-only file
// holds, and waits until it answers PING (which it does only once the file is
// loaded). It fails if the server is already running or does not come up.
func (s *PersistentRedisServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("redis-server already running")
	}
	cmd, done, out, err := launchRedis(s.bin, s.port, s.dir, "--appendonly", "yes", "--appendfsync", "always")
	if err != nil {
		return err
	}
	s.cmd, s.done, s.out = cmd, done, out
	return nil
}

// Stop sends the server SIGTERM and waits for it to exit, killing it if it
// takes longer than a few seconds. It does nothing if the server is not
// running.
func (s *PersistentRedisServer) Stop() error {
	return s.halt(syscall.SIGTERM)
}

// Kill ends the server with SIGKILL, as a crash or an OOM kill would, and
// waits for it to exit. It does nothing if the server is not running.
func (s *PersistentRedisServer) Kill() error {
	return s.halt(syscall.SIGKILL)
}

func (s *PersistentRedisServer) halt(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd = nil }()
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal redis-server on %s: %w", s.Addr(), err)
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(serverStopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("redis-server on %s did not exit within %v of %v; killed", s.Addr(), serverStopTimeout, sig)
	}
}
