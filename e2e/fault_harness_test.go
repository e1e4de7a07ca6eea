package e2e

// The fault suite's harness: the loop under test, with chaos proxies on every
// hop, a tenant that refuses some deliveries, a vendor that refuses and cuts
// off, the relay binary and its Redis with an append-only file; the senders;
// and the injector that stops, kills and restarts Redis and the relay.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store/storetest"
)

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
	for _, m := range corpusMessages(t) {
		out = append(out, faultMessage{Message: m})
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

// startFaultHarness starts the loop, the relay binary bin in it; all of it
// is stopped when the test ends. seed drives every random choice of the
// tenant and the chaos proxies.
func startFaultHarness(t *testing.T, bin string, seed uint64) *faultHarness {
	t.Helper()
	h := &faultHarness{t: t}
	h.redis = storetest.StartPersistentRedisServer(t)

	h.tenant = startTenant(t)
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
	h.vendor = startVendor(t, relaytest.VendorConfig{
		Listen: "127.0.0.1:0", ReturnAddr: h.toReturn.Addr(), Behaviors: behaviors,
		MaxAttempts: faultVendorAttempts, Backoff: faultBackoff, Timeout: faultClientTimeout,
	})
	h.toVendor = startChaosProxy(t, chaosConfig{Name: "relay→vendor", Target: h.vendor.Addr(),
		ResetFraction: faultResetFraction, MaxUpBytes: 16 << 10, MaxDownBytes: 512, Seed: seed + 3})

	h.relay = startRelayProcess(t, bin, relayConfigYAML(h.redis.URL(), tenantListen, returnListen,
		h.toVendor.Addr(), h.toTenant.Addr()), tenantListen, returnListen)
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

// sendAll sends every message from the Exchange side: faultSenders
// connections at once, retrying 4xx and lost connections, bouncing on 5xx.
// It returns what each send came to and how long it took, and stops taking
// new messages when ctx ends.
func (h *faultHarness) sendAll(ctx context.Context, msgs []faultMessage) ([]relaytest.Result, []time.Duration) {
	results := make([]relaytest.Result, len(msgs))
	took := make([]time.Duration, len(msgs))
	sender := relaytest.Sender{
		Addr: h.relay.tenantAddr, Helo: "exchange.fault.test",
		MaxAttempts: faultSenderAttempts, Backoff: faultBackoff, Timeout: faultClientTimeout,
	}
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
	senders.Wait()
	return results, took
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
