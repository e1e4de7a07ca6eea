package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// Inspectable is a store that also implements the read side of
// store.Inspector, as Redis and Bolt do.
type Inspectable interface {
	store.Store
	store.Inspector
}

// RunInspector tests an implementation of store.Inspector against the
// contract its documentation states, in one subtest per case, as Run does
// for store.Store. open must return a new, empty store for the test it is
// given and close it when that test ends; a case may close it first. The
// options are those of Run; expiry is observed in real time.
func RunInspector(t *testing.T, open func(t *testing.T) Inspectable, opts ...Option) {
	// The options are those of Run: they set a suite.
	opt := &suite{short: DefaultShortTTL}
	for _, o := range opts {
		o(opt)
	}
	s := &inspectorSuite{open: open, short: opt.short}
	if s.short <= 0 {
		t.Fatalf("storetest: ShortTTL(%v): not positive", s.short)
	}
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"DeliveriesStates", s.deliveriesStates},
		{"DeliveriesLapsed", s.deliveriesLapsed},
		{"DeliveriesMissing", s.deliveriesMissing},
		{"TTL", s.ttl},
		{"TTLMissing", s.ttlMissing},
		{"Scan", s.scan},
		{"ScanStops", s.scanStops},
		{"ScanEmpty", s.scanEmpty},
		{"ScanCallbackUsesStore", s.scanCallbackUsesStore},
		{"ReadsChangeNothing", s.readsChangeNothing},
		{"ContextCanceled", s.contextCanceled},
		{"Closed", s.closed},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// inspectorSuite is one run of the Inspector cases.
type inspectorSuite struct {
	open  func(t *testing.T) Inspectable
	short time.Duration
}

// fresh reports whether an entry written at start with the short TTL or
// lease must still be live: less than s.short has passed.
func (s *inspectorSuite) fresh(start time.Time) bool { return time.Since(start) < s.short }

func deliveries(t *testing.T, st Inspectable, ref string) store.Deliveries {
	t.Helper()
	d, err := st.Deliveries(testContext(t), ref)
	if err != nil {
		t.Fatalf("Deliveries(%s): %v", ref, err)
	}
	return d
}

// scanAll returns the records Scan visits, by ref, and fails the test if a
// ref comes back as two different records.
func scanAll(t *testing.T, st Inspectable) map[string]*headers.Record {
	t.Helper()
	got := map[string]*headers.Record{}
	var dup error
	err := st.Scan(testContext(t), func(rec *headers.Record) bool {
		if prev, ok := got[rec.Ref]; ok && !reflect.DeepEqual(prev, rec) {
			dup = fmt.Errorf("ref %s visited twice with different records", rec.Ref)
		}
		got[rec.Ref] = rec
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if dup != nil {
		t.Fatal(dup)
	}
	return got
}

// Each recipient's state reads as the delivery operations left it, looked
// up as Claim compares recipients, with the return count.
func (s *inspectorSuite) deliveriesStates(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("dlv", "<dlv@x>", "", baseTime), long)

	d := deliveries(t, st, "dlv")
	if len(d.Recipients) != 0 || d.Returns != 0 {
		t.Fatalf("fresh record: Deliveries = %+v, want no state", d)
	}
	if d.At.IsZero() {
		t.Error("Deliveries.At is zero")
	}

	before := time.Now()
	wantClaim(t, st, "dlv", bob, long, store.Claimed)
	if err := st.Confirm(ctx, "dlv", "Carol@Fabrikam.Example"); err != nil {
		t.Fatal(err)
	}
	wantClaim(t, st, "dlv", dave, long, store.Claimed)
	if err := st.Release(ctx, "dlv", dave); err != nil {
		t.Fatal(err)
	}
	wantCount(t, st, "dlv", 1)
	wantCount(t, st, "dlv", 2)
	after := time.Now()

	d = deliveries(t, st, "dlv")
	if d.Returns != 2 {
		t.Errorf("Returns = %d, want 2", d.Returns)
	}
	if len(d.Recipients) != 2 {
		t.Errorf("Recipients = %v, want bob and carol only", d.Recipients)
	}
	tests := []struct {
		rcpt string
		want store.Delivery
	}{
		{bob, store.DeliveryInFlight},
		{"bob@CONTOSO.example", store.DeliveryInFlight},
		{"Bob@contoso.example", store.DeliveryPending}, // local parts compare exactly
		{"Carol@Fabrikam.Example", store.DeliveryConfirmed},
		{"Carol@fabrikam.example", store.DeliveryConfirmed},
		{dave, store.DeliveryPending}, // released
		{erin, store.DeliveryPending}, // never claimed
		{"", store.DeliveryPending},
	}
	for _, tt := range tests {
		if got := d.For(tt.rcpt); got.Delivery != tt.want {
			t.Errorf("For(%q) = %v, want %v", tt.rcpt, got.Delivery, tt.want)
		}
	}
	lease := d.For(bob).LeaseEnd
	// The store's clock may differ from this one; a second is plenty.
	if lease.Before(before.Add(long-time.Second)) || lease.After(after.Add(long+time.Second)) {
		t.Errorf("bob's lease ends %v, want about %v after %v", lease, long, before)
	}
	if lease.Sub(d.At) <= 0 {
		t.Errorf("bob's lease ends %v, not after the read at %v", lease, d.At)
	}
	if c := d.For(carol); !c.LeaseEnd.IsZero() {
		t.Errorf("confirmed delivery has LeaseEnd %v, want zero", c.LeaseEnd)
	}
}

// A claim whose lease has passed reads as lapsed, with its lease end; a new
// claim makes it in flight again.
func (s *inspectorSuite) deliveriesLapsed(t *testing.T) {
	st := s.open(t)
	put(t, st, Record("lapse", "", "", baseTime), long)
	start := time.Now()
	wantClaim(t, st, "lapse", bob, s.short, store.Claimed)
	if d := deliveries(t, st, "lapse"); s.fresh(start) && d.For(bob).Delivery != store.DeliveryInFlight {
		t.Errorf("within its lease: %v, want in flight", d.For(bob).Delivery)
	}
	sleepUntil(start.Add(2 * s.short))
	d := deliveries(t, st, "lapse")
	got := d.For(bob)
	if got.Delivery != store.DeliveryLapsed {
		t.Fatalf("after its lease: %v, want lapsed", got.Delivery)
	}
	if got.LeaseEnd.IsZero() || got.LeaseEnd.After(d.At) {
		t.Errorf("lapsed claim: LeaseEnd %v, want before the read at %v", got.LeaseEnd, d.At)
	}
	wantClaim(t, st, "lapse", bob, long, store.Claimed)
	if got := deliveries(t, st, "lapse").For(bob).Delivery; got != store.DeliveryInFlight {
		t.Errorf("claimed again: %v, want in flight", got)
	}
}

// Deliveries reports ErrNotFound for a ref that names no live record, and
// for no other reason.
func (s *inspectorSuite) deliveriesMissing(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	start := time.Now()
	put(t, st, Record("short", "", "", baseTime), s.short)
	wantClaim(t, st, "short", bob, long, store.Claimed)
	if _, err := st.Deliveries(ctx, "short"); s.fresh(start) && err != nil {
		t.Fatalf("live record: %v", err)
	}
	sleepUntil(start.Add(2 * s.short))
	for _, ref := range []string{"short", "never", "", "a b", "{x}"} {
		_, err := st.Deliveries(ctx, ref)
		wantNotFound(t, fmt.Sprintf("Deliveries(%q)", ref), err)
	}
}

// TTL is the record's remaining lifetime and follows the latest Put.
func (s *inspectorSuite) ttl(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("ttl", "", "", baseTime), long)
	d, err := st.TTL(ctx, "ttl")
	if err != nil {
		t.Fatal(err)
	}
	if d <= long-time.Minute || d > long {
		t.Errorf("TTL after Put(%v) = %v", long, d)
	}
	put(t, st, Record("ttl", "", "", baseTime), 3*long)
	d, err = st.TTL(ctx, "ttl")
	if err != nil {
		t.Fatal(err)
	}
	if d <= 3*long-time.Minute || d > 3*long {
		t.Errorf("TTL after Put(%v) = %v", 3*long, d)
	}
	if d != d.Truncate(time.Millisecond) {
		t.Errorf("TTL %v is not in whole milliseconds", d)
	}
}

// TTL reports ErrNotFound for a missing or expired record.
func (s *inspectorSuite) ttlMissing(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	start := time.Now()
	put(t, st, Record("short", "", "", baseTime), s.short)
	if d, err := st.TTL(ctx, "short"); s.fresh(start) && (err != nil || d > s.short || d < 0) {
		t.Errorf("live record: TTL = %v, %v; want at most %v", d, err, s.short)
	}
	sleepUntil(start.Add(2 * s.short))
	for _, ref := range []string{"short", "never", "", "a b"} {
		_, err := st.TTL(ctx, ref)
		wantNotFound(t, fmt.Sprintf("TTL(%q)", ref), err)
	}
}

// scanRecords is more than a batch of any implementation is likely to be,
// so that Scan has to resume.
const scanRecords = 600

// Scan visits every live record, as Get returns it, and no expired one.
func (s *inspectorSuite) scan(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	start := time.Now()
	for i := range 3 {
		put(t, st, Record(fmt.Sprintf("expired-%d", i), "", "", baseTime), s.short)
	}
	for i := range scanRecords {
		rec := Record(fmt.Sprintf("scan-%04d", i), fmt.Sprintf("<scan.%d@x>", i), "", baseTime.Add(time.Duration(i)*time.Second))
		put(t, st, rec, long)
	}
	sleepUntil(start.Add(2 * s.short))
	got := scanAll(t, st)
	if len(got) != scanRecords {
		t.Errorf("Scan visited %d records, want %d", len(got), scanRecords)
	}
	for i := range scanRecords {
		ref := fmt.Sprintf("scan-%04d", i)
		rec, ok := got[ref]
		if !ok {
			t.Errorf("Scan missed %s", ref)
			continue
		}
		want, err := st.Get(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(rec, want) {
			t.Errorf("Scan gave %+v\nGet gives %+v", rec, want)
		}
	}
	for i := range 3 {
		if ref := fmt.Sprintf("expired-%d", i); got[ref] != nil {
			t.Errorf("Scan visited the expired record %s", ref)
		}
	}
}

// Scan stops as soon as fn returns false, without an error.
func (s *inspectorSuite) scanStops(t *testing.T) {
	st := s.open(t)
	for i := range 20 {
		put(t, st, Record(fmt.Sprintf("stop-%02d", i), "", "", baseTime), long)
	}
	calls := 0
	err := st.Scan(testContext(t), func(*headers.Record) bool {
		calls++
		return calls < 5
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if calls != 5 {
		t.Errorf("fn called %d times after returning false on the 5th, want 5", calls)
	}
}

// Scan of an empty store calls fn never and returns nil.
func (s *inspectorSuite) scanEmpty(t *testing.T) {
	st := s.open(t)
	err := st.Scan(testContext(t), func(rec *headers.Record) bool {
		t.Errorf("fn called with %s on an empty store", rec.Ref)
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
}

// fn may call the store, reads and writes, while Scan runs.
func (s *inspectorSuite) scanCallbackUsesStore(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	for i := range 10 {
		put(t, st, Record(fmt.Sprintf("cb-%02d", i), "", "", baseTime), long)
	}
	done := make(chan error, 1)
	go func() {
		done <- st.Scan(ctx, func(rec *headers.Record) bool {
			if _, err := st.Deliveries(ctx, rec.Ref); err != nil {
				t.Errorf("Deliveries(%s) in fn: %v", rec.Ref, err)
			}
			if _, err := st.CountReturn(ctx, rec.Ref); err != nil {
				t.Errorf("CountReturn(%s) in fn: %v", rec.Ref, err)
			}
			return true
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Scan with a callback that uses the store did not return: deadlock?")
	}
}

// Deliveries, TTL and Scan change neither delivery state nor lifetimes.
func (s *inspectorSuite) readsChangeNothing(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("ro", "", "", baseTime), long)
	wantClaim(t, st, "ro", bob, long, store.Claimed)
	wantCount(t, st, "ro", 1)
	ttl0, err := st.TTL(ctx, "ro")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		deliveries(t, st, "ro")
		scanAll(t, st)
		if _, err := st.TTL(ctx, "ro"); err != nil {
			t.Fatal(err)
		}
	}
	wantClaim(t, st, "ro", bob, long, store.InFlight)
	wantClaim(t, st, "ro", carol, long, store.Claimed)
	wantCount(t, st, "ro", 2)
	if ttl1, err := st.TTL(ctx, "ro"); err != nil || ttl1 > ttl0 {
		t.Errorf("TTL went from %v to %v, %v: reads extended the record", ttl0, ttl1, err)
	}
}

// With a done context, each method returns an error wrapping ctx.Err() and
// Scan calls fn never.
func (s *inspectorSuite) contextCanceled(t *testing.T) {
	st := s.open(t)
	put(t, st, Record("ctx", "", "", baseTime), long)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"Deliveries", func() error { _, err := st.Deliveries(canceled, "ctx"); return err }},
		{"TTL", func() error { _, err := st.TTL(canceled, "ctx"); return err }},
		{"Scan", func() error {
			return st.Scan(canceled, func(*headers.Record) bool {
				t.Error("Scan called fn with a done context")
				return true
			})
		}},
	}
	for _, c := range calls {
		err := c.call()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: error %v, want context.Canceled", c.name, err)
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: error %v wraps ErrNotFound", c.name, err)
		}
	}
}

// After Close, each method returns an error wrapping ErrClosed, never
// ErrNotFound.
func (s *inspectorSuite) closed(t *testing.T) {
	st := s.open(t)
	put(t, st, Record("closed", "", "", baseTime), long)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	calls := []struct {
		name string
		call func() error
	}{
		{"Deliveries", func() error { _, err := st.Deliveries(ctx, "closed"); return err }},
		{"TTL", func() error { _, err := st.TTL(ctx, "closed"); return err }},
		{"Scan", func() error { return st.Scan(ctx, func(*headers.Record) bool { return true }) }},
	}
	for _, c := range calls {
		err := c.call()
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: error %v, want ErrClosed", c.name, err)
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after Close: error %v wraps ErrNotFound", c.name, err)
		}
	}
}
