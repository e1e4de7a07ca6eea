package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// TestBoltInspector runs the store.Inspector contract on Bolt stores, each
// case on a file of its own, with the wall clock.
func TestBoltInspector(t *testing.T) {
	storetest.RunInspector(t, func(t *testing.T) storetest.Inspectable { return storetest.Bolt(t) })
}

// TestRedisInspector runs the store.Inspector contract on Redis, each case on
// a key prefix of its own that is deleted afterwards.
func TestRedisInspector(t *testing.T) {
	storetest.RunInspector(t, func(t *testing.T) storetest.Inspectable { return storetest.Redis(t) })
}

// TestBoltReadOnly checks OpenBoltReadOnly: it waits for no writer, reads
// what a writer stored, lets several readers in at once, refuses writes and
// leaves the file as it was.
func TestBoltReadOnly(t *testing.T) {
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "store.db")
	w, err := store.OpenBolt(store.BoltConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put(ctx, newRecord("ro-1", "<ro@contoso.example>", "fp-ro", baseTime), long); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Claim(ctx, "ro-1", "bob@contoso.example", long); err != nil {
		t.Fatal(err)
	}
	if err := w.Confirm(ctx, "ro-1", "carol@contoso.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.CountReturn(ctx, "ro-1"); err != nil {
		t.Fatal(err)
	}

	// While the writer has the file, a read-only open gives up, saying so.
	const timeout = 200 * time.Millisecond
	if r, err := store.OpenBoltReadOnly(store.BoltConfig{Path: path, LockTimeout: timeout}); err == nil {
		r.Close()
		t.Fatal("read-only open of a file a writer holds succeeded")
	} else if !errors.Is(err, berrors.ErrTimeout) || !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("error %q does not say the file is locked", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	r1 := openBoltReadOnly(t, store.BoltConfig{Path: path})
	r2 := openBoltReadOnly(t, store.BoltConfig{Path: path}) // shared lock: both at once
	for _, r := range []*store.Bolt{r1, r2} {
		if _, err := r.Get(ctx, "ro-1"); err != nil {
			t.Errorf("Get: %v", err)
		}
		if recs, err := r.ByMessageID(ctx, "<ro@contoso.example>"); err != nil || len(recs) != 1 {
			t.Errorf("ByMessageID = %d records, %v; want 1", len(recs), err)
		}
		d, err := r.Deliveries(ctx, "ro-1")
		if err != nil {
			t.Fatal(err)
		}
		if d.For("bob@contoso.example").Delivery != store.DeliveryInFlight || d.For("carol@contoso.example").Delivery != store.DeliveryConfirmed || d.Returns != 1 {
			t.Errorf("Deliveries = %+v", d)
		}
		if ttl, err := r.TTL(ctx, "ro-1"); err != nil || ttl <= 0 || ttl > long {
			t.Errorf("TTL = %v, %v", ttl, err)
		}
		n := 0
		if err := r.Scan(ctx, func(*headers.Record) bool { n++; return true }); err != nil || n != 1 {
			t.Errorf("Scan visited %d records, %v; want 1", n, err)
		}
		if err := r.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
	}
	writes := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { return r1.Put(ctx, newRecord("ro-2", "", "", baseTime), long) }},
		{"Claim", func() error { _, err := r1.Claim(ctx, "ro-1", "dave@contoso.example", long); return err }},
		{"Confirm", func() error { return r1.Confirm(ctx, "ro-1", "dave@contoso.example") }},
		{"Release", func() error { return r1.Release(ctx, "ro-1", "bob@contoso.example") }},
		{"CountReturn", func() error { _, err := r1.CountReturn(ctx, "ro-1"); return err }},
	}
	for _, w := range writes {
		if err := w.call(); err == nil {
			t.Errorf("%s on a read-only store succeeded", w.name)
		} else if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s on a read-only store: %v wraps ErrNotFound", w.name, err)
		}
	}
	r1.Close()
	r2.Close()
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, after) {
		t.Error("the read-only stores changed the file")
	}
}

func openBoltReadOnly(t *testing.T, cfg store.BoltConfig) *store.Bolt {
	t.Helper()
	b, err := store.OpenBoltReadOnly(cfg)
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

func TestBoltReadOnlyRejects(t *testing.T) {
	dir := t.TempDir()
	notStore := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(filepath.Join(dir, "garbage.db"), []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"no path", "", "no path"},
		{"missing file", filepath.Join(dir, "missing", "records.db"), "no such file"},
		{"garbage", filepath.Join(dir, "garbage.db"), "garbage.db"},
		{"no buckets", notStore, "not a store file"},
	}
	// A bbolt file without the store's buckets.
	db, err := bolt.Open(notStore, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := store.OpenBoltReadOnly(store.BoltConfig{Path: tt.path, LockTimeout: 100 * time.Millisecond})
			if err == nil {
				b.Close()
				t.Fatal("OpenBoltReadOnly succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only open of a missing file created its directory: %v", err)
	}
}

// TestRedisScanKeys checks that Scan reads only the record keys of its own
// prefix, a prefix with glob characters included, and skips keys that look
// like record keys but cannot be.
func TestRedisScanKeys(t *testing.T) {
	ctx := ctxT(t)
	s := storetest.Redis(t)
	c := s.Client()
	// Stores whose prefixes a naive pattern for s would also match.
	glob := store.NewRedisClient(c, s.KeyPrefix()+"*[x]?")
	longer := store.NewRedisClient(c, s.KeyPrefix()+"x")
	for _, p := range []*store.Redis{glob, longer} {
		t.Cleanup(func() {
			escaped := strings.NewReplacer("*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`).Replace(p.KeyPrefix())
			if err := storetest.DeleteKeys(context.Background(), c, escaped+":*"); err != nil {
				t.Error(err)
			}
		})
	}
	for i, st := range []*store.Redis{s, glob, longer} {
		for j := range 3 {
			ref := fmt.Sprintf("s%d-r%d", i, j)
			if err := st.Put(ctx, newRecord(ref, "<"+ref+"@x>", "fp-"+ref, baseTime), long); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Claim(ctx, ref, "bob@contoso.example", long); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Not record keys of s, though "{*}:rec" matches them.
	for _, k := range []string{s.KeyPrefix() + ":{a}b}:rec", s.KeyPrefix() + ":{}:rec", s.KeyPrefix() + ":{a b}:rec"} {
		if err := c.Set(ctx, k, "{}", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, st := range []*store.Redis{s, glob, longer} {
		var refs []string
		err := st.Scan(ctx, func(rec *headers.Record) bool {
			refs = append(refs, rec.Ref)
			return true
		})
		if err != nil {
			t.Fatalf("Scan of prefix %q: %v", st.KeyPrefix(), err)
		}
		slices.Sort(refs)
		refs = slices.Compact(refs)
		want := []string{fmt.Sprintf("s%d-r0", i), fmt.Sprintf("s%d-r1", i), fmt.Sprintf("s%d-r2", i)}
		if !slices.Equal(refs, want) {
			t.Errorf("Scan of prefix %q visited %q, want %q", st.KeyPrefix(), refs, want)
		}
	}
}

// TestRedisTTLNoExpiry checks that a record key made persistent outside the
// store reads as a negative TTL, not as an error.
func TestRedisTTLNoExpiry(t *testing.T) {
	ctx := ctxT(t)
	s := storetest.Redis(t)
	if err := s.Put(ctx, newRecord("persist", "", "", baseTime), long); err != nil {
		t.Fatal(err)
	}
	if err := s.Client().Persist(ctx, s.KeyPrefix()+":{persist}:rec").Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := s.TTL(ctx, "persist"); err != nil || d >= 0 {
		t.Errorf("TTL of a persistent record = %v, %v; want negative, nil", d, err)
	}
}

// TestRedisDeliveriesMalformed checks that delivery state the store did not
// write is reported, not misread.
func TestRedisDeliveriesMalformed(t *testing.T) {
	ctx := ctxT(t)
	s := storetest.Redis(t)
	dlv := s.KeyPrefix() + ":{bad}:dlv"
	tests := []struct {
		name, field, value string
	}{
		{"claim without time", "r:bob@contoso.example", "c:"},
		{"unknown state", "r:bob@contoso.example", "x"},
		{"count not a number", "n", "many"},
		{"unknown field", "zz", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Put(ctx, newRecord("bad", "", "", baseTime), long); err != nil {
				t.Fatal(err)
			}
			if err := s.Client().Del(ctx, dlv).Err(); err != nil {
				t.Fatal(err)
			}
			if err := s.Client().HSet(ctx, dlv, tt.field, tt.value).Err(); err != nil {
				t.Fatal(err)
			}
			_, err := s.Deliveries(ctx, "bad")
			if err == nil {
				t.Fatal("Deliveries succeeded")
			}
			if errors.Is(err, store.ErrNotFound) {
				t.Errorf("error %v wraps ErrNotFound", err)
			}
		})
	}
}

func TestDeliveryString(t *testing.T) {
	tests := []struct {
		d    store.Delivery
		want string
	}{
		{store.DeliveryPending, "pending"},
		{store.DeliveryConfirmed, "delivered"},
		{store.DeliveryInFlight, "in flight"},
		{store.DeliveryLapsed, "lapsed"},
		{store.Delivery(9), "Delivery(9)"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", int(tt.d), got, tt.want)
		}
	}
}
