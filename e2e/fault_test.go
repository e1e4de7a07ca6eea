package e2e

// The fault suite. This file is the test and its knobs; the loop under test
// and its fault injectors are in fault_harness_test.go, the forged messages
// in fault_forgery_test.go, and the report and what it must show in
// fault_analysis_test.go.

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
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
// that persists to an fsynced append-only file, like production. That Redis
// is the test's own redis-server, never the shared one, so the test may run
// alongside the others.
func TestFaultsLoseNothingLaunderNothing(t *testing.T) {
	t.Parallel()
	n, seed, budget := faultRunSize(t)
	t.Logf("seed %d (set %s to vary it), %d generated messages, budget %v", seed, faultSeedEnv, n, budget)
	msgs := faultMessageSet(t, n, seed)
	bin := buildRelay(t)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	h := startFaultHarness(t, bin, seed)

	// While the Exchange side sends every message, the harness stops,
	// kills and restarts Redis and the relay, and a rogue vendor sends
	// forged messages to the return leg.
	sendDone := make(chan struct{})
	var background sync.WaitGroup
	var rogues []rogueResult
	background.Add(2)
	go func() { defer background.Done(); h.injectFaults(ctx, seed, sendDone) }()
	go func() { defer background.Done(); rogues = h.sendRogues(ctx, seed) }()
	results, took := h.sendAll(ctx, msgs)
	sendTime := time.Since(start)
	close(sendDone)
	background.Wait()
	converged := h.settle(ctx)
	wall := time.Since(start)

	rep := analyze(msgs, results, took, h, rogues)
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

// faultRunSize returns how many messages to generate, the seed and the time
// budget: the defaults (fewer messages and less time with -short), or what
// the environment says.
func faultRunSize(t *testing.T) (n int, seed uint64, budget time.Duration) {
	t.Helper()
	n, seed, budget = faultMessages, faultDefaultSeed, faultBudget
	if testing.Short() {
		n, budget = faultMessagesShort, faultBudgetShort
	}
	if v := os.Getenv(faultMessagesEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number of messages", faultMessagesEnv, v)
		}
	}
	if v := os.Getenv(faultSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", faultSeedEnv, v)
		}
	}
	return n, seed, budget
}
