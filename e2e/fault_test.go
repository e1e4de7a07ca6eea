package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// Fault suite knobs. The environment may override the message count and the
// seed; everything else is fixed so that a run is bounded in time and count.
const (
	faultMessagesEnv = "RECALLRELAY_FAULT_MESSAGES"
	faultSeedEnv     = "RECALLRELAY_FAULT_SEED"

	faultMessages      = 2000
	faultMessagesShort = 200
	faultDefaultSeed   = 1

	// Overall caps: the run must converge (every sender done, the vendor's
	// queue empty, the tenant quiet) within them.
	faultBudget      = 6 * time.Minute
	faultBudgetShort = 2 * time.Minute

	faultSenders        = 6
	faultSenderAttempts = 20
	faultVendorAttempts = 30
	faultBackoff        = 100 * time.Millisecond
	faultClientTimeout  = 20 * time.Second // above the relay's final_timeout, so the relay's verdict arrives

	faultResetFraction  = 0.04 // connections reset by each chaos proxy
	faultTenant451Ratio = 0.05 // transactions the tenant refuses with 451
	faultMaxInjections  = 200  // bound on relay kills and Redis outages
	faultRogueMessages  = 50
	faultQuietPeriod    = 2 * time.Second // the tenant gets nothing new for this long: settled

	refHeader   = "X-RecallRelay-Ref"
	rogueHeader = "X-Fault-Rogue"
)

// Under faults — TCP resets on every hop, a tenant that refuses 5% of
// transactions, a vendor that refuses every message once and drops every
// send-back once in the middle of DATA, Redis stopped or killed and
// restarted, the relay SIGKILLed and restarted — nothing the relay
// acknowledged is lost and nothing is laundered:
//
//   - every message the sender saw accepted reaches the tenant, for every
//     recipient, with its recall identity (Message-ID, CrossPremises,
//     X-OrganizationHeadersPreserved, TNEF correlator, recall markers)
//     byte-identical to what the tenant sent;
//   - no sender gives up;
//   - every duplicate delivery is accounted for by an attempt whose outcome
//     the client could not know (a connection lost or the relay killed
//     between the final dot and the reply), which SMTP can only resolve by
//     sending again;
//   - no message forged on the vendor side (no reference, a tampered
//     signature, a real reference replayed for other recipients) reaches
//     the tenant, and nothing reaches it that the tenant did not send.
//
// The relay runs as the real binary with a configuration file, on a Redis
// that persists to an fsynced append-only file, like production.
func TestFaultsLoseNothingLaunderNothing(t *testing.T) {
	n, budget := faultMessages, faultBudget
	if testing.Short() {
		n, budget = faultMessagesShort, faultBudgetShort
	}
	if v := os.Getenv(faultMessagesEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number of messages", faultMessagesEnv, v)
		}
	}
	seed := uint64(faultDefaultSeed)
	if v := os.Getenv(faultSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", faultSeedEnv, v)
		}
	}
	t.Logf("seed %d (set %s to vary it), %d generated messages, budget %v", seed, faultSeedEnv, n, budget)

	msgs := faultMessageSet(t, n, seed)
	bin := buildRelay(t)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	h := startFaultHarness(t, bin, seed)

	// The Exchange side: several connections at once, retrying 4xx and lost
	// connections, bouncing on 5xx.
	results := make([]relaytest.Result, len(msgs))
	took := make([]time.Duration, len(msgs))
	sender := relaytest.Sender{
		Addr: h.relay.tenantAddr, Helo: "exchange.fault.test",
		MaxAttempts: faultSenderAttempts, Backoff: faultBackoff, Timeout: faultClientTimeout,
	}
	sendDone := make(chan struct{})
	var senders sync.WaitGroup
	work := make(chan int)
	for range faultSenders {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for i := range work {
				t0 := time.Now()
				results[i] = sender.Send(ctx, msgs[i].Message)
				took[i] = time.Since(t0)
			}
		}()
	}
	go func() {
		defer close(work)
		for i := range msgs {
			select {
			case work <- i:
			case <-ctx.Done():
				return
			}
		}
	}()

	var background sync.WaitGroup
	background.Add(2)
	go func() { defer background.Done(); h.injectFaults(ctx, seed, sendDone) }()
	var rogues []rogueResult
	go func() { defer background.Done(); rogues = h.sendRogues(ctx, seed) }()

	senders.Wait()
	sendTime := time.Since(start)
	close(sendDone)
	background.Wait()
	converged := h.settle(ctx)
	wall := time.Since(start)

	rep := analyze(msgs, results, h, rogues)
	for i := range msgs {
		if took[i] > took[rep.slowest] {
			rep.slowest = i
		}
	}
	rep.slowestText = fmt.Sprintf("%s, %v over %d attempts: %q", msgs[rep.slowest].Name,
		took[rep.slowest].Round(time.Millisecond), results[rep.slowest].Attempts, results[rep.slowest].Replies)
	rep.seed, rep.wall, rep.sendTime = seed, wall, sendTime
	t.Log("fault suite summary\n" + rep.table(h))
	t.Logf("slowest message: %s", rep.slowestText)
	if !converged.ok {
		t.Errorf("the run did not converge within %v: %s", budget, converged.why)
	}
	rep.check(t, h)
	if t.Failed() {
		t.Logf("relay log %s, last lines:\n%s", h.relay.logPath, h.relay.tail(80))
	}
}

// faultMessage is a message to send, with its Message-ID.
type faultMessage struct {
	relaytest.Message
	id string
}

// faultMessageSet returns n generated messages, from as many seeds as it
// takes, plus one copy of each real Exchange message of the shared corpus
// when it is there. It fails the test unless every Message-ID is present and
// unique: deliveries are matched to messages by the Message-ID the relay
// restores.
func faultMessageSet(t *testing.T, n int, seed uint64) []faultMessage {
	t.Helper()
	var out []faultMessage
	for batch := 0; len(out) < n; batch++ {
		for _, m := range relaytest.Generate(relaytest.GenerateOptions{Seed: int64(seed)*1_000_000 + int64(batch)}) {
			if len(out) == n {
				break
			}
			m.Name = fmt.Sprintf("b%03d-%s", batch, m.Name)
			out = append(out, faultMessage{Message: m})
		}
	}
	dir := filepath.Join("..", "..", "shared", "corpus", "exchange")
	if _, err := os.Stat(dir); err != nil {
		t.Logf("no Exchange corpus at %s (%v): generated messages only", dir, err)
	} else {
		corpus, err := relaytest.LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range corpus {
			out = append(out, faultMessage{Message: m})
		}
		t.Logf("%d real Exchange messages from %s", len(corpus), dir)
	}
	seen := make(map[string]string, len(out))
	for i := range out {
		id, err := readMessageID(out[i].Data)
		if err != nil || id == "" {
			t.Fatalf("%s: no Message-ID to match its deliveries by (%v)", out[i].Name, err)
		}
		if other, dup := seen[id]; dup {
			t.Fatalf("%s and %s share Message-ID %s: deliveries could not be told apart", other, out[i].Name, id)
		}
		seen[id] = out[i].Name
		out[i].id = id
	}
	return out
}

func readMessageID(data []byte) (string, error) {
	h, _, err := headers.ReadHeader(bytes.NewReader(data), 1<<20)
	if err != nil {
		return "", err
	}
	return h.MessageID(), nil
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

// faultHarness is the loop under test and its fault injectors:
//
//	sender → relay(tenant leg) → chaos → vendor → chaos → relay(return leg) → chaos → tenant
//	                           (both legs on a Redis with AOF, restarted at times)
type faultHarness struct {
	t      *testing.T
	redis  *storetest.PersistentRedisServer
	relay  *relayProcess
	tenant *relaytest.Tenant
	vendor *relaytest.Vendor

	toVendor, toReturn, toTenant *chaosProxy

	tenant451s      atomic.Int64
	vendorTempfails *tempfailFirstByMessageID

	redisStops, redisKills, relayKills atomic.Int64
}

func startFaultHarness(t *testing.T, bin string, seed uint64) *faultHarness {
	t.Helper()
	h := &faultHarness{t: t}
	h.redis = storetest.StartPersistentRedisServer(t)

	var err error
	h.tenant, err = relaytest.NewTenant(relaytest.TenantConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 0x7E4A47))
	h.tenant.SetDataHook(func(*relaytest.Delivery) *smtp.SMTPError {
		mu.Lock()
		refuse := rng.Float64() < faultTenant451Ratio
		mu.Unlock()
		if !refuse {
			return nil
		}
		h.tenant451s.Add(1)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Tenant busy (fault injection)"}
	})
	if err := h.tenant.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.tenant.Close() })

	tenantListen, returnListen := freeAddr(t), freeAddr(t)
	for returnListen == tenantListen {
		returnListen = freeAddr(t)
	}
	h.toTenant = startChaosProxy(t, chaosConfig{Name: "relay→tenant", Target: h.tenant.Addr(),
		ResetFraction: faultResetFraction, MaxUpBytes: 16 << 10, MaxDownBytes: 512, Seed: seed + 1})
	h.toReturn = startChaosProxy(t, chaosConfig{Name: "vendor→relay", Target: returnListen,
		ResetFraction: faultResetFraction, MaxUpBytes: 16 << 10, MaxDownBytes: 512, Seed: seed + 2})

	// relaytest's tempfail-first remembers messages by a hash of their
	// bytes; through the relay every attempt carries a fresh reference and
	// Received field, so it would refuse every attempt forever. This one
	// remembers them by Message-ID, which the relay does not touch on the
	// way out.
	h.vendorTempfails = &tempfailFirstByMessageID{seen: make(map[string]bool)}
	behaviors := append([]relaytest.Behavior{h.vendorTempfails},
		relaytest.MustParseBehaviors("drop-mid-data,strip-ms-headers,rewrite-message-id,footer-text")...)
	h.vendor, err = relaytest.NewVendor(relaytest.VendorConfig{
		Listen: "127.0.0.1:0", ReturnAddr: h.toReturn.Addr(), Behaviors: behaviors,
		MaxAttempts: faultVendorAttempts, Backoff: faultBackoff, Timeout: faultClientTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.vendor.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.vendor.Close() })
	h.toVendor = startChaosProxy(t, chaosConfig{Name: "relay→vendor", Target: h.vendor.Addr(),
		ResetFraction: faultResetFraction, MaxUpBytes: 16 << 10, MaxDownBytes: 512, Seed: seed + 3})

	dir := t.TempDir()
	cfg := filepath.Join(dir, "recallrelay.yaml")
	if err := os.WriteFile(cfg, []byte(relayConfigYAML(h.redis.URL(), tenantListen, returnListen,
		h.toVendor.Addr(), h.toTenant.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	key := "base64:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	h.relay = &relayProcess{
		bin: bin, config: cfg, logPath: filepath.Join(dir, "relay.log"),
		env:        append(os.Environ(), "RECALLRELAY_KEY_K1="+key),
		tenantAddr: tenantListen, returnAddr: returnListen,
	}
	if err := h.relay.start(); err != nil {
		t.Fatalf("relay: %v\nlog:\n%s", err, h.relay.tail(40))
	}
	t.Cleanup(func() {
		if err := h.relay.stop(10 * time.Second); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return h
}

// relayConfigYAML is the relay's configuration: both next hops through chaos
// proxies without TLS, short timeouts, Redis, and the defaults that matter
// here spelled out (refuse returns without a record, suppress duplicates).
func relayConfigYAML(redisURL, tenantListen, returnListen, vendorAddr, tenantAddr string) string {
	return fmt.Sprintf(`hostname: relay.fault.test
log:
  level: info
  format: json
store:
  redis:
    url: %q
    key_prefix: rrfault
    timeout: 1s
  record_ttl: 1h
reference:
  signing_key: k1
  keys:
    - id: k1   # secret from RECALLRELAY_KEY_K1
listeners:
  tenant:
    listen: %q
    command_timeout: 30s
    data_timeout: 10s
  return:
    listen: %q
    command_timeout: 30s
    data_timeout: 10s
vendors:
  - name: vendor
    address: %q
    helo: relay.fault.test
    starttls: "off"
    connect_timeout: 2s
    command_timeout: 5s
    data_timeout: 10s
    final_timeout: 10s
default_vendor: vendor
tenant:
  address: %q
  helo: relay.fault.test
  starttls: "off"
  # Shorter than towards the vendor: a delivery claim left by a killed
  # relay lapses after the sum of these (17s), and the vendor's retries
  # wait for it.
  connect_timeout: 2s
  command_timeout: 5s
  data_timeout: 5s
  final_timeout: 5s
return_without_record: reject
duplicates: suppress
`, redisURL, tenantListen, returnListen, vendorAddr, tenantAddr)
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

// injectFaults stops or kills Redis, or kills the relay, every 2–4 s, and
// brings it back. It returns once sending is done (sendDone closed) and each
// kind was injected at least once, or when ctx ends; it leaves Redis and the
// relay running.
func (h *faultHarness) injectFaults(ctx context.Context, seed uint64, sendDone <-chan struct{}) {
	rng := rand.New(rand.NewPCG(seed, 0xFA17))
	for range faultMaxInjections {
		redisDone := h.redisStops.Load()+h.redisKills.Load() > 0
		relayDone := h.relayKills.Load() > 0
		var finished <-chan struct{}
		if redisDone && relayDone {
			finished = sendDone
		}
		timer := time.NewTimer(time.Duration(2000+rng.IntN(2000)) * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-finished:
			timer.Stop()
			return
		case <-timer.C:
		}
		toRelay := rng.IntN(2) == 0
		if !relayDone && redisDone {
			toRelay = true
		} else if relayDone && !redisDone {
			toRelay = false
		}
		var err error
		if toRelay {
			err = h.restartRelay(time.Duration(500+rng.IntN(500)) * time.Millisecond)
		} else {
			err = h.restartRedis(rng.IntN(2) == 0, time.Second+time.Duration(rng.IntN(2000))*time.Millisecond)
		}
		if err != nil {
			h.t.Errorf("fault injection: %v", err)
			return
		}
	}
}

func (h *faultHarness) restartRelay(down time.Duration) error {
	if err := h.relay.kill(); err != nil {
		return err
	}
	h.relayKills.Add(1)
	time.Sleep(down)
	var err error
	for range 3 { // the port may still be held for a moment
		if err = h.relay.start(); err == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("relay did not come back after SIGKILL: %w\nlog:\n%s", err, h.relay.tail(20))
}

func (h *faultHarness) restartRedis(kill bool, down time.Duration) error {
	halt, count := h.redis.Stop, &h.redisStops
	if kill {
		halt, count = h.redis.Kill, &h.redisKills
	}
	if err := halt(); err != nil {
		return err
	}
	count.Add(1)
	time.Sleep(down)
	var err error
	for range 3 {
		if err = h.redis.Start(); err == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("redis did not come back: %w", err)
}

// convergence says whether the loop settled.
type convergence struct {
	ok  bool
	why string
}

// settle waits for the vendor's queue to drain and then for the tenant to
// receive nothing new for faultQuietPeriod, within ctx.
func (h *faultHarness) settle(ctx context.Context) convergence {
	deadline, _ := ctx.Deadline()
	if err := h.vendor.WaitIdle(time.Until(deadline)); err != nil {
		return convergence{why: err.Error()}
	}
	last, since := len(h.tenant.Deliveries()), time.Now()
	for time.Since(since) < faultQuietPeriod {
		select {
		case <-ctx.Done():
			return convergence{why: "the tenant was still receiving mail"}
		case <-time.After(200 * time.Millisecond):
		}
		if n := len(h.tenant.Deliveries()); n != last {
			last, since = n, time.Now()
		}
	}
	return convergence{ok: true}
}

// tempfailFirstByMessageID is a vendor behaviour: it answers 451 to the first
// DATA of every Message-ID and accepts its retries.
type tempfailFirstByMessageID struct {
	mu    sync.Mutex
	seen  map[string]bool
	count int
}

func (*tempfailFirstByMessageID) Name() string { return "tempfail-first-by-message-id" }

func (b *tempfailFirstByMessageID) Receive(d *relaytest.Delivery) *smtp.SMTPError {
	id, err := readMessageID(d.Data)
	if err != nil || id == "" {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[id] {
		return nil
	}
	b.seen[id] = true
	b.count++
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Temporary failure, please retry (vendor fault injection)"}
}

func (b *tempfailFirstByMessageID) Count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// Kinds of forged messages a rogue vendor sends straight to the return leg.
const (
	rogueNoReference   = iota // a message the relay never saw, claiming to be internal
	rogueBadSignature         // a real message and envelope, one byte of the reference's MAC flipped
	rogueOtherRcpts           // a real reference replayed for other recipients
	rogueAddedRcpt            // a real reference replayed with one recipient added
	rogueRealMessageID        // no reference, a real Message-ID, another recipient (the fallback lookup)
	rogueKinds
)

var rogueKindNames = [rogueKinds]string{"no-reference", "bad-signature", "replay-other-rcpts", "replay-added-rcpt", "real-message-id-other-rcpt"}

// rogueResult is what the relay answered a forged message.
type rogueResult struct {
	kind int
	name string
	res  relaytest.Result
}

// sendRogues sends faultRogueMessages forged messages, all claiming
// X-MS-Exchange-CrossPremises-AuthAs and X-MS-Exchange-Organization-AuthAs
// Internal, straight to the relay's return leg while the run goes on. The
// replayed references are taken from what the vendor received.
func (h *faultHarness) sendRogues(ctx context.Context, seed uint64) []rogueResult {
	rng := rand.New(rand.NewPCG(seed, 0x0606E))
	s := relaytest.Sender{Addr: h.relay.returnAddr, Helo: "rogue.fault.test", MaxAttempts: 10, Backoff: 200 * time.Millisecond, Timeout: faultClientTimeout}
	var out []rogueResult
	for i := range faultRogueMessages {
		var real []relaytest.Delivery
		for len(real) == 0 {
			real = h.vendor.Received()
			if len(real) == 0 {
				select {
				case <-ctx.Done():
					return out
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		kind := i % rogueKinds
		m, err := forge(kind, i, seed, real[rng.IntN(len(real))])
		if err != nil {
			h.t.Errorf("forge rogue message %d: %v", i, err)
			return out
		}
		out = append(out, rogueResult{kind: kind, name: m.Name, res: s.Send(ctx, m)})
		select {
		case <-ctx.Done():
			return out
		case <-time.After(time.Duration(100+rng.IntN(200)) * time.Millisecond):
		}
	}
	return out
}

// forge builds forged message i of the given kind from a real message the
// vendor received (with the relay's reference in it).
func forge(kind, i int, seed uint64, real relaytest.Delivery) (relaytest.Message, error) {
	name := fmt.Sprintf("rogue-%02d-%s", i, rogueKindNames[kind])
	stranger := fmt.Sprintf("rogue-target-%02d@contoso.com", i)
	forged := []string{
		fmt.Sprintf("%s: %d", rogueHeader, i),
		"X-MS-Exchange-Organization-AuthAs: Internal",
		"X-MS-Exchange-Organization-AuthSource: DM6PR11MB4316.namprd11.prod.outlook.com",
		"X-MS-Exchange-CrossPremises-AuthAs: Internal",
		"X-MS-Exchange-CrossPremises-AuthSource: DM6PR11MB4316.namprd11.prod.outlook.com",
	}
	if kind == rogueNoReference {
		data := strings.Join(append(forged,
			"X-OrganizationHeadersPreserved: DM6PR11MB4316.namprd11.prod.outlook.com",
			"From: Mallory <mallory@contoso.com>",
			"To: <"+stranger+">",
			fmt.Sprintf("Subject: Forged internal message %d", i),
			"Date: Mon, 3 Mar 2025 09:00:00 +0000",
			fmt.Sprintf("Message-ID: <rogue-%d-%d@contoso.com>", seed, i),
			"MIME-Version: 1.0",
			"Content-Type: text/plain; charset=us-ascii",
			"",
			"Please wire the money today.",
			""), "\r\n")
		return relaytest.Message{Name: name, From: "mallory@contoso.com", To: []string{stranger}, Data: []byte(data)}, nil
	}

	hd, body, err := headers.ReadHeader(bytes.NewReader(real.Data), 1<<20)
	if err != nil {
		return relaytest.Message{}, err
	}
	rest, err := io.ReadAll(body)
	if err != nil {
		return relaytest.Message{}, err
	}
	var buf bytes.Buffer
	for _, f := range forged {
		buf.WriteString(f + "\r\n")
	}
	for _, f := range hd.Fields() {
		if !strings.EqualFold(f.Name, refHeader) {
			buf.Write(f.Raw)
			continue
		}
		switch kind {
		case rogueRealMessageID:
			// dropped: the relay must fall back to Message-ID
		case rogueBadSignature:
			v, err := flipSignature(hd.Get(refHeader))
			if err != nil {
				return relaytest.Message{}, err
			}
			buf.WriteString(refHeader + ": " + v + "\r\n")
		default:
			buf.Write(f.Raw)
		}
	}
	buf.WriteString("\r\n")
	buf.Write(rest)

	to := []string{stranger}
	switch kind {
	case rogueBadSignature:
		to = real.Rcpts
	case rogueAddedRcpt:
		to = append(slices.Clone(real.Rcpts), stranger)
	}
	return relaytest.Message{Name: name, From: real.MailFrom, To: to, UTF8: real.UTF8, Data: buf.Bytes()}, nil
}

// flipSignature returns the reference value with one byte of its MAC
// inverted (decoded and re-encoded: flipping a base64 character could touch
// only padding bits).
func flipSignature(v string) (string, error) {
	i := strings.LastIndex(v, "s=")
	if i < 0 {
		return "", fmt.Errorf("reference %q has no signature", v)
	}
	mac, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(v[i+2:]))
	if err != nil || len(mac) == 0 {
		return "", fmt.Errorf("reference %q: signature: %v", v, err)
	}
	mac[len(mac)/2] ^= 0xff
	return v[:i+2] + base64.RawURLEncoding.EncodeToString(mac), nil
}

// faultReport is the outcome of a run.
type faultReport struct {
	messages, recipients int
	attempts             int
	vendorCopies         int // messages the vendor accepted (all copies)
	returnAttempts       int
	returnDrops          int // send-back attempts the vendor cut off mid-DATA
	deliveries           int

	lost       []string // "message → rcpt"
	laundered  []string // deliveries that carry what the tenant did not send
	damaged    []string // deliveries whose recall identity (other than CrossPremises) changed
	gaveUp     []string // messages the sender gave up on, with their replies
	duplicates int
	dupDetail  []string // one line per duplicated (message, rcpt)
	unexplain  []string // duplicates not accounted for by an ambiguous attempt
	vendorLost []string // send-backs the vendor gave up on

	rogues         []rogueResult
	rogueAccepted  []string
	rogueNot5xx    []string
	rogueDelivered []string // forged messages that reached the tenant without organization fields

	seed           uint64
	wall, sendTime time.Duration
	slowest        int    // index of the message that took the sender longest
	slowestText    string // its name, time, attempts and replies
}

// analyze matches every tenant delivery to the message it came from and
// checks every message against what was delivered.
func analyze(msgs []faultMessage, results []relaytest.Result, h *faultHarness, rogues []rogueResult) *faultReport {
	r := &faultReport{messages: len(msgs), rogues: rogues}
	byID := make(map[string]int, len(msgs))
	for i, m := range msgs {
		byID[m.id] = i
		r.recipients += len(m.To)
		r.attempts += results[i].Attempts
	}

	// The vendor's copies and send-backs, tied to messages by the reference
	// the relay stamped (the vendor rewrites Message-ID on the way back).
	copies := make([]int, len(msgs))
	ambReturn := make([]int, len(msgs))
	byRef := map[string]int{}
	for _, d := range h.vendor.Received() {
		r.vendorCopies++
		id, _ := readMessageID(d.Data)
		i, ok := byID[id]
		if !ok {
			continue
		}
		copies[i]++
		if ref := headerValue(d.Data, refHeader); ref != "" {
			byRef[ref] = i
		}
	}
	for _, o := range h.vendor.Returned() {
		r.returnAttempts += o.Result.Attempts
		for _, rep := range o.Result.Replies {
			if strings.Contains(rep, "fault injection") {
				r.returnDrops++
			}
		}
		i, ok := byRef[headerValue(o.Delivery.Data, refHeader)]
		if !ok {
			continue
		}
		ambReturn[i] += countAmbiguous(o.Result.Replies)
		if !o.Result.Accepted {
			r.vendorLost = append(r.vendorLost, fmt.Sprintf("%s → %v after %d attempts: %q", msgs[i].Name, o.Delivery.Rcpts, o.Result.Attempts, o.Result.Replies))
		}
	}

	// Every delivery: whose is it, and is it what the tenant sent?
	type key struct {
		msg  int
		rcpt string
	}
	delivered := map[key]int{}
	for _, d := range h.tenant.Deliveries() {
		r.deliveries++
		desc := fmt.Sprintf("delivery from %s to %v at %s", d.MailFrom, d.Rcpts, d.At.Format("15:04:05.000"))
		if v := headerValue(d.Data, rogueHeader); v != "" {
			if org := orgFields(d.Data); len(org) > 0 {
				r.laundered = append(r.laundered, fmt.Sprintf("%s: forged message %s reached the tenant carrying %q", desc, v, org))
			} else {
				r.rogueDelivered = append(r.rogueDelivered, fmt.Sprintf("%s: forged message %s reached the tenant (without organization fields)", desc, v))
			}
			continue
		}
		id, err := readMessageID(d.Data)
		i, ok := byID[id]
		if err != nil || !ok {
			r.laundered = append(r.laundered, fmt.Sprintf("%s: Message-ID %q matches no message sent (%v)", desc, id, err))
			continue
		}
		m := msgs[i]
		desc = m.Name + ": " + desc
		if !strings.EqualFold(d.MailFrom, m.From) {
			r.laundered = append(r.laundered, fmt.Sprintf("%s: MAIL FROM %s, sent as %s", desc, d.MailFrom, m.From))
		}
		for _, rc := range d.Rcpts {
			if !slices.ContainsFunc(m.To, func(s string) bool { return strings.EqualFold(s, rc) }) {
				r.laundered = append(r.laundered, fmt.Sprintf("%s: recipient %s was not a recipient of the message", desc, rc))
			}
			delivered[key{i, strings.ToLower(rc)}]++
		}
		if bad := organizationFieldsAdded(m.Data, d.Data); len(bad) > 0 {
			r.laundered = append(r.laundered, fmt.Sprintf("%s: carries organization fields the tenant did not send: %q", desc, bad))
		}
		if id := relaytest.CompareIdentity(m.Data, d.Data); !id.Intact {
			if touchesOrgHeaders(id) {
				r.laundered = append(r.laundered, fmt.Sprintf("%s: CrossPremises/organization fields differ from what the tenant sent: %s", desc, id))
			} else {
				r.damaged = append(r.damaged, fmt.Sprintf("%s: recall identity %s", desc, id))
			}
		}
	}

	// Every message: accepted ⇒ delivered to every recipient not refused.
	for i, m := range msgs {
		res := results[i]
		switch {
		case res.Attempts == 0:
			r.gaveUp = append(r.gaveUp, m.Name+": never sent (out of time)")
		case !res.Accepted:
			r.gaveUp = append(r.gaveUp, fmt.Sprintf("%s after %d attempts: %v; replies %q", m.Name, res.Attempts, res.Err, res.Replies))
		}
		ambTenant := countAmbiguous(res.Replies)
		for _, rc := range m.To {
			if _, refused := res.RejectedRcpts[rc]; refused {
				continue
			}
			n := delivered[key{i, strings.ToLower(rc)}]
			if res.Accepted && n == 0 {
				r.lost = append(r.lost, fmt.Sprintf("%s → %s (sender: %d attempts, %q; vendor copies %d)", m.Name, rc, res.Attempts, res.Replies, copies[i]))
			}
			if n <= 1 {
				continue
			}
			r.duplicates += n - 1
			line := fmt.Sprintf("%s → %s: %d deliveries; sender attempts %d (%d ambiguous), vendor copies %d, ambiguous send-backs %d",
				m.Name, rc, n, res.Attempts, ambTenant, copies[i], ambReturn[i])
			r.dupDetail = append(r.dupDetail, line)
			if res.Attempts < 2 || n-1 > ambTenant+ambReturn[i] {
				r.unexplain = append(r.unexplain, line+fmt.Sprintf("; sender replies %q", res.Replies))
			}
		}
	}

	for _, rg := range rogues {
		last := ""
		if len(rg.res.Replies) > 0 {
			last = rg.res.Replies[len(rg.res.Replies)-1]
		}
		switch {
		case rg.res.Accepted:
			r.rogueAccepted = append(r.rogueAccepted, fmt.Sprintf("%s: accepted: %q", rg.name, rg.res.Replies))
		case !strings.HasPrefix(last, "550 5.7.1"):
			r.rogueNot5xx = append(r.rogueNot5xx, fmt.Sprintf("%s: %q", rg.name, rg.res.Replies))
		}
	}
	return r
}

// countAmbiguous counts the attempts whose outcome the client could not
// know: the connection broke after the message data was sent (a client-side
// error at the DATA stage other than the test's own mid-DATA cut), or the
// relay reported that its next hop's connection failed or timed out at end
// of data. Only such an attempt can have been committed downstream although
// the client did not see a 250; a refusal the next hop spoke ("answered end
// of data: 451"), a failure before the final dot or a cut inside DATA
// cannot.
func countAmbiguous(replies []string) int {
	n := 0
	for _, rep := range replies {
		switch {
		case strings.HasPrefix(rep, "250"):
		case len(rep) >= 3 && rep[0] >= '2' && rep[0] <= '5' && rep[1] >= '0' && rep[1] <= '9':
			if strings.Contains(rep, " at end of data") && !strings.Contains(rep, "answered end of data") {
				n++
			}
		case strings.Contains(rep, "fault injection"):
		case strings.HasPrefix(rep, "data:"):
			n++
		}
	}
	return n
}

// headerValue returns the value of the first field called name in the
// message's header, "" when there is none.
func headerValue(data []byte, name string) string {
	h, _, err := headers.ReadHeader(bytes.NewReader(data), 1<<20)
	if err != nil {
		return ""
	}
	return h.Get(name)
}

// orgFields returns the raw fields of the message's header that make
// Exchange treat mail as internal: X-MS-Exchange-CrossPremises-*,
// X-MS-Exchange-Organization-* and X-OrganizationHeadersPreserved. A header
// that cannot be read yields a marker entry, so that it is never taken for
// a clean one.
func orgFields(data []byte) []string {
	h, _, err := headers.ReadHeader(bytes.NewReader(data), 1<<20)
	if err != nil {
		return []string{"(unreadable header: " + err.Error() + ")"}
	}
	var out []string
	for _, f := range h.Fields() {
		if hasPrefixFold(f.Name, "X-MS-Exchange-CrossPremises-") || hasPrefixFold(f.Name, "X-MS-Exchange-Organization-") ||
			strings.EqualFold(f.Name, "X-OrganizationHeadersPreserved") {
			out = append(out, string(f.Raw))
		}
	}
	return out
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// organizationFieldsAdded returns the X-MS-Exchange-Organization-* fields of
// delivered that sent does not carry byte for byte. (CompareIdentity covers
// CrossPremises and X-OrganizationHeadersPreserved.)
func organizationFieldsAdded(sent, delivered []byte) []string {
	have := orgFields(sent)
	var bad []string
	for _, f := range orgFields(delivered) {
		if hasPrefixFold(f, "X-MS-Exchange-Organization-") && !slices.Contains(have, f) {
			bad = append(bad, strings.TrimSpace(f))
		}
	}
	return bad
}

// touchesOrgHeaders reports whether an identity difference concerns the
// fields that make Exchange treat mail as internal.
func touchesOrgHeaders(r relaytest.IdentityResult) bool {
	for _, list := range [][]string{r.Missing, r.Changed, r.Added} {
		for _, name := range list {
			if strings.HasPrefix(name, "x-ms-exchange-crosspremises-") || name == "x-organizationheaderspreserved" {
				return true
			}
		}
	}
	return false
}

// table renders the summary.
func (r *faultReport) table(h *faultHarness) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	row("seed", r.seed)
	row("messages", r.messages)
	row("recipients (message × rcpt)", r.recipients)
	row("sender attempts total", r.attempts)
	row("vendor copies accepted", r.vendorCopies)
	row("vendor send-back attempts", r.returnAttempts)
	row("tenant deliveries", r.deliveries)
	row("faults: redis restarts (SIGTERM / SIGKILL)", fmt.Sprintf("%d (%d / %d)", h.redisStops.Load()+h.redisKills.Load(), h.redisStops.Load(), h.redisKills.Load()))
	row("faults: relay SIGKILLs", h.relayKills.Load())
	row("faults: proxy resets (→vendor / →return / →tenant)", fmt.Sprintf("%d (%d / %d / %d) of %d connections",
		h.toVendor.Resets()+h.toReturn.Resets()+h.toTenant.Resets(), h.toVendor.Resets(), h.toReturn.Resets(), h.toTenant.Resets(),
		h.toVendor.Connections()+h.toReturn.Connections()+h.toTenant.Connections()))
	row("faults: tenant 451s", h.tenant451s.Load())
	row("faults: vendor tempfails", h.vendorTempfails.Count())
	row("faults: vendor send-backs cut mid-DATA", r.returnDrops)
	row("rogue messages sent / refused 550 5.7.1", fmt.Sprintf("%d / %d", len(r.rogues), len(r.rogues)-len(r.rogueAccepted)-len(r.rogueNot5xx)))
	row("LOST (accepted, never delivered)", len(r.lost))
	row("LAUNDERED", len(r.laundered))
	row("forged messages delivered", len(r.rogueDelivered))
	row("recall identity damaged", len(r.damaged))
	row("duplicates (unexplained)", fmt.Sprintf("%d (%d)", r.duplicates, len(r.unexplain)))
	row("gave up", len(r.gaveUp))
	row("vendor send-backs given up", len(r.vendorLost))
	row("sending time", r.sendTime.Round(100*time.Millisecond))
	row("wall time", r.wall.Round(100*time.Millisecond))
	w.Flush()
	return b.String()
}

// check asserts the outcome, listing every offending message.
func (r *faultReport) check(t *testing.T, h *faultHarness) {
	t.Helper()
	report := func(what string, items []string) {
		if len(items) == 0 {
			return
		}
		sort.Strings(items)
		const show = 40
		total, more := len(items), ""
		if total > show {
			items, more = items[:show], fmt.Sprintf("\n  … and %d more", len(items)-show)
		}
		t.Errorf("%s: %d\n  %s%s", what, total, strings.Join(items, "\n  "), more)
	}
	report("LOST: accepted by the relay, never delivered to the tenant", r.lost)
	report("LAUNDERED: delivered carrying what the tenant did not send", r.laundered)
	report("recall identity damaged", r.damaged)
	report("the sender gave up (every reply shown)", r.gaveUp)
	report("duplicates not accounted for by an ambiguous attempt", r.unexplain)
	report("forged messages delivered to the tenant (return_without_record is reject)", r.rogueDelivered)
	report("forged messages accepted by the return leg", r.rogueAccepted)
	report("forged messages not refused with 550 5.7.1", r.rogueNot5xx)
	if len(r.dupDetail) > 0 {
		sort.Strings(r.dupDetail)
		t.Logf("duplicates and the attempts that account for them:\n  %s", strings.Join(r.dupDetail, "\n  "))
	}
	if len(r.vendorLost) > 0 {
		sort.Strings(r.vendorLost)
		t.Logf("send-backs the vendor gave up on (the message was delivered by another copy, or is counted as lost above):\n  %s", strings.Join(r.vendorLost, "\n  "))
	}
	byKind := map[string]string{}
	for _, rg := range r.rogues {
		if k := rogueKindNames[rg.kind]; byKind[k] == "" && len(rg.res.Replies) > 0 {
			byKind[k] = rg.res.Replies[len(rg.res.Replies)-1]
		}
	}
	var kinds []string
	for k, reply := range byKind {
		kinds = append(kinds, fmt.Sprintf("%-27s %s", k, reply))
	}
	sort.Strings(kinds)
	t.Logf("what the return leg answered forged messages, one per kind:\n  %s", strings.Join(kinds, "\n  "))
	if len(r.rogues) != faultRogueMessages {
		t.Errorf("only %d of %d forged messages were sent", len(r.rogues), faultRogueMessages)
	}

	// A run in which a fault never happened proves nothing about it.
	for _, f := range []struct {
		name string
		n    int64
	}{
		{"relay SIGKILLs", h.relayKills.Load()},
		{"redis restarts", h.redisStops.Load() + h.redisKills.Load()},
		{"resets relay→vendor", h.toVendor.Resets()},
		{"resets vendor→relay", h.toReturn.Resets()},
		{"resets relay→tenant", h.toTenant.Resets()},
		{"tenant 451s", h.tenant451s.Load()},
		{"vendor tempfails", int64(h.vendorTempfails.Count())},
		{"vendor mid-DATA cuts", int64(r.returnDrops)},
	} {
		if f.n == 0 {
			t.Errorf("no %s were injected: the run proves nothing about them", f.name)
		}
	}
}
