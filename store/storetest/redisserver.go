package storetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of RedisServer.
const (
	serverReadyTimeout = 10 * time.Second
	serverStopTimeout  = 5 * time.Second
)

// RedisServer is a redis-server process owned by one test, listening on
// 127.0.0.1 without persistence. Unlike the shared Redis of Redis, a test may
// stop it and start it again to see how a store copes with an outage.
//
// Start and Stop must be called from the test's goroutine.
type RedisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartRedisServer starts a redis-server from PATH on a free 127.0.0.1 port
// with "--save ” --appendonly no" and waits until it answers PING. The
// server is stopped when the test ends. If redis-server is not installed, the
// test is skipped (failed under CI=true).
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, fmt.Sprintf("redis-server not installed: %v", err))
	}
	s := &RedisServer{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	// Another process may take the free port before redis-server binds it:
	// try a few ports.
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("storetest: %v", err)
		}
		if err = s.start(); err == nil {
			return s
		}
		if attempt == 2 {
			t.Fatalf("storetest: %v", err)
		}
	}
}

// Addr returns the server's "host:port".
func (s *RedisServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns a redis URL for database 0 of the server.
func (s *RedisServer) URL() string {
	return "redis://" + s.Addr() + "/0"
}

// Start starts the server again, on the same port, after Stop. It fails the
// test if the server does not come up.
func (s *RedisServer) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("storetest: %v", err)
	}
}

// Stop sends the server SIGTERM and waits for it to exit, killing it if it
// takes longer than a few seconds. It does nothing if the server is not
// running.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(serverStopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (s *RedisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("redis-server already running")
	}
	cmd, done, _, err := launchRedis(s.bin, s.port, s.dir, "--appendonly", "no")
	if err != nil {
		return err
	}
	s.cmd, s.done = cmd, done
	return nil
}

// launchRedis runs redis-server on 127.0.0.1:port with its files in dir,
// no snapshots and the extra arguments, and waits until it answers PING.
// done is closed when the process has exited; out collects what it prints.
func launchRedis(bin string, port int, dir string, extra ...string) (cmd *exec.Cmd, done chan struct{}, out *lockedBuffer, err error) {
	out = &lockedBuffer{}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning"}, extra...)
	cmd = exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("start redis-server: %w", err)
	}
	done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitReady(addr, done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return nil, nil, nil, fmt.Errorf("redis-server on %s: %w; output:\n%s", addr, err, out.String())
	}
	return cmd, done, out, nil
}

// waitReady waits until the server at addr answers PING, the process exits
// (done is closed) or serverReadyTimeout passes.
func waitReady(addr string, done <-chan struct{}) error {
	deadline := time.Now().Add(serverReadyTimeout)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return errors.New("exited before answering")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %v: %w", serverReadyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects a process's output; exec writes it from another
// goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
