package storetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recallrelay/recallrelay/store"
)

// Timeouts of RedisCluster and RedisSentinel.
const (
	clusterCreateTimeout = 60 * time.Second
	clusterReadyTimeout  = 30 * time.Second
)

// Cluster settings: a node is failed after one second without an answer,
// and a replica takes over however long it was cut off, so that a test's
// failover takes seconds, not the production default's tens of seconds.
var clusterNodeArgs = []string{
	"--appendonly", "no",
	"--cluster-enabled", "yes",
	"--cluster-config-file", "nodes.conf",
	"--cluster-node-timeout", "1000",
	"--cluster-replica-validity-factor", "0",
}

// RedisCluster is a Redis Cluster owned by one test: six redis-server
// processes on 127.0.0.1, three masters with one replica each, made with
// "redis-cli --cluster create --cluster-replicas 1", without persistence.
// It never touches the shared Redis of Redis. Every node is killed when the
// test ends.
//
// Its methods are safe for concurrent use.
type RedisCluster struct {
	t     testing.TB
	nodes []*redisProcess
}

// StartRedisCluster starts a Redis Cluster of three masters and three
// replicas from redis-server and redis-cli in PATH and waits until every
// node reports cluster_state:ok, knows all six nodes, and every replica is
// in sync with its master. If redis-server or redis-cli is not installed,
// the test is skipped (failed under CI=true).
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	cli := redisCLI(t)
	c := &RedisCluster{t: t}
	for range 6 {
		p := startRedisProcessOn(t, freeClusterPort, "", clusterNodeArgs...)
		t.Cleanup(func() { _ = p.halt(syscall.SIGKILL) })
		c.nodes = append(c.nodes, p)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("storetest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(clusterReadyTimeout); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return c
}

// redisCLI returns the path of redis-cli, skipping the test (failing it
// under CI=true) when it is not installed.
func redisCLI(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, fmt.Sprintf("redis-server not installed: %v", err))
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		unavailable(t, fmt.Sprintf("redis-cli not installed (Debian and Ubuntu: package redis-tools): %v", err))
	}
	return cli
}

// freeClusterPort returns a free port P whose cluster bus port, P+10000,
// is free too.
func freeClusterPort() (int, error) {
	for range 50 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("find free port: no port whose cluster bus port is free too")
}

// Addrs returns the "host:port" of every node, masters and replicas, in the
// order they were started: the seed addresses of a cluster client.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Config returns a store configuration for the cluster with key prefix
// prefix (store.DefaultKeyPrefix when empty).
func (c *RedisCluster) Config(prefix string) store.RedisConfig {
	return store.RedisConfig{Addrs: c.Addrs(), KeyPrefix: prefix}
}

// Store returns a store on the cluster with a key prefix of its own,
// "rrtest:<random>", closed when the test ends (the test may close it
// first).
func (c *RedisCluster) Store(t testing.TB) *store.Redis {
	t.Helper()
	s, err := store.NewRedis(c.Config("rrtest:" + randomHex(t, 8)))
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	closeAtEnd(t, s)
	return s
}

// node returns the node at addr.
func (c *RedisCluster) node(addr string) (*redisProcess, error) {
	for _, n := range c.nodes {
		if n.Addr() == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no cluster node at %s", addr)
}

// Running reports whether the node at addr is up.
func (c *RedisCluster) Running(addr string) bool {
	n, err := c.node(addr)
	return err == nil && n.running()
}

// Kill ends the node at addr with SIGKILL, as a crash or an OOM kill would,
// and waits for it to exit. The node stays down.
func (c *RedisCluster) Kill(addr string) error {
	n, err := c.node(addr)
	if err != nil {
		return err
	}
	return n.halt(syscall.SIGKILL)
}

// MasterOf returns the address of the master serving the slot of key, and
// the addresses of its replicas that have not failed, as a running node
// reports them (CLUSTER SHARDS).
func (c *RedisCluster) MasterOf(ctx context.Context, key string) (master string, replicas []string, err error) {
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		nc := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		slot, err1 := nc.ClusterKeySlot(ctx, key).Result()
		shards, err2 := nc.ClusterShards(ctx).Result()
		nc.Close()
		if err := errors.Join(err1, err2); err != nil {
			return "", nil, fmt.Errorf("cluster node %s: %w", n.Addr(), err)
		}
		for _, sh := range shards {
			if !slices.ContainsFunc(sh.Slots, func(r redis.SlotRange) bool { return r.Start <= slot && slot <= r.End }) {
				continue
			}
			for _, node := range sh.Nodes {
				addr := net.JoinHostPort(node.IP, strconv.FormatInt(node.Port, 10))
				switch {
				case node.Role == "master" && node.Health == "online":
					master = addr
				case node.Role == "replica" && node.Health != "failed":
					// Redis 7.0 reports a synced replica as "loading"
					// until its replication offset moves.
					replicas = append(replicas, addr)
				}
			}
			if master == "" {
				return "", nil, fmt.Errorf("cluster node %s: slot %d of %q has no master online", n.Addr(), slot, key)
			}
			return master, replicas, nil
		}
		return "", nil, fmt.Errorf("cluster node %s: slot %d of %q unassigned", n.Addr(), slot, key)
	}
	return "", nil, errors.New("no cluster node running")
}

// WaitHealthy waits until every running node reports cluster_state:ok and
// all 16384 slots assigned, knows every other node, and every running
// replica's link to its master is up; or timeout passes.
func (c *RedisCluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.healthy()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis cluster %v not healthy within %v: %w", c.Addrs(), timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *RedisCluster) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		nc := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		info, err := nc.ClusterInfo(ctx).Result()
		var repl string
		if err == nil {
			repl, err = nc.Info(ctx, "replication").Result()
		}
		nc.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr(), err)
		}
		fields := infoFields(info)
		if fields["cluster_state"] != "ok" || fields["cluster_slots_assigned"] != "16384" {
			return fmt.Errorf("node %s: cluster_state:%s, %s slots assigned", n.Addr(), fields["cluster_state"], fields["cluster_slots_assigned"])
		}
		if fields["cluster_known_nodes"] != strconv.Itoa(len(c.nodes)) {
			return fmt.Errorf("node %s knows %s nodes of %d", n.Addr(), fields["cluster_known_nodes"], len(c.nodes))
		}
		if r := infoFields(repl); r["role"] == "slave" && r["master_link_status"] != "up" {
			return fmt.Errorf("replica %s: master_link_status:%s", n.Addr(), r["master_link_status"])
		}
	}
	return nil
}

// infoFields parses the "name:value" lines of an INFO or CLUSTER INFO reply.
func infoFields(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// SentinelMaster is the master name RedisSentinel's sentinels monitor.
const SentinelMaster = "rrtest"

// RedisSentinel is a Sentinel deployment owned by one test, on 127.0.0.1
// without persistence: a master, one replica of it, and three sentinels
// (quorum 2) that fail over after one second without an answer from the
// master. It never touches the shared Redis of Redis. Every process is
// killed when the test ends.
//
// Its methods are safe for concurrent use.
type RedisSentinel struct {
	t         testing.TB
	data      []*redisProcess // the master and the replica it started with
	sentinels []*redisProcess
}

// StartRedisSentinel starts a master, a replica and three sentinels from
// redis-server in PATH, and waits until the replica is in sync and every
// sentinel knows the replica and the other two sentinels. If redis-server is
// not installed, the test is skipped (failed under CI=true).
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	s := &RedisSentinel{t: t}
	master := startRedisProcess(t, "--appendonly", "no")
	t.Cleanup(func() { _ = master.halt(syscall.SIGKILL) })
	replica := startRedisProcess(t, "--appendonly", "no", "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	t.Cleanup(func() { _ = replica.halt(syscall.SIGKILL) })
	s.data = []*redisProcess{master, replica}
	if err := waitFor(clusterReadyTimeout, func() error { return linkUp(replica.Addr()) }); err != nil {
		t.Fatalf("storetest: replica %s: %v", replica.Addr(), err)
	}
	for range 3 {
		// A sentinel rewrites its configuration file: each gets its own.
		conf := fmt.Sprintf("%s/sentinel-%s.conf", t.TempDir(), randomHex(t, 4))
		text := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n", SentinelMaster, master.port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatalf("storetest: %v", err)
		}
		p := startRedisProcessOn(t, freePort, conf, "--sentinel")
		t.Cleanup(func() { _ = p.halt(syscall.SIGKILL) })
		s.sentinels = append(s.sentinels, p)
	}
	if err := waitFor(clusterReadyTimeout, s.settled); err != nil {
		t.Fatalf("storetest: sentinels: %v", err)
	}
	return s
}

// SentinelAddrs returns the "host:port" of every sentinel.
func (s *RedisSentinel) SentinelAddrs() []string {
	out := make([]string, len(s.sentinels))
	for i, p := range s.sentinels {
		out[i] = p.Addr()
	}
	return out
}

// Config returns a store configuration for the deployment (the sentinels'
// addresses and SentinelMaster) with key prefix prefix.
func (s *RedisSentinel) Config(prefix string) store.RedisConfig {
	return store.RedisConfig{Addrs: s.SentinelAddrs(), MasterName: SentinelMaster, KeyPrefix: prefix}
}

// Master asks the first sentinel that answers for the master's address.
func (s *RedisSentinel) Master(ctx context.Context) (string, error) {
	var errs []error
	for _, p := range s.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
		addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		sc.Close()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1]), nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("no sentinel names the master: %w", errors.Join(errs...))
}

// DataAddrs returns the addresses of the two data nodes, the first master
// first.
func (s *RedisSentinel) DataAddrs() []string {
	return []string{s.data[0].Addr(), s.data[1].Addr()}
}

// Kill ends the data node at addr with SIGKILL and waits for it to exit. The
// node stays down.
func (s *RedisSentinel) Kill(addr string) error {
	for _, p := range s.data {
		if p.Addr() == addr {
			return p.halt(syscall.SIGKILL)
		}
	}
	return fmt.Errorf("no data node at %s", addr)
}

// WaitMaster waits until every sentinel names a master other than old and
// that master answers as a master; it returns its address.
func (s *RedisSentinel) WaitMaster(old string, timeout time.Duration) (string, error) {
	var now string
	err := waitFor(timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, p := range s.sentinels {
			sc := redis.NewSentinelClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
			addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
			sc.Close()
			if err != nil {
				return err
			}
			if a := net.JoinHostPort(addr[0], addr[1]); a == old {
				return fmt.Errorf("sentinel %s still names %s", p.Addr(), a)
			} else {
				now = a
			}
		}
		nc := redis.NewClient(&redis.Options{Addr: now, MaxRetries: -1})
		defer nc.Close()
		role, err := nc.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s is not a master yet: %v", now, role)
		}
		return nil
	})
	return now, err
}

// settled reports why the sentinels are not ready yet, or nil.
func (s *RedisSentinel) settled() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, p := range s.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
		m, err := sc.Master(ctx, SentinelMaster).Result()
		sc.Close()
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", p.Addr(), err)
		}
		if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" || m["flags"] != "master" {
			return fmt.Errorf("sentinel %s: flags %s, %s replicas, %s other sentinels", p.Addr(), m["flags"], m["num-slaves"], m["num-other-sentinels"])
		}
	}
	return nil
}

// linkUp reports whether the replica at addr is in sync with its master.
func linkUp(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	nc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer nc.Close()
	info, err := nc.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if f := infoFields(info); f["master_link_status"] != "up" {
		return fmt.Errorf("master_link_status:%s", f["master_link_status"])
	}
	return nil
}

// waitFor calls check until it returns nil or timeout passes.
func waitFor(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
