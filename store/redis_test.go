package store_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// redisShort is a TTL and lease short enough to wait out in real time.
// Record TTLs and leases have millisecond precision in Redis.
const redisShort = 300 * time.Millisecond

// TestRedisContract runs the store.Store contract, each case on a key prefix
// of its own that is deleted afterwards.
func TestRedisContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.Redis(t) })
}

// scanKeys returns every key of s, sorted.
func scanKeys(t *testing.T, s *store.Redis) []string {
	t.Helper()
	var keys []string
	iter := s.Client().Scan(ctxT(t), 0, s.KeyPrefix()+":*", 100).Iterator()
	for iter.Next(ctxT(t)) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// hashTag returns the part of key that Redis Cluster hashes.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

func TestRedisKeyLayout(t *testing.T) {
	s := storetest.Redis(t)
	ctx := ctxT(t)
	const (
		ref = "Zm9vYmFy-ref_1"
		mid = "<layout.1@contoso.example>"
		fp  = "0123abcd"
	)
	if err := s.Put(ctx, newRecord(ref, mid, fp, baseTime), long); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, ref, "bob@contoso.example", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CountReturn(ctx, ref); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(mid))
	p := s.KeyPrefix()
	want := []struct{ key, typ, tag string }{
		{p + ":{" + ref + "}:dlv", "hash", ref},
		{p + ":{" + ref + "}:rec", "string", ref},
		{p + ":{fp:" + fp + "}", "set", "fp:" + fp},
		{p + ":{mid:" + hex.EncodeToString(sum[:]) + "}", "set", "mid:" + hex.EncodeToString(sum[:])},
	}
	var wantKeys []string
	for _, w := range want {
		wantKeys = append(wantKeys, w.key)
	}
	slices.Sort(wantKeys)
	if got := scanKeys(t, s); !slices.Equal(got, wantKeys) {
		t.Fatalf("keys %q, want %q", got, wantKeys)
	}
	for _, w := range want {
		if tag := hashTag(w.key); tag != w.tag {
			t.Errorf("%s: hash tag %q, want %q", w.key, tag, w.tag)
		}
		typ, err := s.Client().Type(ctx, w.key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if typ != w.typ {
			t.Errorf("%s: type %s, want %s", w.key, typ, w.typ)
		}
	}
	if got, err := s.Client().SMembers(ctx, want[3].key).Result(); err != nil || !slices.Equal(got, []string{ref}) {
		t.Errorf("message-id index members %v, %v, want [%s]", got, err, ref)
	}
}

func TestRedisTTLs(t *testing.T) {
	s := storetest.Redis(t)
	ctx := ctxT(t)
	c := s.Client()
	const mid = "<ttl@contoso.example>"
	pttl := func(key string) time.Duration {
		t.Helper()
		d, err := c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	rec := func(ref string) string { return s.KeyPrefix() + ":{" + ref + "}:rec" }
	dlv := func(ref string) string { return s.KeyPrefix() + ":{" + ref + "}:dlv" }
	sum := sha256.Sum256([]byte(mid))
	idx := s.KeyPrefix() + ":{mid:" + hex.EncodeToString(sum[:]) + "}"

	if err := s.Put(ctx, newRecord("a", mid, "", baseTime), 10500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := pttl(rec("a")); d <= 10*time.Second || d > 10500*time.Millisecond {
		t.Errorf("record PTTL %v, want about 10.5s", d)
	}
	if d := pttl(idx); d < pttl(rec("a")) {
		t.Errorf("new index PTTL %v shorter than its record's", d)
	}

	// Claim state gets the record's remaining lifetime.
	if _, err := s.Claim(ctx, "a", "bob@contoso.example", time.Minute); err != nil {
		t.Fatal(err)
	}
	if d, r := pttl(dlv("a")), pttl(rec("a")); d <= 0 || d > r+50*time.Millisecond || d < r-time.Second {
		t.Errorf("delivery-state PTTL %v, want the record's %v", d, r)
	}
	// Replacing the record moves the delivery state's expiry with it.
	if err := s.Put(ctx, newRecord("a", mid, "", baseTime), 100*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := pttl(dlv("a")); d <= 99*time.Second {
		t.Errorf("delivery-state PTTL %v after re-Put with 100s, want about 100s", d)
	}
	if d := pttl(idx); d < 99*time.Second {
		t.Errorf("index PTTL %v after a longer-lived member, want about 100s", d)
	}
	// A shorter-lived member never shortens the index.
	if err := s.Put(ctx, newRecord("b", mid, "", baseTime), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := pttl(idx); d < 99*time.Second {
		t.Errorf("index PTTL %v after a shorter-lived member, want still about 100s", d)
	}
	// CountReturn alone also creates expiring state.
	if _, err := s.CountReturn(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if d := pttl(dlv("b")); d <= 0 || d > 5*time.Second {
		t.Errorf("delivery-state PTTL %v after CountReturn, want (0, 5s]", d)
	}
}

func TestRedisIndexPruning(t *testing.T) {
	s := storetest.Redis(t)
	ctx := ctxT(t)
	const mid = "<prune@contoso.example>"
	sum := sha256.Sum256([]byte(mid))
	idx := s.KeyPrefix() + ":{mid:" + hex.EncodeToString(sum[:]) + "}"
	if err := s.Put(ctx, newRecord("short", mid, "", baseTime), redisShort); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, newRecord("long", mid, "", baseTime), long); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, newRecord("moved", mid, "", baseTime), long); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, newRecord("moved", "<elsewhere@x>", "", baseTime), long); err != nil {
		t.Fatal(err)
	}
	time.Sleep(redisShort + redisShort/2)
	got, err := s.ByMessageID(ctx, mid)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(refsOf(got), []string{"long"}) {
		t.Fatalf("ByMessageID = %v, want [long]", refsOf(got))
	}
	members, err := s.Client().SMembers(ctx, idx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(members, []string{"long"}) {
		t.Errorf("index members after lookup %v, want [long]", members)
	}
}

// TestRedisSharedByProcesses races claims through two stores with separate
// clients and connection pools, as two relay processes would.
func TestRedisSharedByProcesses(t *testing.T) {
	s1 := storetest.Redis(t)
	c, ok := s1.Client().(*redis.Client)
	if !ok {
		t.Skip("REDIS_URL is not a single node")
	}
	opts := *c.Options()
	c2 := redis.NewClient(&opts)
	t.Cleanup(func() { c2.Close() })
	s2 := store.NewRedisClient(c2, s1.KeyPrefix())
	ctx := ctxT(t)

	if err := s1.Put(ctx, newRecord("shared", "<shared@x>", "", baseTime), long); err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Get(ctx, "shared"); err != nil || got.Ref != "shared" {
		t.Fatalf("second store Get = %v, %v", got, err)
	}
	for _, rcpt := range []string{"bob@contoso.example", "carol@contoso.example"} {
		results := claimConcurrently(t, []store.Store{s1, s2}, "shared", rcpt, 20)
		if results[store.Claimed] != 1 || results[store.InFlight] != 19 {
			t.Errorf("%s: results %v, want 1 Claimed and 19 InFlight", rcpt, results)
		}
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Errorf("Close of a NewRedisClient store closed the caller's client: %v", err)
	}
}

func TestRedisOutage(t *testing.T) {
	srv := storetest.StartRedisServer(t)
	cfg, err := store.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.KeyPrefix = "outage"
	cfg.DialTimeout = 500 * time.Millisecond
	s, err := store.NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := ctxT(t)
	if err := s.Put(ctx, newRecord("before", "<o@x>", "", baseTime), long); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "before", "bob@contoso.example", time.Minute); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	ops := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"Ping", s.Ping},
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, "before"); return err }},
		{"Put", func(ctx context.Context) error { return s.Put(ctx, newRecord("during", "", "", baseTime), long) }},
		{"ByMessageID", func(ctx context.Context) error { _, err := s.ByMessageID(ctx, "<o@x>"); return err }},
		{"Claim", func(ctx context.Context) error {
			_, err := s.Claim(ctx, "before", "carol@contoso.example", time.Minute)
			return err
		}},
		{"CountReturn", func(ctx context.Context) error { _, err := s.CountReturn(ctx, "before"); return err }},
	}
	// All at once, as concurrent SMTP sessions would call them. A context
	// would bound a hang; each operation must fail well before it.
	var wg sync.WaitGroup
	for _, op := range ops {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			err := op.fn(ctx)
			elapsed := time.Since(start)
			t.Logf("%s with Redis down: %v, after %v", op.name, err, elapsed)
			if err == nil {
				t.Errorf("%s with Redis down succeeded", op.name)
			} else if errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s with Redis down: %v, which must not read as not found", op.name, err)
			}
			if elapsed > 5*time.Second {
				t.Errorf("%s with Redis down took %v to fail", op.name, elapsed)
			}
		})
	}
	wg.Wait()

	srv.Start()
	ctx = ctxT(t) // the outage used up a good part of the first one
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.Ping(pctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The restarted server kept nothing (no persistence) and has no
	// scripts loaded: Claim must fall back from EVALSHA to EVAL.
	if _, err := s.Get(ctx, "before"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after restart = %v, want ErrNotFound", err)
	}
	if err := s.Put(ctx, newRecord("after", "<o@x>", "", baseTime), long); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Claim(ctx, "after", "bob@contoso.example", time.Minute); err != nil || res != store.Claimed {
		t.Errorf("Claim after restart = %v, %v, want Claimed", res, err)
	}
	if got, err := s.ByMessageID(ctx, "<o@x>"); err != nil || !slices.Equal(refsOf(got), []string{"after"}) {
		t.Errorf("ByMessageID after restart = %v, %v", refsOf(got), err)
	}
}

func TestParseRedisURL(t *testing.T) {
	tests := []struct {
		url  string
		want store.RedisConfig
		tls  bool
	}{
		{"redis://127.0.0.1:6379/15", store.RedisConfig{Addrs: []string{"127.0.0.1:6379"}, DB: 15}, false},
		{"redis://localhost", store.RedisConfig{Addrs: []string{"localhost:6379"}}, false},
		{
			"redis://relay:s3cr%40t@redis.internal:6380/2?dial_timeout=2s&read_timeout=3s&write_timeout=4s&key_prefix=relay1",
			store.RedisConfig{
				Addrs: []string{"redis.internal:6380"}, Username: "relay", Password: "s3cr@t", DB: 2,
				KeyPrefix: "relay1", DialTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 4 * time.Second,
			},
			false,
		},
		{"redis://:onlypass@h", store.RedisConfig{Addrs: []string{"h:6379"}, Password: "onlypass"}, false},
		{"redis://h1:7000?addr=h2:7000&addr=h3:7000", store.RedisConfig{Addrs: []string{"h1:7000", "h2:7000", "h3:7000"}}, false},
		{"redis://s1:26379?master_name=mymaster&addr=s2:26379", store.RedisConfig{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster"}, false},
		{"unix:///run/redis/redis.sock?db=3", store.RedisConfig{Addrs: []string{"/run/redis/redis.sock"}, DB: 3}, false},
		{"rediss://redis.example:6390", store.RedisConfig{Addrs: []string{"redis.example:6390"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := store.ParseRedisURL(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if (got.TLS != nil) != tt.tls {
				t.Errorf("TLS = %v, want set: %v", got.TLS, tt.tls)
			}
			if got.TLS != nil && (got.TLS.ServerName != "redis.example" || got.TLS.MinVersion < tls.VersionTLS12) {
				t.Errorf("TLS config %+v", got.TLS)
			}
			got.TLS = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestParseRedisURLErrorsHidePassword(t *testing.T) {
	const pw = "hunter2secret"
	tests := []struct{ url, wantErr string }{
		{"http://:" + pw + "@h", "scheme"},
		{"redis://:" + pw + "@h/abc", "database"},
		{"redis://u:" + pw + "@h/1?pool_size=3", "pool_size"},
		{"redis://u:" + pw + "@h/1?dial_timeout=soon", "dial_timeout"},
		{"redis://u:" + pw + "@h:port", "port"},
		{"redis://u:" + pw + "%zz@h", "password"},
		{"redis://u:" + pw + "@h\x7f", "control"},
	}
	for _, tt := range tests {
		t.Run(tt.wantErr, func(t *testing.T) {
			_, err := store.ParseRedisURL(tt.url)
			if err == nil {
				t.Fatal("ParseRedisURL succeeded")
			}
			if strings.Contains(err.Error(), "hunter") || strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q reveals the password", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestRedisConfigStringHidesPassword(t *testing.T) {
	cfg := store.RedisConfig{Addrs: []string{"h:6379"}, Username: "relay", Password: "hunter2"}
	for _, s := range []string{cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%v %+v %#v", cfg, &cfg, cfg)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("%q reveals the password", s)
		}
		if !strings.Contains(s, "h:6379") || !strings.Contains(s, "relay") {
			t.Errorf("%q lacks the address or user", s)
		}
	}
}

func TestNewRedisRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  store.RedisConfig
	}{
		{"no address", store.RedisConfig{}},
		{"empty address", store.RedisConfig{Addrs: []string{""}}},
		{"cluster with database", store.RedisConfig{Addrs: []string{"a:7000", "b:7000"}, DB: 1}},
		{"brace in prefix", store.RedisConfig{Addrs: []string{"a:6379"}, KeyPrefix: "rr{x}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := store.NewRedis(tt.cfg); err == nil {
				s.Close()
				t.Fatal("NewRedis succeeded")
			}
		})
	}
	s := store.NewRedisClient(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), "")
	defer s.Client().Close()
	if s.KeyPrefix() != store.DefaultKeyPrefix {
		t.Errorf("default prefix %q, want %q", s.KeyPrefix(), store.DefaultKeyPrefix)
	}
}

func TestRedisHelperCleansUp(t *testing.T) {
	var prefix string
	t.Run("user", func(t *testing.T) {
		s := storetest.Redis(t)
		prefix = s.KeyPrefix()
		if !strings.HasPrefix(prefix, "rrtest:") {
			t.Errorf("helper prefix %q, want rrtest:<random>", prefix)
		}
		ctx := ctxT(t)
		if err := s.Put(ctx, newRecord("cleanup", "<c@x>", "fp-c", baseTime), long); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CountReturn(ctx, "cleanup"); err != nil {
			t.Fatal(err)
		}
	})
	other := storetest.Redis(t)
	if other.KeyPrefix() == prefix {
		t.Fatalf("two helpers share the prefix %q", prefix)
	}
	n, err := other.Client().Keys(ctxT(t), prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(n) != 0 {
		t.Errorf("keys left after the test ended: %q", n)
	}
}
