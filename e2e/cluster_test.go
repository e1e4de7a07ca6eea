package e2e

// Scale-out on Redis: two relay instances share one Redis deployment (a
// Cluster of three masters with a replica each, or a master and a replica
// behind three sentinels), one recording on its tenant leg and the other
// restoring on its return leg, as behind a load balancer that sends the two
// legs of a message to different instances. Each test starts its own Redis
// processes on free loopback ports; none touches the shared Redis.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// splitLoop is tenant → relay A (tenant leg, records) → vendor → relay B
// (return leg, restores) → tenant, A and B on stores that share one Redis.
type splitLoop struct {
	tenant    *relaytest.Tenant
	recording *relay.Relay
	restoring *relay.Relay
	vendor    *relaytest.Vendor
	stA, stB  *store.Redis

	mu       sync.Mutex
	returned []relaytest.ReturnOutcome
}

// newSplitLoop starts the loop on two stores made from cfg, the vendor
// retrying a 4xx send-back every backoff up to attempts times.
func newSplitLoop(t *testing.T, cfg store.RedisConfig, attempts int, backoff time.Duration) *splitLoop {
	t.Helper()
	l := &splitLoop{tenant: startTenant(t)}
	open := func() *store.Redis {
		st, err := store.NewRedis(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	l.stA, l.stB = open(), open()
	vendorLn := reserve(t)
	vendorAddr := vendorLn.Addr().String()
	l.recording = startOneVendorRelay(t, l.stA, vendorAddr, l.tenant.Addr())
	l.restoring = startOneVendorRelay(t, l.stB, vendorAddr, l.tenant.Addr())
	l.vendor = startVendor(t, relaytest.VendorConfig{
		Listener: vendorLn, ReturnAddr: l.restoring.ReturnAddr(),
		Behaviors:   relaytest.MustParseBehaviors("strip-ms-headers,rewrite-message-id,footer-text"),
		MaxAttempts: attempts, Backoff: backoff,
		OnReturn: func(o relaytest.ReturnOutcome) {
			l.mu.Lock()
			l.returned = append(l.returned, o)
			l.mu.Unlock()
		},
	})
	return l
}

// returnOutcomes returns the vendor's finished send-backs.
func (l *splitLoop) returnOutcomes() []relaytest.ReturnOutcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]relaytest.ReturnOutcome(nil), l.returned...)
}

// clusterMessages returns the generated Exchange sets of seeds first to
// first+sets-1, twelve messages each.
func clusterMessages(first, sets int) []relaytest.Message {
	var msgs []relaytest.Message
	for s := first; s < first+sets; s++ {
		for _, m := range relaytest.Generate(relaytest.GenerateOptions{Seed: int64(s)}) {
			m.Name = fmt.Sprintf("seed%d-%s", s, m.Name)
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// checkExactlyOnce checks that the tenant has every message exactly once per
// recipient (counted by recipient and Message-ID), with its envelope and
// recall identity intact and the relay's loop marker, and nothing else.
func checkExactlyOnce(t *testing.T, tenant *relaytest.Tenant, msgs []relaytest.Message) {
	t.Helper()
	type key struct{ rcpt, mid string }
	got := map[key]int{}
	byKey := map[key]relaytest.Delivery{}
	for _, d := range tenant.Deliveries() {
		mid := messageID(t, d.Data)
		for _, rc := range d.Rcpts {
			k := key{strings.ToLower(rc), mid}
			got[k]++
			byKey[k] = d
		}
	}
	want := 0
	for _, m := range msgs {
		mid := messageID(t, m.Data)
		for _, rc := range m.To {
			want++
			k := key{strings.ToLower(rc), mid}
			switch n := got[k]; n {
			case 1:
			case 0:
				t.Errorf("%s: lost for %s", m.Name, rc)
				continue
			default:
				t.Errorf("%s: delivered %d times to %s", m.Name, n, rc)
			}
			d := byKey[k]
			if r := relaytest.CompareIdentity(m.Data, d.Data); !r.Intact {
				t.Errorf("%s: recall identity damaged: %s", m.Name, r)
			}
			if d.MailFrom != m.From {
				t.Errorf("%s: MAIL FROM %s, want %s", m.Name, d.MailFrom, m.From)
			}
		}
	}
	if len(got) != want {
		t.Errorf("tenant has %d (recipient, Message-ID) pairs, want %d", len(got), want)
	}
}

// Records made by one instance are found, restored from and claimed by the
// other, across all three masters of a Cluster: every message reaches the
// tenant exactly once per recipient with its recall identity restored.
func TestClusterTwoInstancesRoundTrip(t *testing.T) {
	t.Parallel()
	c := storetest.StartRedisCluster(t)
	l := newSplitLoop(t, c.Config("rr"), 5, 50*time.Millisecond)
	msgs := clusterMessages(1, 4)

	var wg sync.WaitGroup
	work := make(chan relaytest.Message)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := relaytest.Sender{Addr: l.recording.TenantAddr(), Backoff: 50 * time.Millisecond}
			for m := range work {
				if res := s.Send(context.Background(), m); !res.Accepted {
					t.Errorf("%s: not accepted: %v %q", m.Name, res.Err, res.Replies)
				}
			}
		}()
	}
	for _, m := range msgs {
		work <- m
	}
	close(work)
	wg.Wait()
	if _, err := l.tenant.WaitDeliveries(len(msgs), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.vendor.WaitIdle(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, l.tenant, msgs)

	// The records are spread over the masters, and every one of them came
	// back through the other instance.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	masters := map[string]int{}
	records := 0
	err := l.stA.Scan(ctx, func(rec *headers.Record) bool {
		records++
		m, _, err := c.MasterOf(ctx, l.stA.KeyPrefix()+":{"+rec.Ref+"}:rec")
		if err != nil {
			t.Error(err)
			return false
		}
		masters[m]++
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(masters) < 2 {
		t.Errorf("%d records on masters %v: the test did not spread them", records, masters)
	}
	returned := l.returnOutcomes()
	if len(returned) != records {
		t.Errorf("%d records, %d messages returned by the vendor", records, len(returned))
	}
	for _, o := range returned {
		if !o.Result.Accepted {
			t.Errorf("return leg refused %s: %q", o.Delivery.MailFrom, o.Result.Replies)
		}
	}
	t.Logf("%d messages, %d records, records per master %v", len(msgs), records, masters)
}

// failoverRun sends msgs from two goroutines through l, pacing them so that
// mail is flowing when kill runs (after a third of them), every sender
// retrying a 4xx as an MTA does until 250, a 5xx or the deadline. It then
// waits for the tenant and the vendor to settle and checks what the relay
// guarantees through a failover: a 4xx, never a 5xx, on either leg while
// the store is failing over; every message delivered, exactly once per
// recipient, restored.
//
// The failover was exercised when a leg answered 4xx or, if kill returns a
// function that waits for the store to be whole again, when a message was
// sent after the kill and before that function returned: with one master
// (Sentinel), such a message's record could only be written once the
// replica had taken over, so it waited or was refused meanwhile.
func failoverRun(t *testing.T, l *splitLoop, msgs []relaytest.Message, kill func() (recovered func() error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	results := make([]relaytest.Result, len(msgs))
	started := make([]time.Time, len(msgs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := relaytest.Sender{Addr: l.recording.TenantAddr(), MaxAttempts: 1000, Backoff: 100 * time.Millisecond}
			for i := range next {
				started[i] = time.Now()
				results[i] = s.Send(ctx, msgs[i])
			}
		}()
	}
	var killedAt time.Time
	var recoveredAt chan time.Time // nil: kill gave no way to wait
	for i := range msgs {
		if i == len(msgs)/3 {
			recovered := kill()
			killedAt = time.Now()
			if recovered != nil {
				recoveredAt = make(chan time.Time, 1)
				go func() {
					if err := recovered(); err != nil {
						t.Errorf("store did not recover: %v", err)
					}
					recoveredAt <- time.Now()
				}()
			}
		}
		next <- i
		time.Sleep(20 * time.Millisecond)
	}
	close(next)
	wg.Wait()

	tempfails := 0
	for i, res := range results {
		for _, r := range res.Replies {
			if strings.HasPrefix(r, "4") {
				tempfails++
			}
			if strings.HasPrefix(r, "5") {
				t.Errorf("%s: tenant leg answered %q", msgs[i].Name, r)
			}
		}
		if !res.Accepted {
			t.Errorf("%s: never accepted: %v %q", msgs[i].Name, res.Err, res.Replies)
		}
	}
	if _, err := l.tenant.WaitDeliveries(len(msgs), 60*time.Second); err != nil {
		t.Error(err)
	}
	if err := l.vendor.WaitIdle(30 * time.Second); err != nil {
		t.Error(err)
	}
	returnTempfails := 0
	for _, o := range l.returnOutcomes() {
		for _, r := range o.Result.Replies {
			if strings.HasPrefix(r, "4") {
				returnTempfails++
			}
			if strings.HasPrefix(r, "5") {
				t.Errorf("return leg answered %q to the vendor for %s→%v", r, o.Delivery.MailFrom, o.Delivery.Rcpts)
			}
		}
		if !o.Result.Accepted {
			t.Errorf("return leg never accepted %s→%v: %v %q", o.Delivery.MailFrom, o.Delivery.Rcpts, o.Result.Err, o.Result.Replies)
		}
	}
	checkExactlyOnce(t, l.tenant, msgs)
	// Messages sent between the kill and the store's recovery (see above).
	inWindow := 0
	if recoveredAt != nil {
		rec := <-recoveredAt
		for _, at := range started {
			if at.After(killedAt) && at.Before(rec) {
				inWindow++
			}
		}
	}
	t.Logf("%d messages; tempfails during the failover: %d on the tenant leg, %d on the return leg; %d sent while the store was failing over", len(msgs), tempfails, returnTempfails, inWindow)
	if tempfails+returnTempfails == 0 && inWindow == 0 {
		t.Errorf("no 4xx on either leg and no message sent while the store was failing over: the failover was not exercised")
	}
}

// A Cluster master is SIGKILLed while mail flows. Until its replica takes
// over, the relays answer 4xx on both legs for the records in its slots;
// then they carry on by themselves, and every message reaches the tenant
// exactly once per recipient.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	c := storetest.StartRedisCluster(t)
	l := newSplitLoop(t, c.Config("rr"), 1000, 100*time.Millisecond)
	msgs := clusterMessages(11, 5)
	var killed, promoted string
	failoverRun(t, l, msgs, func() func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, replicas, err := c.MasterOf(ctx, "rr:{x}:rec")
		if err != nil || len(replicas) != 1 {
			t.Fatalf("master of slot: %s %v %v", m, replicas, err)
		}
		killed, promoted = m, replicas[0]
		if err := c.Kill(m); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed master %s; its replica is %s", m, promoted)
		// Other masters keep taking writes: only a 4xx shows that the
		// kill met mail in flight.
		return nil
	})
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if m, _, err := c.MasterOf(ctx, "rr:{x}:rec"); err != nil || m != promoted {
		t.Errorf("after the failover the slot's master is %s (%v), want the promoted replica %s (killed %s)", m, err, promoted, killed)
	}
}

// The same through Sentinel: the master is SIGKILLed, the sentinels promote
// the replica, and go-redis's failover client moves to it by itself.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := storetest.StartRedisSentinel(t)
	l := newSplitLoop(t, s.Config("rr"), 1000, 100*time.Millisecond)
	msgs := clusterMessages(21, 4)
	old := s.DataAddrs()[0]
	failoverRun(t, l, msgs, func() func() error {
		if err := s.Kill(old); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed master %s", old)
		return func() error {
			_, err := s.WaitMaster(old, 30*time.Second)
			return err
		}
	})
	now, err := s.WaitMaster(old, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if now != s.DataAddrs()[1] {
		t.Errorf("new master %s, want the replica %s", now, s.DataAddrs()[1])
	}
	// The failover client writes to the new master.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := storetest.Record("after-failover", "<after@contoso.example>", "", time.Now())
	if err := l.stA.Put(ctx, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	direct, err := store.NewRedis(store.RedisConfig{Addrs: []string{now}, KeyPrefix: "rr"})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	if _, err := direct.Get(ctx, "after-failover"); err != nil {
		t.Errorf("record put through the failover client not on the new master %s: %v", now, err)
	}
}
