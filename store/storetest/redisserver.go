package storetest

import (
	"bufio"
	"bytes"
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
	*redisProcess
	t testing.TB
}

// StartRedisServer starts a redis-server from PATH on a free 127.0.0.1 port
// with "--save ” --appendonly no" and waits until it answers PING. The
// server is stopped when the test ends. If redis-server is not installed, the
// test is skipped (failed under CI=true).
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	s := &RedisServer{redisProcess: startRedisProcess(t, "--appendonly", "no"), t: t}
	t.Cleanup(s.Stop)
	return s
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
	if err := s.halt(syscall.SIGTERM); err != nil {
		s.t.Logf("storetest: %v", err)
	}
}

// redisProcess is one redis-server on 127.0.0.1: the process behind
// RedisServer and PersistentRedisServer. Its methods are safe for
// concurrent use.
type redisProcess struct {
	bin  string
	dir  string
	port int
	conf string   // a configuration file read before the arguments, or ""
	args []string // beyond those of every test server

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// startRedisProcess starts redis-server from PATH with args on a free port,
// its files in a directory of t.TempDir(). If redis-server is not
// installed, the test is skipped (failed under CI=true).
func startRedisProcess(t testing.TB, args ...string) *redisProcess {
	t.Helper()
	return startRedisProcessOn(t, freePort, "", args...)
}

// startRedisProcessOn is startRedisProcess on a port that pick chooses,
// with the configuration file conf ("" for none) read before args.
func startRedisProcessOn(t testing.TB, pick func() (int, error), conf string, args ...string) *redisProcess {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, fmt.Sprintf("redis-server not installed: %v", err))
	}
	p := &redisProcess{bin: bin, dir: t.TempDir(), conf: conf, args: args}
	// Another process may take the free port before redis-server binds it:
	// try a few ports.
	for attempt := 0; ; attempt++ {
		if p.port, err = pick(); err != nil {
			t.Fatalf("storetest: %v", err)
		}
		if err = p.start(); err == nil {
			return p
		}
		if attempt == 2 {
			t.Fatalf("storetest: %v", err)
		}
	}
}

// Addr returns the server's "host:port".
func (p *redisProcess) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// URL returns a redis URL for database 0 of the server.
func (p *redisProcess) URL() string {
	return "redis://" + p.Addr() + "/0"
}

func (p *redisProcess) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// start runs the server on its port, no snapshots, and waits until it
// answers PING (with an append-only file, only once the file is loaded).
func (p *redisProcess) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("redis-server already running")
	}
	out := &lockedBuffer{}
	var args []string
	if p.conf != "" {
		args = append(args, p.conf)
	}
	args = append(args, "--port", strconv.Itoa(p.port), "--bind", "127.0.0.1", "--save", "",
		"--dir", p.dir, "--daemonize", "no", "--loglevel", "warning")
	args = append(args, p.args...)
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := waitReady(p.Addr(), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis-server on %s: %w; output:\n%s", p.Addr(), err, out.String())
	}
	p.cmd, p.done = cmd, done
	return nil
}

// halt sends the server sig and waits for it to exit, killing it if it
// takes longer than serverStopTimeout. It does nothing if the server is not
// running.
func (p *redisProcess) halt(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	defer func() { p.cmd = nil }()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal redis-server on %s: %w", p.Addr(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(serverStopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("redis-server on %s did not exit within %v of %v; killed", p.Addr(), serverStopTimeout, sig)
	}
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
