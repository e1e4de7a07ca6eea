package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// With wait_replicas, a Put returns only when that many replicas have the
// record, and fails (so the relay answers 4xx) when they do not: a record
// acknowledged is on the replica a failover promotes.
func TestWaitReplicas(t *testing.T) {
	ctx := context.Background()
	t.Run("single server without replicas", func(t *testing.T) {
		srv := storetest.StartRedisServer(t)
		st, err := store.NewRedis(store.RedisConfig{Addrs: []string{srv.Addr()}, KeyPrefix: "rrwait",
			WaitReplicas: 1, WaitTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		err = st.Put(ctx, storetest.Record("waitref0000000000000000001", "<w1@x>", "", time.Now()), time.Hour)
		if !errors.Is(err, store.ErrReplicas) {
			t.Fatalf("Put with wait_replicas 1 and no replica = %v, want ErrReplicas", err)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		c := storetest.StartRedisCluster(t)
		open := func(n int) *store.Redis {
			cfg := c.Config("rrwait")
			cfg.WaitReplicas, cfg.WaitTimeout = n, 200*time.Millisecond
			st, err := store.NewRedis(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
		const ref = "waitref0000000000000000002"
		if err := open(1).Put(ctx, storetest.Record(ref, "<w2@x>", "fpw2", time.Now()), time.Hour); err != nil {
			t.Fatalf("Put with wait_replicas 1 on a cluster with a replica per master: %v", err)
		}
		// The record is on the replica of its master, read there directly.
		key := "rrwait:{" + ref + "}:rec"
		_, replicas, err := c.MasterOf(ctx, key)
		if err != nil || len(replicas) == 0 {
			t.Fatalf("replicas of %s: %v %v", key, replicas, err)
		}
		replica := replicas[0]
		rc := redis.NewClient(&redis.Options{Addr: replica})
		defer rc.Close()
		pipe := rc.Pipeline()
		pipe.ReadOnly(ctx)
		exists := pipe.Exists(ctx, key)
		if _, err := pipe.Exec(ctx); err != nil || exists.Val() != 1 {
			t.Errorf("the replica %s does not have %s right after Put returned: %v", replica, key, err)
		}
		err = open(2).Put(ctx, storetest.Record("waitref0000000000000000003", "<w3@x>", "", time.Now()), time.Hour)
		if !errors.Is(err, store.ErrReplicas) {
			t.Fatalf("Put with wait_replicas 2 and one replica per master = %v, want ErrReplicas", err)
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		s := storetest.StartRedisSentinel(t)
		cfg := s.Config("rrwait")
		cfg.WaitReplicas = 1
		st, err := store.NewRedis(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Put(ctx, storetest.Record("waitref0000000000000000004", "<w4@x>", "", time.Now()), time.Hour); err != nil {
			t.Fatalf("Put with wait_replicas 1 through Sentinel with one replica: %v", err)
		}
	})
}
