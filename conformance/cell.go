package conformance

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relaytest"
)

// maxHeaderBytes bounds the header blocks read to fingerprint and classify
// messages. Exchange headers run to tens of kilobytes; this is generous.
const maxHeaderBytes = 4 << 20

// pollInterval is how often a cell looks at the tenant's deliveries while it
// waits for them to settle.
const pollInterval = 25 * time.Millisecond

// messageSet is the messages of a run with what is known about them before
// anything is sent.
type messageSet struct {
	msgs   []relaytest.Message
	byFP   map[string]int // fingerprint → index
	rcpts  [][]string     // per message, lower-case recipients without duplicates
	recall []RecallKind   // per message
	// dkim signed the messages as the tenant; nil leaves DKIM unchecked.
	dkim *dkimKey
}

// newMessageSet indexes msgs by header fingerprint and fails when two share
// one or one has none: a delivery could not be told apart from another.
func newMessageSet(msgs []relaytest.Message) (*messageSet, error) {
	s := &messageSet{msgs: msgs, byFP: make(map[string]int, len(msgs))}
	var problems []string
	for i, m := range msgs {
		fp, err := fingerprint(m.Data)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", m.Name, err))
		case fp == "":
			problems = append(problems, fmt.Sprintf("%s: no Date, From, To, Cc or Subject to fingerprint", m.Name))
		default:
			if j, dup := s.byFP[fp]; dup {
				problems = append(problems, fmt.Sprintf("%s and %s have the same fingerprint (Date/From/To/Cc/Subject)", msgs[j].Name, m.Name))
			} else {
				s.byFP[fp] = i
			}
		}
		var rc []string
		seen := map[string]bool{}
		for _, r := range m.To {
			r = strings.ToLower(r)
			if !seen[r] {
				seen[r] = true
				rc = append(rc, r)
			}
		}
		if len(rc) == 0 {
			problems = append(problems, fmt.Sprintf("%s: no recipients", m.Name))
		}
		s.rcpts = append(s.rcpts, rc)
		s.recall = append(s.recall, ClassifyRecall(m.Data))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("conformance: deliveries cannot be matched to the messages:\n  %s", strings.Join(problems, "\n  "))
	}
	return s, nil
}

// fingerprint returns headers.Header.Fingerprint of a CRLF message.
func fingerprint(data []byte) (string, error) {
	h, _, err := headers.ReadHeader(bytes.NewReader(data), maxHeaderBytes)
	if err != nil {
		return "", fmt.Errorf("read header: %w", err)
	}
	return h.Fingerprint(), nil
}

// cellServers is what one cell started; close stops it all.
type cellServers struct {
	tenant   *relaytest.Tenant
	vendor   *relaytest.Vendor // nil with an external vendor
	sendAddr string            // where the tenant's sender delivers
	// sendHelo and sendTLS are the tenant's sender's EHLO name and
	// STARTTLS configuration: Config.HELO and Config.VendorTLS when it
	// delivers straight to an external vendor, the defaults otherwise.
	sendHelo string
	sendTLS  *tls.Config
	stop     []func()
}

func (s *cellServers) close() {
	for i := len(s.stop) - 1; i >= 0; i-- {
		s.stop[i]()
	}
	s.stop = nil
}

// startCell starts the tenant, the fake vendor (unless external) and, on the
// relay path, the relay, wired as p requires.
func startCell(cfg Config, cs Case, p Path) (s *cellServers, err error) {
	s = &cellServers{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	tc := relaytest.TenantConfig{Listen: relaytest.DefaultListen}
	if cfg.VendorAddr != "" && p == PathDirect {
		tc.Listen, tc.TLSConfig = cfg.ReturnListen, cfg.ReturnTLS
	}
	if s.tenant, err = relaytest.NewTenant(tc); err != nil {
		return nil, fmt.Errorf("tenant: %w", err)
	}
	if err = s.tenant.Start(); err != nil {
		return nil, fmt.Errorf("tenant: %w", err)
	}
	s.stop = append(s.stop, func() { s.tenant.Close() })

	vendorAddr := cfg.VendorAddr
	vendorListen := relaytest.DefaultListen
	returnAddr := s.tenant.Addr()
	if p == PathRelay {
		if vendorAddr == "" {
			if vendorAddr, err = freeLoopbackAddr(); err != nil {
				return nil, fmt.Errorf("vendor address: %w", err)
			}
			vendorListen = vendorAddr
		}
		r, err := cfg.StartRelay(RelayConfig{
			VendorAddr: vendorAddr, TenantAddr: s.tenant.Addr(), ReturnListen: cfg.ReturnListen,
			VendorTLS: cfg.VendorTLS, HELO: cfg.HELO, ReturnTLS: cfg.ReturnTLS,
		})
		if err != nil {
			return nil, fmt.Errorf("start relay: %w", err)
		}
		if r.Stop != nil {
			s.stop = append(s.stop, r.Stop)
		}
		returnAddr = r.ReturnAddr
		s.sendAddr = r.TenantAddr
	}
	if cfg.VendorAddr == "" {
		bs, err := relaytest.ParseBehaviors(cs.Behaviors) // fresh: some behaviours keep state
		if err != nil {
			return nil, err
		}
		s.vendor, err = relaytest.NewVendor(relaytest.VendorConfig{
			Name:       "fake-vendor",
			Listen:     vendorListen,
			ReturnAddr: returnAddr,
			Behaviors:  bs,
			Backoff:    cfg.Backoff,
			Timeout:    min(relaytest.DefaultTimeout, cfg.CellTimeout),
		})
		if err != nil {
			return nil, fmt.Errorf("vendor: %w", err)
		}
		if err = s.vendor.Start(); err != nil {
			return nil, fmt.Errorf("vendor: %w", err)
		}
		s.stop = append(s.stop, func() { s.vendor.Close() })
		if p == PathDirect {
			s.sendAddr = s.vendor.Addr()
		}
	} else if p == PathDirect {
		s.sendAddr, s.sendHelo, s.sendTLS = cfg.VendorAddr, cfg.HELO, cfg.VendorTLS
	}
	return s, nil
}

// runCell runs one cell and evaluates it.
func runCell(outer context.Context, cfg Config, set *messageSet, cs Case, p Path) (*CellResult, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(outer, cfg.CellTimeout)
	defer cancel()
	s, err := startCell(cfg, cs, p)
	if err != nil {
		return nil, err
	}
	defer s.close()

	results := sendAll(ctx, relaytest.Sender{
		Addr:      s.sendAddr,
		Helo:      s.sendHelo,
		TLSConfig: s.sendTLS,
		Backoff:   cfg.Backoff,
		Timeout:   min(relaytest.DefaultTimeout, cfg.CellTimeout),
	}, set.msgs, cfg.Senders)
	if err := outer.Err(); err != nil {
		return nil, err
	}

	deadline, _ := ctx.Deadline()
	incomplete := ""
	if s.vendor != nil {
		if err := s.vendor.WaitIdle(time.Until(deadline)); err != nil {
			incomplete = err.Error()
		}
	} else {
		want := 0
		for i, r := range results {
			if r.Accepted {
				want += len(set.rcpts[i]) - len(r.RejectedRcpts)
			}
		}
		if !waitCount(ctx, s.tenant, want) {
			incomplete = fmt.Sprintf("deliveries for fewer than the %d accepted recipients within %v", want, cfg.CellTimeout)
		}
	}
	if !settle(ctx, s.tenant, cfg.Settle) && incomplete == "" {
		incomplete = fmt.Sprintf("deliveries still arriving after %v", cfg.CellTimeout)
	}
	if err := outer.Err(); err != nil {
		return nil, err
	}
	// Stop everything before reading the results, so that nothing is
	// still being recorded.
	s.close()

	res := evaluate(set, results, s.tenant.Deliveries())
	switch {
	case s.vendor != nil:
		var rc RecallCount
		for _, d := range s.vendor.Received() {
			rc.add(ClassifyRecall(d.Data))
		}
		res.RecallToVendor = &rc
	case p == PathDirect:
		// The tenant's sender delivered straight to the external vendor:
		// what it accepted is what the vendor received.
		var rc RecallCount
		for i, r := range results {
			if r.Accepted {
				rc.add(set.recall[i])
			}
		}
		res.RecallToVendor = &rc
	}
	if incomplete != "" {
		res.Incomplete = incomplete
		res.Damage.Summary = "incomplete (" + incomplete + "); " + res.Damage.Summary
	}
	res.DurationSeconds = time.Since(start).Seconds()
	return res, nil
}

// sendAll sends every message with n concurrent senders and returns the
// results in message order.
func sendAll(ctx context.Context, snd relaytest.Sender, msgs []relaytest.Message, n int) []relaytest.Result {
	results := make([]relaytest.Result, len(msgs))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(n, len(msgs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results[i] = snd.Send(ctx, msgs[i])
			}
		}()
	}
	for i := range msgs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return results
}

// waitCount waits until the tenant's deliveries name at least n recipients
// in all; false when ctx ends first.
func waitCount(ctx context.Context, t *relaytest.Tenant, n int) bool {
	tk := time.NewTicker(pollInterval)
	defer tk.Stop()
	for {
		got := 0
		for _, d := range t.Deliveries() {
			got += len(d.Rcpts)
		}
		if got >= n {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tk.C:
		}
	}
}

// settle waits until the tenant has recorded no new delivery for quiet;
// false when ctx ends first.
func settle(ctx context.Context, t *relaytest.Tenant, quiet time.Duration) bool {
	tk := time.NewTicker(pollInterval)
	defer tk.Stop()
	last, since := len(t.Deliveries()), time.Now()
	for time.Since(since) < quiet {
		select {
		case <-ctx.Done():
			return false
		case <-tk.C:
		}
		if n := len(t.Deliveries()); n != last {
			last, since = n, time.Now()
		}
	}
	return true
}

// evaluate matches deliveries to the sent messages and computes a cell's
// result.
func evaluate(set *messageSet, results []relaytest.Result, deliveries []relaytest.Delivery) *CellResult {
	res := &CellResult{Sent: len(set.msgs), Deliveries: len(deliveries)}
	type acc struct {
		count   map[string]int
		id      identity
		matched int
		dkimBad bool // some delivery's tenant signature did not verify
	}
	accs := make([]acc, len(set.msgs))
	for i := range accs {
		accs[i].count = map[string]int{}
		accs[i].id.missing, accs[i].id.changed, accs[i].id.added = map[string]bool{}, map[string]bool{}, map[string]bool{}
	}
	for _, d := range deliveries {
		fp, err := fingerprint(d.Data)
		i, ok := set.byFP[fp]
		if err != nil || !ok {
			res.Unmatched++
			continue
		}
		a := &accs[i]
		a.matched++
		known := false
		for _, r := range d.Rcpts {
			r = strings.ToLower(r)
			if slices.Contains(set.rcpts[i], r) {
				a.count[r]++
				known = true
			} else {
				res.ExtraRecipients++
			}
		}
		if !known {
			continue
		}
		a.id.add(relaytest.CompareIdentity(set.msgs[i].Data, d.Data))
		if set.dkim != nil && !set.dkim.verifies(d.Data) {
			a.dkimBad = true
		}
	}

	dmg := newDamageCounter()
	for i, m := range set.msgs {
		a := &accs[i]
		mr := MessageResult{
			Name:     m.Name,
			Kind:     m.Kind,
			Recall:   set.recall[i],
			Accepted: results[i].Accepted,
		}
		if results[i].Err != nil {
			mr.SendError = results[i].Err.Error()
		}
		if !mr.Accepted {
			res.NotAccepted++
		}
		once := true
		for _, r := range set.rcpts[i] {
			n := a.count[r]
			mr.Recipients = append(mr.Recipients, RecipientResult{Address: r, Deliveries: n})
			res.Recipients++
			switch {
			case n == 0:
				res.Lost++
				once = false
			case n == 1:
				res.DeliveredOnce++
			default:
				res.Duplicated++
				once = false
			}
		}
		delivered := a.id.n > 0
		mr.IdentityIntact = delivered && a.id.intact()
		mr.Missing, mr.Changed, mr.Added = sortedKeys(a.id.missing), sortedKeys(a.id.changed), sortedKeys(a.id.added)
		mr.TNEFLost, mr.TNEFChanged = a.id.tnefLost, a.id.tnefChanged
		switch {
		case !delivered:
			mr.Identity = "not delivered"
		default:
			mr.Identity = relaytest.IdentityResult{
				Intact: mr.IdentityIntact, Missing: mr.Missing, Changed: mr.Changed, Added: mr.Added,
				TNEFLost: mr.TNEFLost, TNEFChanged: mr.TNEFChanged,
			}.String()
		}
		if mr.IdentityIntact {
			res.IdentityIntact++
		}
		mr.DKIMIntact = delivered && set.dkim != nil && !a.dkimBad
		if mr.DKIMIntact {
			res.DKIMIntact++
		}
		mr.Survived = once && mr.IdentityIntact
		if mr.Survived {
			res.Survived++
		}
		if delivered {
			dmg.add(&mr)
		}
		res.Messages = append(res.Messages, mr)
	}
	if res.Sent > 0 {
		res.SurvivalPercent = 100 * float64(res.Survived) / float64(res.Sent)
	}
	res.Damage = dmg.damage(res)
	return res
}

// identity accumulates CompareIdentity results over every delivery of one
// message.
type identity struct {
	n                       int
	missing, changed, added map[string]bool
	tnefLost, tnefChanged   bool
}

func (id *identity) add(r relaytest.IdentityResult) {
	id.n++
	for _, f := range r.Missing {
		id.missing[f] = true
	}
	for _, f := range r.Changed {
		id.changed[f] = true
	}
	for _, f := range r.Added {
		id.added[f] = true
	}
	id.tnefLost = id.tnefLost || r.TNEFLost
	id.tnefChanged = id.tnefChanged || r.TNEFChanged
}

func (id *identity) intact() bool {
	return len(id.missing) == 0 && len(id.changed) == 0 && len(id.added) == 0 && !id.tnefLost && !id.tnefChanged
}

func sortedKeys(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}
