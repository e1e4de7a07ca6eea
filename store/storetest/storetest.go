// Package storetest provides the contract suite of store.Store, Run, and
// stores for tests: a Redis store on a private key prefix of a shared Redis,
// a Bolt store in a temporary directory, and private redis-server processes
// that a test may stop and start again.
//
// Where a dependency is missing (no Redis reachable, no redis-server
// installed), the helpers skip the test, unless the environment variable CI
// is "true": then they fail it, so that CI cannot silently test nothing.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recallrelay/recallrelay/store"
)

// DefaultRedisURL is the Redis that Redis uses when REDIS_URL is unset.
const DefaultRedisURL = "redis://127.0.0.1:6379/15"

// unavailable skips the test, or fails it under CI=true.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Redis returns a store on the Redis named by the environment variable
// REDIS_URL (DefaultRedisURL when unset), with a key prefix of its own,
// "rrtest:<random>:". When the test ends, the store is closed (the test may
// close it first) and every key with that prefix deleted. If Redis does not
// answer PING within one second, the test is skipped (failed under CI=true).
func Redis(t testing.TB) *store.Redis {
	t.Helper()
	rawURL := os.Getenv("REDIS_URL")
	if rawURL == "" {
		rawURL = DefaultRedisURL
	}
	cfg, err := store.ParseRedisURL(rawURL)
	if err != nil {
		t.Fatalf("storetest: REDIS_URL: %v", err)
	}
	cfg.KeyPrefix = "rrtest:" + randomHex(t, 8)
	s, err := store.NewRedis(cfg)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		s.Close()
		unavailable(t, fmt.Sprintf("redis not reachable at %s: %v; set REDIS_URL or start redis-server", redactURL(rawURL), err))
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("storetest: %v", err)
		}
		// The test may have closed the store, and with it its client:
		// delete through a client of its own.
		c, err := store.NewRedis(cfg)
		if err != nil {
			t.Errorf("storetest: delete test keys: %v", err)
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := DeleteKeys(ctx, c.Client(), cfg.KeyPrefix+":*"); err != nil {
			t.Errorf("storetest: delete test keys: %v", err)
		}
	})
	return s
}

// DeleteKeys deletes every key matching the SCAN pattern match, on every
// master when c is a cluster client.
func DeleteKeys(ctx context.Context, c redis.UniversalClient, match string) error {
	del := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, match, 500).Iterator()
		for iter.Next(ctx) {
			// One DEL per key: in a cluster the keys live in different slots.
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			return del(ctx, n)
		})
	}
	return del(ctx, c)
}

// Bolt returns a store in a new file in t.TempDir(), closed when the test
// ends.
func Bolt(t testing.TB) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(store.BoltConfig{Path: filepath.Join(t.TempDir(), "store.db")})
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	closeAtEnd(t, s)
	return s
}

// closeAtEnd closes s when the test ends; closing a store twice is no
// error, so the test may close it first.
func closeAtEnd(t testing.TB, s store.Store) {
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("storetest: %v", err)
		}
	})
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return hex.EncodeToString(b)
}

// redactURL returns rawURL with any password replaced, for messages.
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable REDIS_URL)"
	}
	return u.Redacted()
}
