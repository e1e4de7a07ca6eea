package store_test

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openBolt(t *testing.T, cfg store.BoltConfig) *store.Bolt {
	t.Helper()
	b, err := store.OpenBolt(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// TestBoltContract runs the store.Store contract, each case on a file of its
// own, with the wall clock.
func TestBoltContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.Bolt(t) })
}

func TestBoltHelper(t *testing.T) {
	b := storetest.Bolt(t)
	if err := b.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestBoltPersistence(t *testing.T) {
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "state", "sub", "store.db")
	clock := newFakeClock()
	cfg := store.BoltConfig{Path: path, Now: clock.Now}

	b, err := store.OpenBolt(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := newRecord("persist", "<persist@contoso.example>", "fp-p", baseTime)
	if err := b.Put(ctx, want, long); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, newRecord("gone", "<persist@contoso.example>", "", baseTime), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, "persist", "bob@contoso.example", long); err != nil {
		t.Fatal(err)
	}
	if err := b.Confirm(ctx, "persist", "bob@contoso.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Claim(ctx, "persist", "carol@contoso.example", long); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CountReturn(ctx, "persist"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := b.Ping(ctx); err == nil {
		t.Error("Ping after Close succeeded")
	}

	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(path), 0o700}, {path, 0o600}} {
		fi, err := os.Stat(p.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != p.mode {
			t.Errorf("%s mode %v, want %v", p.path, fi.Mode().Perm(), p.mode)
		}
	}

	clock.Advance(2 * time.Minute) // "gone" expires while the relay is down
	b = openBolt(t, cfg)
	got, err := b.Get(ctx, "persist")
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != want.Ref || len(got.Fields) != len(want.Fields) || string(got.Fields[3].Raw) != string(want.Fields[3].Raw) {
		t.Errorf("record after reopen = %+v, want %+v", got, want)
	}
	if recs, err := b.ByMessageID(ctx, "<persist@contoso.example>"); err != nil || len(recs) != 1 || recs[0].Ref != "persist" {
		t.Errorf("ByMessageID after reopen = %v, %v, want [persist]", refsOf(recs), err)
	}
	if res, err := b.Claim(ctx, "persist", "bob@contoso.example", long); err != nil || res != store.AlreadyDelivered {
		t.Errorf("confirmed claim after reopen = %v, %v, want AlreadyDelivered", res, err)
	}
	if res, err := b.Claim(ctx, "persist", "carol@contoso.example", long); err != nil || res != store.InFlight {
		t.Errorf("open claim after reopen = %v, %v, want InFlight", res, err)
	}
	if n, err := b.CountReturn(ctx, "persist"); err != nil || n != 2 {
		t.Errorf("CountReturn after reopen = %d, %v, want 2", n, err)
	}
}

func TestBoltSweeper(t *testing.T) {
	ctx := ctxT(t)
	clock := newFakeClock()
	var sweepErr error
	var mu sync.Mutex
	b := openBolt(t, store.BoltConfig{
		Path:          filepath.Join(t.TempDir(), "store.db"),
		Now:           clock.Now,
		SweepInterval: 10 * time.Millisecond,
		OnSweepError: func(err error) {
			mu.Lock()
			sweepErr = err
			mu.Unlock()
		},
	})
	for i, ttl := range []time.Duration{time.Minute, time.Minute, time.Hour} {
		ref := []string{"exp-1", "exp-2", "keep"}[i]
		if err := b.Put(ctx, newRecord(ref, "<"+ref+"@x>", "fp-"+ref, baseTime), ttl); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Claim(ctx, ref, "bob@contoso.example", time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{"records": 3, "by-message-id": 3, "by-fingerprint": 3, "delivery": 3}
	if got := boltEntries(t, b); !maps.Equal(got, want) {
		t.Fatalf("before expiry: entries %v, want %v", got, want)
	}

	clock.Advance(2 * time.Minute)
	want = map[string]int{"records": 1, "by-message-id": 1, "by-fingerprint": 1, "delivery": 1}
	deadline := time.Now().Add(5 * time.Second)
	for got := boltEntries(t, b); !maps.Equal(got, want); got = boltEntries(t, b) {
		if time.Now().After(deadline) {
			t.Fatalf("sweeper left entries %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.Get(ctx, "keep"); err != nil {
		t.Errorf("sweeper removed a live record: %v", err)
	}
	if res, err := b.Claim(ctx, "keep", "bob@contoso.example", time.Hour); err != nil || res != store.InFlight {
		t.Errorf("sweeper touched live delivery state: %v, %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if sweepErr != nil {
		t.Errorf("sweep error: %v", sweepErr)
	}
}

func boltEntries(t *testing.T, b *store.Bolt) map[string]int {
	t.Helper()
	m, err := store.BoltEntries(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBoltLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	openBolt(t, store.BoltConfig{Path: path})

	const timeout = 200 * time.Millisecond
	start := time.Now()
	b, err := store.OpenBolt(store.BoltConfig{Path: path, LockTimeout: timeout})
	elapsed := time.Since(start)
	if err == nil {
		b.Close()
		t.Fatal("second OpenBolt of a locked file succeeded")
	}
	if !errors.Is(err, berrors.ErrTimeout) || !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say the file %s is locked", err, path)
	}
	// bbolt polls the lock every 50ms and may give up one poll early.
	if elapsed > timeout+2*time.Second {
		t.Errorf("gave up after %v, want about %v", elapsed, timeout)
	}
}

func TestBoltConfigRejects(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  store.BoltConfig
	}{
		{"no path", store.BoltConfig{}},
		{"negative sweep interval", store.BoltConfig{Path: filepath.Join(dir, "a.db"), SweepInterval: -time.Second}},
		{"parent is a file", store.BoltConfig{Path: filepath.Join(dir, "file", "b.db")}},
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := store.OpenBolt(tt.cfg)
			if err == nil {
				b.Close()
				t.Fatal("OpenBolt succeeded")
			}
		})
	}
}

func TestBoltCloseStopsSweeper(t *testing.T) {
	b, err := store.OpenBolt(store.BoltConfig{
		Path:          filepath.Join(t.TempDir(), "store.db"),
		SweepInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the sweeper run a few times
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := b.Put(ctxT(t), newRecord("after-close", "", "", baseTime), long); err == nil {
		t.Error("Put after Close succeeded")
	}
}

// Writes from many goroutines at once, which the group commit puts in
// shared transactions, each get their own result: a write that fails (a claim on a record
// that does not exist) neither fails nor drops the others committed with
// it, and every acknowledged record is in the file after a reopen.
func TestBoltGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records.db")
	b := openBolt(t, store.BoltConfig{Path: path})
	ctx := t.Context()
	at := time.Now()
	if err := b.Put(ctx, storetest.Record("existing", "<e@x>", "", at), time.Hour); err != nil {
		t.Fatal(err)
	}
	const n = 48
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	claims := make([]store.ClaimResult, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch i % 3 {
			case 0:
				errs[i] = b.Put(ctx, storetest.Record(fmt.Sprintf("put-%02d", i), fmt.Sprintf("<%d@x>", i), "", at), time.Hour)
			case 1:
				_, errs[i] = b.Claim(ctx, fmt.Sprintf("missing-%02d", i), "bob@contoso.example", time.Minute)
			case 2:
				claims[i], errs[i] = b.Claim(ctx, "existing", fmt.Sprintf("rcpt%02d@contoso.example", i), time.Minute)
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		switch i % 3 {
		case 0, 2:
			if errs[i] != nil {
				t.Errorf("write %d: %v", i, errs[i])
			}
			if i%3 == 2 && claims[i] != store.Claimed {
				t.Errorf("claim %d = %v, want Claimed", i, claims[i])
			}
		case 1:
			if !errors.Is(errs[i], store.ErrNotFound) {
				t.Errorf("claim %d on a missing record = %v, want ErrNotFound", i, errs[i])
			}
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBolt(t, store.BoltConfig{Path: path})
	for i := 0; i < n; i += 3 {
		if _, err := b.Get(ctx, fmt.Sprintf("put-%02d", i)); err != nil {
			t.Errorf("record put-%02d after reopening: %v", i, err)
		}
	}
}

// BenchmarkBoltPut writes records from one goroutine (every write its own
// commit) and from many (writes share commits).
func BenchmarkBoltPut(b *testing.B) {
	for _, par := range []int{1, 20} {
		b.Run(fmt.Sprintf("writers=%d", par), func(b *testing.B) {
			st, err := store.OpenBolt(store.BoltConfig{Path: filepath.Join(b.TempDir(), "records.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			var next atomic.Int64
			b.SetParallelism(par)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ref := fmt.Sprintf("bench-%d", next.Add(1))
					if err := st.Put(b.Context(), storetest.Record(ref, "<"+ref+"@x>", "", time.Now()), time.Hour); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
