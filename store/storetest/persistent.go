package storetest

import (
	"syscall"
	"testing"
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
	*redisProcess
}

// StartPersistentRedisServer starts a redis-server from PATH on a free
// 127.0.0.1 port with its append-only file in a directory of t.TempDir(), and
// waits until it answers PING. The server is stopped when the test ends. If
// redis-server is not installed, the test is skipped (failed under CI=true).
func StartPersistentRedisServer(t testing.TB) *PersistentRedisServer {
	t.Helper()
	s := &PersistentRedisServer{startRedisProcess(t, "--appendonly", "yes", "--appendfsync", "always")}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("storetest: %v", err)
		}
	})
	return s
}

// Dir returns the directory holding the server's append-only file.
func (s *PersistentRedisServer) Dir() string { return s.dir }

// Running reports whether the server process is up.
func (s *PersistentRedisServer) Running() bool { return s.running() }

// Start starts the server on its port, loading what its append-only file
// holds, and waits until it answers PING (which it does only once the file is
// loaded). It fails if the server is already running or does not come up.
func (s *PersistentRedisServer) Start() error { return s.start() }

// Stop sends the server SIGTERM and waits for it to exit, killing it if it
// takes longer than a few seconds. It does nothing if the server is not
// running.
func (s *PersistentRedisServer) Stop() error { return s.halt(syscall.SIGTERM) }

// Kill ends the server with SIGKILL, as a crash or an OOM kill would, and
// waits for it to exit. It does nothing if the server is not running.
func (s *PersistentRedisServer) Kill() error { return s.halt(syscall.SIGKILL) }
