package store_test

import (
	"testing"

	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// TestRedisCluster runs the store.Store and store.Inspector contracts on a
// Redis Cluster of three masters and three replicas started for the test,
// each case on a key prefix of its own. A record's keys share a hash tag,
// its indexes live in other slots, so every case crosses nodes.
func TestRedisCluster(t *testing.T) {
	c := storetest.StartRedisCluster(t)
	t.Run("Contract", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return c.Store(t) })
	})
	t.Run("Inspector", func(t *testing.T) {
		storetest.RunInspector(t, func(t *testing.T) storetest.Inspectable { return c.Store(t) })
	})
}

// TestRedisSentinelContract runs the store.Store contract through Sentinel:
// the store finds the master by asking the sentinels.
func TestRedisSentinelContract(t *testing.T) {
	s := storetest.StartRedisSentinel(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		st, err := store.NewRedis(s.Config("rrtest:" + t.Name()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}
