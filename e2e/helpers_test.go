package e2e

// Helpers shared by the end-to-end tests: the fake tenant and vendors, the
// relay in-process and as the real binary, the two stores, the messages, and
// header look-ups. Every helper gives the test its own listeners (port 0, or
// freeAddr), temporary directories and Redis key prefix, so that tests may
// run in parallel; what it starts is stopped when the test ends.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// corpusDir holds the real Exchange Online messages of the shared corpus,
// relative to this package's directory.
const corpusDir = "../../shared/corpus/exchange"

// maxHeaderBytes bounds every header block these tests read.
const maxHeaderBytes = 1 << 20

// corpusMessages returns the real Exchange Online messages of the shared
// corpus, or none when it is not there.
func corpusMessages(t *testing.T) []relaytest.Message {
	t.Helper()
	if _, err := os.Stat(corpusDir); err != nil {
		t.Logf("no Exchange corpus at %s (%v): generated messages only", corpusDir, err)
		return nil
	}
	msgs, err := relaytest.LoadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d real Exchange messages from %s", len(msgs), corpusDir)
	return msgs
}

// stores runs f once against real Redis, under a key prefix of its own, and
// once against the embedded store, in a temporary directory: the two at
// once.
func stores(t *testing.T, f func(t *testing.T, st store.Store)) {
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		f(t, storetest.Redis(t))
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		f(t, storetest.Bolt(t))
	})
}

// freeAddr returns a loopback address no one listens on, for a server that
// must be told its address before another one starts.
//
// Only for the listeners of a relay run as a separate process, which cannot
// take a listener; fake servers take one from reserve.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// reserve binds a loopback port for a fake server that a relay must know
// before the server starts; the server takes the listener
// (relaytest.VendorConfig.Listener), so no other process can take the port
// in between, as it could after freeAddr.
func reserve(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// startTenant starts a recording fake tenant on a free loopback port.
func startTenant(t *testing.T) *relaytest.Tenant {
	t.Helper()
	return looptest.Recorder(t, nil)
}

// startVendor starts a fake vendor.
func startVendor(t *testing.T, cfg relaytest.VendorConfig) *relaytest.Vendor {
	t.Helper()
	v, err := relaytest.NewVendor(cfg)
	return started(t, v, err)
}

// server is what a fake tenant and a fake vendor have in common.
type server interface {
	Start() error
	Close() error
}

// started fails the test if s could not be made (err), starts it, and
// closes it when the test ends.
func started[S server](t *testing.T, s S, err error) S {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// hop is a next hop spoken to without TLS, as everything on loopback is.
var hop = looptest.Hop

// startRelay starts the relay in-process on cfg (looptest.Config's
// defaults, with what the test set on it) and stops it when the test ends.
func startRelay(t *testing.T, cfg relay.Config) *relay.Relay {
	t.Helper()
	cfg.Hostname = "relay.e2e.test"
	return looptest.Start(t, cfg)
}

// readHeader reads the top-level header block of a message.
func readHeader(data []byte) (*headers.Header, error) {
	h, _, err := headers.ReadHeader(bytes.NewReader(data), maxHeaderBytes)
	return h, err
}

// readMessageID returns the message's Message-ID.
func readMessageID(data []byte) (string, error) {
	h, err := readHeader(data)
	if err != nil {
		return "", err
	}
	return h.MessageID(), nil
}

// messageID returns the message's Message-ID, failing the test when its
// header cannot be read.
func messageID(t *testing.T, data []byte) string {
	t.Helper()
	h, err := readHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	return h.MessageID()
}

// headerValue returns the value of the first field called name in the
// message's header, "" when there is none.
func headerValue(data []byte, name string) string {
	h, err := readHeader(data)
	if err != nil {
		return ""
	}
	return h.Get(name)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// buildRelay builds the relay binary from the module root (the parent of
// this package's directory) into a temporary directory.
func buildRelay(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "recallrelay")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/recallrelay")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/recallrelay: %v\n%s", err, out)
	}
	return bin
}

// startRelayProcess runs the relay binary bin on the configuration config,
// written to a file in a temporary directory, and waits until both of its
// listeners, tenantListen and returnListen, greet. The signing key k1 comes
// from the environment, as in production; no other RECALLRELAY_ variable
// of this process's environment reaches the relay (RECALLRELAY_REDIS_URL
// would move it to another Redis than the test's). The relay's log goes to
// relay.log beside the configuration. The relay is stopped with SIGTERM when
// the test ends.
func startRelayProcess(t *testing.T, bin, config, tenantListen, returnListen string) *relayProcess {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "recallrelay.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	key := "base64:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	p := &relayProcess{
		bin: bin, config: path, logPath: filepath.Join(dir, "relay.log"),
		env: append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "RECALLRELAY_") }),
			"RECALLRELAY_KEY_K1="+key),
		tenantAddr: tenantListen, returnAddr: returnListen,
	}
	if err := p.start(); err != nil {
		t.Fatalf("relay: %v\nlog:\n%s", err, p.tail(40))
	}
	t.Cleanup(func() {
		if err := p.stop(10 * time.Second); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return p
}

// relayProcess runs the relay binary; its standard error (JSON log lines)
// is appended to logPath across restarts.
type relayProcess struct {
	bin, config, logPath   string
	env                    []string
	tenantAddr, returnAddr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// start starts the relay and waits until both listeners greet.
func (p *relayProcess) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("relay already running")
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(p.bin, "serve", "--config", p.config, "--grace", "5s")
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range []string{p.tenantAddr, p.returnAddr} {
		for {
			err := greets(addr)
			if err == nil {
				break
			}
			select {
			case <-done:
				return fmt.Errorf("relay exited before %s answered: %v", addr, cmd.ProcessState)
			default:
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				<-done
				return fmt.Errorf("relay: %s did not answer within 15s: %w", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	p.cmd, p.done = cmd, done
	return nil
}

// signal sends the running relay sig.
func (p *relayProcess) signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("relay not running")
	}
	return p.cmd.Process.Signal(sig)
}

// kill ends the relay with SIGKILL: no chance to finish anything.
func (p *relayProcess) kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("relay not running")
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill relay: %w", err)
	}
	<-p.done
	p.cmd = nil
	return nil
}

// stop ends the relay with SIGTERM, killing it after wait.
func (p *relayProcess) stop(wait time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	defer func() { p.cmd = nil }()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("relay did not stop within %v of SIGTERM; killed", wait)
	}
}

// tail returns the last n lines of the relay's log.
func (p *relayProcess) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// greets connects to an SMTP server and reads its 220 greeting.
func greets(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return nil
}

// adminGet requests path from the admin listener at addr and returns the
// status and the body.
func adminGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitAdmin polls path on the admin listener at addr until it answers
// want, and returns the body; it fails the test after 15 seconds.
func waitAdmin(t *testing.T, addr, path string, want int) string {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := adminGet(t, addr, path)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d %q, want %d", path, code, body, want)
		}
	}
}
