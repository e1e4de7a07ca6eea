package store

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recallrelay/recallrelay/headers"
)

// DefaultKeyPrefix is the key prefix used when RedisConfig.KeyPrefix is empty.
const DefaultKeyPrefix = "rr"

// RedisConfig describes how to reach Redis.
//
// The deployment kind follows from the fields, as for
// redis.NewUniversalClient: with MasterName set, Addrs are Sentinel addresses
// and MasterName names the monitored master; otherwise several Addrs are
// seed nodes of a Redis Cluster, and a single address is a single node.
type RedisConfig struct {
	// Addrs are "host:port" addresses, or a single Unix socket path.
	Addrs []string
	// MasterName is the Sentinel master name; empty unless Sentinel is used.
	MasterName string
	// Username and Password authenticate to Redis (ACL user or
	// requirepass). With Sentinel they authenticate to the data nodes.
	Username string
	Password string
	// DB is the database number. Redis Cluster only has database 0.
	DB int
	// KeyPrefix starts every key the store writes; DefaultKeyPrefix when
	// empty. It must not contain braces.
	KeyPrefix string
	// TLS, when non-nil, makes every connection use TLS with this
	// configuration.
	TLS *tls.Config
	// DialTimeout, ReadTimeout and WriteTimeout bound network operations;
	// zero selects the go-redis defaults (5s, 3s and ReadTimeout).
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// WaitReplicas, when positive, makes Put wait until that many replicas
	// have acknowledged each of its writes (Redis WAIT on the connection
	// that wrote), for at most WaitTimeout (DefaultWaitTimeout when zero),
	// and fail when fewer did. Redis replicates asynchronously: without it,
	// a record written to a master that dies before its replica has it is
	// gone after the failover, and the vendor's return of that message finds
	// no record. With one replica per master and WaitReplicas 1, a replica
	// promoted by Sentinel or Cluster has every record Put acknowledged.
	WaitReplicas int
	WaitTimeout  time.Duration
}

// DefaultWaitTimeout bounds Put's wait for replicas (RedisConfig.WaitReplicas).
const DefaultWaitTimeout = time.Second

// ErrReplicas is wrapped by the error of a Put that fewer replicas than
// RedisConfig.WaitReplicas acknowledged in time.
var ErrReplicas = errors.New("store: not enough replicas acknowledged the write")

// String describes the configuration for logs, with the password redacted.
func (c RedisConfig) String() string {
	pw := ""
	if c.Password != "" {
		pw = "xxxxx"
	}
	return fmt.Sprintf("redis{addrs=%v master=%q user=%q password=%q db=%d prefix=%q tls=%t wait_replicas=%d}",
		c.Addrs, c.MasterName, c.Username, pw, c.DB, c.KeyPrefix, c.TLS != nil, c.WaitReplicas)
}

// GoString is String, so that %#v does not print the password either.
func (c RedisConfig) GoString() string { return c.String() }

// URL query parameters ParseRedisURL accepts. The go-redis parameters are
// limited to those RedisConfig can carry, so that no setting in a URL is
// silently ignored.
var (
	redisURLOwnParams   = []string{"key_prefix", "master_name", "addr"}
	redisURLDriverParam = []string{"db", "dial_timeout", "read_timeout", "write_timeout", "skip_verify"}
)

// ParseRedisURL parses a Redis URL as redis.ParseURL does, e.g.
// "redis://user:password@host:6379/15?dial_timeout=2s", "rediss://host" or
// "unix:///run/redis.sock?db=1", into a RedisConfig.
//
// Besides the go-redis parameters db, dial_timeout, read_timeout,
// write_timeout and skip_verify, the query may hold key_prefix (the
// KeyPrefix), master_name (the Sentinel MasterName) and addr, repeatable, for
// further "host:port" addresses (Cluster seed nodes or Sentinels). Any other
// parameter is an error. Errors never contain the password, which must be
// percent-encoded as RFC 3986 requires if it holds '/', '?', '#' or '@'.
func ParseRedisURL(rawURL string) (RedisConfig, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return RedisConfig{}, fmt.Errorf("store: parse redis URL: %s", urlParseError(rawURL, err))
	}
	q := u.Query()
	for k := range q {
		if !slices.Contains(redisURLOwnParams, k) && !slices.Contains(redisURLDriverParam, k) {
			return RedisConfig{}, fmt.Errorf("store: parse redis URL %s: unsupported parameter %q", u.Redacted(), k)
		}
	}
	var cfg RedisConfig
	cfg.KeyPrefix = q.Get("key_prefix")
	cfg.MasterName = q.Get("master_name")
	extra := q["addr"]
	for _, k := range redisURLOwnParams {
		q.Del(k)
	}
	// go-redis gets the URL without credentials, so that none of its
	// errors can repeat them.
	stripped := *u
	stripped.User = nil
	stripped.RawQuery = q.Encode()
	opt, err := redis.ParseURL(stripped.String())
	if err != nil {
		return RedisConfig{}, fmt.Errorf("store: parse redis URL %s: %w", u.Redacted(), err)
	}
	if u.User != nil {
		cfg.Username = u.User.Username()
		cfg.Password, _ = u.User.Password()
	}
	cfg.Addrs = append([]string{opt.Addr}, extra...)
	cfg.DB = opt.DB
	cfg.TLS = opt.TLSConfig
	cfg.DialTimeout = opt.DialTimeout
	cfg.ReadTimeout = opt.ReadTimeout
	cfg.WriteTimeout = opt.WriteTimeout
	return cfg, nil
}

// urlParseError describes why url.Parse rejected rawURL without repeating
// its credentials: url.Error quotes the whole URL, and an invalid escape in a
// password is quoted too.
func urlParseError(rawURL string, err error) string {
	withoutUser, hadUser := stripUserinfo(rawURL)
	if hadUser {
		_, err2 := url.Parse(withoutUser)
		if err2 == nil {
			return "invalid user name or password"
		}
		err = err2
	}
	if strings.Contains(withoutUser, "@") {
		return "malformed URL (details withheld: it may hold credentials)"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// stripUserinfo removes "user:password@" from the authority of rawURL and
// reports whether there was any.
func stripUserinfo(rawURL string) (string, bool) {
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return rawURL, false
	}
	start, end := i+3, len(rawURL)
	if j := strings.IndexAny(rawURL[start:], "/?#"); j >= 0 {
		end = start + j
	}
	at := strings.LastIndexByte(rawURL[start:end], '@')
	if at < 0 {
		return rawURL, false
	}
	return rawURL[:start] + rawURL[start+at+1:], true
}

// Redis is a store on Redis. All keys of one record share the hash tag of the
// record's ref, so that they live in one Cluster slot and the delivery-state
// script can touch them atomically. It is safe for concurrent use, and
// several processes may share one Redis.
//
// Keys, with P the key prefix:
//
//	P:{<ref>}:rec              the record, JSON
//	P:{<ref>}:dlv              hash of delivery claims and the return counter
//	P:{mid:<sha256 of msg-id>} set of refs recorded under a Message-ID
//	P:{fp:<fingerprint>}       set of refs recorded under a fingerprint
//
// An index set lives as long as its longest-lived member, so it may name refs
// whose records have expired; lookups skip them and remove them.
type Redis struct {
	c         redis.UniversalClient
	prefix    string
	ownClient bool
	dlv       *redis.Script
	// waitReplicas and waitTimeout: RedisConfig's WaitReplicas and
	// WaitTimeout.
	waitReplicas int
	waitTimeout  time.Duration

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store on a new go-redis client built from cfg. It does
// not connect; call Ping to check that Redis is reachable. Close closes the
// client.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("store: redis: no address configured")
	}
	for _, a := range cfg.Addrs {
		if a == "" {
			return nil, errors.New("store: redis: empty address")
		}
	}
	if cfg.MasterName == "" && len(cfg.Addrs) > 1 && cfg.DB != 0 {
		return nil, fmt.Errorf("store: redis: cluster %v has no database %d, only 0", cfg.Addrs, cfg.DB)
	}
	prefix, err := checkKeyPrefix(cfg.KeyPrefix)
	if err != nil {
		return nil, err
	}
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        cfg.Addrs,
		MasterName:   cfg.MasterName,
		Username:     cfg.Username,
		Password:     cfg.Password,
		DB:           cfg.DB,
		TLSConfig:    cfg.TLS,
		DialTimeout:  cfg.DialTimeout,
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
		ClientName:   "recallrelay",
		// Let a context deadline cut a blocked read or write short, so that
		// an SMTP session's deadline bounds its store calls.
		ContextTimeoutEnabled: true,
	})
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.AddHook(reloadOnNetError{cc})
	}
	if cfg.WaitReplicas < 0 {
		return nil, fmt.Errorf("store: redis: wait_replicas %d is negative", cfg.WaitReplicas)
	}
	r := newRedis(c, prefix)
	r.ownClient = true
	r.waitReplicas, r.waitTimeout = cfg.WaitReplicas, cfg.WaitTimeout
	if r.waitTimeout <= 0 {
		r.waitTimeout = DefaultWaitTimeout
	}
	return r, nil
}

// reloadOnNetError makes a cluster client read the cluster's slot map again
// after a command or pipeline failed without an answer from Redis (a
// connection refused, reset or timed out). Without it, go-redis follows
// only MOVED replies and its 60-second periodic reload: after a master dies
// and its replica takes over, nothing answers MOVED for the dead master's
// slots, so every write to them failed for up to a minute after the
// replica was promoted (seen in TestClusterFailover). The reload is lazy
// and go-redis runs at most one at a time.
type reloadOnNetError struct{ cc *redis.ClusterClient }

func (h reloadOnNetError) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnNetError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnNetError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnNetError) check(ctx context.Context, err error) {
	var rerr redis.Error
	if err == nil || errors.Is(err, redis.Nil) || errors.As(err, &rerr) || ctx.Err() != nil {
		return
	}
	h.cc.ReloadState(context.WithoutCancel(ctx))
}

// NewRedisClient returns a store on an existing client, with keys starting
// with keyPrefix (DefaultKeyPrefix when empty). The caller keeps ownership of
// c: Close does not close it. It panics if keyPrefix contains braces.
func NewRedisClient(c redis.UniversalClient, keyPrefix string) *Redis {
	prefix, err := checkKeyPrefix(keyPrefix)
	if err != nil {
		panic(err)
	}
	return newRedis(c, prefix)
}

func newRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix, dlv: redis.NewScript(dlvScript)}
}

// checkKeyPrefix validates a key prefix and applies the default.
func checkKeyPrefix(p string) (string, error) {
	if p == "" {
		return DefaultKeyPrefix, nil
	}
	if err := CheckKeyPrefix(p); err != nil {
		return "", fmt.Errorf("store: redis: %w", err)
	}
	return p, nil
}

// CheckKeyPrefix reports a key prefix the Redis store refuses: one with a
// brace (it would break the hash tags that keep a record's keys in one
// cluster slot), a blank or a control character. Configuration checks use
// it, so that what check accepts, the store accepts.
func CheckKeyPrefix(p string) error {
	switch {
	case strings.ContainsAny(p, "{}"):
		return fmt.Errorf("key prefix %q contains a brace", p)
	case strings.ContainsFunc(p, func(c rune) bool { return c <= ' ' || c == 0x7f }):
		return fmt.Errorf("key prefix %q contains a blank or a control character", p)
	}
	return nil
}

// Client returns the underlying client, e.g. for health reporting or tests.
// The caller must not close it.
func (r *Redis) Client() redis.UniversalClient { return r.c }

// KeyPrefix returns the prefix of every key the store writes.
func (r *Redis) KeyPrefix() string { return r.prefix }

func (r *Redis) recKey(ref string) string { return r.prefix + ":{" + ref + "}:rec" }
func (r *Redis) dlvKey(ref string) string { return r.prefix + ":{" + ref + "}:dlv" }

func (r *Redis) midKey(messageID string) string {
	sum := sha256.Sum256([]byte(messageID))
	return r.prefix + ":{mid:" + hex.EncodeToString(sum[:]) + "}"
}

func (r *Redis) fpKey(fp string) string { return r.prefix + ":{fp:" + fp + "}" }

// Put stores rec under rec.Ref for ttl, replacing any record with that ref,
// and adds rec.Ref to the Message-ID and fingerprint indexes for those of
// rec.MessageID and rec.Fingerprint that are non-empty. The delivery state of
// an existing record is kept and its expiry moved to match the new record.
//
// On a single node (or behind Sentinel), Put is one MULTI/EXEC transaction,
// so it is atomic. A Redis Cluster runs no transaction across slots, and the
// indexes live in other slots than the record: there each slot's writes are
// a transaction of their own, the index entries first and the record last,
// so that a record that exists is indexed. A Put that fails part-way leaves
// index entries that lookups skip and prune, or a record without its
// indexes; either way it returns an error, and the relay answers 4xx.
func (r *Redis) Put(ctx context.Context, rec *headers.Record, ttl time.Duration) error {
	if err := usable(ctx, &r.closed); err != nil {
		return fmt.Errorf("store: put: %w", err)
	}
	if err := checkPut(rec, ttl); err != nil {
		return err
	}
	data, err := encodeRecord(rec)
	if err != nil {
		return fmt.Errorf("store: put %s: %w", rec.Ref, err)
	}
	// EXPIRE takes whole seconds; rounding up keeps an index alive at least
	// as long as the record it names.
	idxTTL := (ttl + time.Second - 1).Truncate(time.Second)
	var idx []string
	if rec.MessageID != "" {
		idx = append(idx, r.midKey(rec.MessageID))
	}
	if rec.Fingerprint != "" {
		idx = append(idx, r.fpKey(rec.Fingerprint))
	}
	index := func(p redis.Pipeliner, k string) {
		p.SAdd(ctx, k, rec.Ref)
		// A new set has no TTL, and GT treats that as infinite: NX gives
		// it one, GT then only ever extends it.
		p.ExpireNX(ctx, k, idxTTL)
		p.ExpireGT(ctx, k, idxTTL)
	}
	record := func(p redis.Pipeliner) {
		p.Set(ctx, r.recKey(rec.Ref), data, ttl)
		p.PExpire(ctx, r.dlvKey(rec.Ref), ttl)
	}
	if _, cluster := r.c.(*redis.ClusterClient); !cluster {
		err = r.write(ctx, "", func(p redis.Pipeliner) {
			record(p)
			for _, k := range idx {
				index(p, k)
			}
		})
	} else {
		for _, k := range idx {
			if err = r.write(ctx, k, func(p redis.Pipeliner) { index(p, k) }); err != nil {
				break
			}
		}
		if err == nil {
			err = r.write(ctx, r.recKey(rec.Ref), record)
		}
	}
	if err != nil {
		return fmt.Errorf("store: put %s: %w", rec.Ref, err)
	}
	return nil
}

// write runs cmds in one MULTI/EXEC transaction (on a Cluster, every key
// of cmds is in key's slot) and, with WaitReplicas set, then waits on the
// same connection until enough replicas have the write: WAIT counts the
// writes of the connection it is sent on, so it needs that connection,
// not the pool's next one.
func (r *Redis) write(ctx context.Context, key string, cmds func(p redis.Pipeliner)) error {
	tx := func(p redis.Pipeliner) error { cmds(p); return nil }
	if r.waitReplicas <= 0 {
		_, err := r.c.TxPipelined(ctx, tx)
		return err
	}
	var node *redis.Client
	switch c := r.c.(type) {
	case *redis.Client: // one node, or Sentinel's current master
		node = c
	case *redis.ClusterClient:
		m, err := c.MasterForKey(ctx, key)
		if err != nil {
			return err
		}
		node = m
	default:
		return fmt.Errorf("store: wait_replicas needs a node or cluster client, not %T", r.c)
	}
	conn := node.Conn()
	defer conn.Close()
	if _, err := conn.TxPipelined(ctx, tx); err != nil {
		return err
	}
	n, err := conn.Wait(ctx, r.waitReplicas, r.waitTimeout).Result()
	if err != nil {
		return fmt.Errorf("WAIT: %w", err)
	}
	if n < int64(r.waitReplicas) {
		return fmt.Errorf("%w: %d of %d replicas within %s", ErrReplicas, n, r.waitReplicas, r.waitTimeout)
	}
	return nil
}

// Get returns the record stored under ref, or an error wrapping ErrNotFound.
func (r *Redis) Get(ctx context.Context, ref string) (*headers.Record, error) {
	if err := usable(ctx, &r.closed); err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	if err := lookupRef("get", ref); err != nil {
		return nil, err
	}
	data, err := r.c.Get(ctx, r.recKey(ref)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: get %s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", ref, err)
	}
	rec, err := decodeRecord(data)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", ref, err)
	}
	return rec, nil
}

// ByMessageID returns the live records whose MessageID is messageID, ordered
// by ReceivedAt and then Ref. It returns an empty slice when there are none.
func (r *Redis) ByMessageID(ctx context.Context, messageID string) ([]*headers.Record, error) {
	if err := usable(ctx, &r.closed); err != nil {
		return nil, fmt.Errorf("store: message-id lookup: %w", err)
	}
	if messageID == "" {
		return []*headers.Record{}, nil
	}
	return r.byIndex(ctx, "message-id lookup", r.midKey(messageID), func(rec *headers.Record) bool {
		return sameValue(rec.MessageID, messageID)
	})
}

// ByFingerprint returns the live records whose Fingerprint is fp, ordered by
// ReceivedAt and then Ref. It returns an empty slice when there are none.
func (r *Redis) ByFingerprint(ctx context.Context, fp string) ([]*headers.Record, error) {
	if err := usable(ctx, &r.closed); err != nil {
		return nil, fmt.Errorf("store: fingerprint lookup: %w", err)
	}
	if fp == "" {
		return []*headers.Record{}, nil
	}
	return r.byIndex(ctx, "fingerprint lookup", r.fpKey(fp), func(rec *headers.Record) bool {
		return sameValue(rec.Fingerprint, fp)
	})
}

// byIndex loads the records named by the index set key that satisfy match,
// and removes from the set the refs whose record has expired or was replaced
// by one no longer indexed under key.
func (r *Redis) byIndex(ctx context.Context, op, key string, match func(*headers.Record) bool) ([]*headers.Record, error) {
	refs, err := r.c.SMembers(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	out := []*headers.Record{}
	if len(refs) == 0 {
		return out, nil
	}
	var stale []any
	cmds := make([]*redis.StringCmd, len(refs))
	// One GET per ref rather than MGET: the records live in different
	// Cluster slots.
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ref := range refs {
			if checkRef(ref) != nil {
				continue
			}
			cmds[i] = p.Get(ctx, r.recKey(ref))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	for i, cmd := range cmds {
		if cmd == nil {
			stale = append(stale, refs[i])
			continue
		}
		data, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			stale = append(stale, refs[i])
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", op, err)
		}
		rec, err := decodeRecord(data)
		if err != nil {
			return nil, fmt.Errorf("store: %s: record %s: %w", op, refs[i], err)
		}
		if !match(rec) {
			stale = append(stale, refs[i])
			continue
		}
		out = append(out, rec)
	}
	if len(stale) > 0 {
		// Pruning is housekeeping: the result is right without it, and
		// the set expires anyway, so a failure here is not reported.
		_ = r.c.SRem(ctx, key, stale...).Err()
	}
	sortRecords(out)
	return out, nil
}

// dlvScript runs one delivery-state operation on a record's keys.
//
// KEYS[1] is the record, KEYS[2] its delivery-state hash. ARGV[1] is the
// operation, ARGV[2] the hash field, ARGV[3] the lease in milliseconds (claim
// only). A claim is stored as "c:<lease end, Unix ms of the Redis clock>", a
// confirmed delivery as "d". It returns -1 when the record does not exist;
// otherwise 1, 2 or 3 for claim (Claimed, AlreadyDelivered, InFlight), the
// new counter for count, and 0 for confirm and release. Every write gives the
// hash the record's remaining lifetime.
const dlvScript = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return -1 end
local function keep()
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('PERSIST', KEYS[2]) end
end
local op = ARGV[1]
if op == 'count' then
  local n = redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  keep()
  return n
end
local v = redis.call('HGET', KEYS[2], ARGV[2])
if op == 'claim' then
  if v == 'd' then return 2 end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if v and tonumber(string.sub(v, 3)) > now then return 3 end
  redis.call('HSET', KEYS[2], ARGV[2], string.format('c:%d', now + tonumber(ARGV[3])))
  keep()
  return 1
elseif op == 'confirm' then
  if v ~= 'd' then
    redis.call('HSET', KEYS[2], ARGV[2], 'd')
    keep()
  end
  return 0
elseif op == 'release' then
  if v and v ~= 'd' then redis.call('HDEL', KEYS[2], ARGV[2]) end
  return 0
end
return redis.error_reply('unknown operation ' .. op)
`

// runDlv runs dlvScript and returns its integer result.
func (r *Redis) runDlv(ctx context.Context, ref, op, field string, leaseMS int64) (int64, error) {
	n, err := r.dlv.Run(ctx, r.c, []string{r.recKey(ref), r.dlvKey(ref)}, op, field, leaseMS).Int64()
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Claim tries to take the delivery of the message recorded under ref to rcpt
// for lease. See ClaimResult for the outcomes. The lease is measured on the
// Redis server's clock, so relay processes need not agree on the time. It
// returns an error wrapping ErrNotFound if the record does not exist.
func (r *Redis) Claim(ctx context.Context, ref, rcpt string, lease time.Duration) (ClaimResult, error) {
	if err := usable(ctx, &r.closed); err != nil {
		return 0, fmt.Errorf("store: claim: %w", err)
	}
	key, err := rcptKey(rcpt)
	if err != nil {
		return 0, fmt.Errorf("store: claim: %w", err)
	}
	if lease < minLease {
		return 0, fmt.Errorf("store: claim: lease %v shorter than %v", lease, minLease)
	}
	if err := lookupRef("claim", ref); err != nil {
		return 0, err
	}
	n, err := r.runDlv(ctx, ref, "claim", fieldRcpt+key, lease.Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("store: claim %s: %w", ref, err)
	}
	switch n {
	case -1:
		return 0, fmt.Errorf("store: claim %s: %w", ref, ErrNotFound)
	case 1:
		return Claimed, nil
	case 2:
		return AlreadyDelivered, nil
	case 3:
		return InFlight, nil
	default:
		return 0, fmt.Errorf("store: claim %s: unexpected script result %d", ref, n)
	}
}

// Confirm records that the message recorded under ref was delivered to rcpt;
// later claims for rcpt get AlreadyDelivered for the rest of the record's
// life. It returns an error wrapping ErrNotFound if the record does not
// exist.
func (r *Redis) Confirm(ctx context.Context, ref, rcpt string) error {
	return r.settle(ctx, "confirm", ref, rcpt)
}

// Release drops an unconfirmed claim on (ref, rcpt), so that the delivery can
// be claimed again at once. It does nothing when there is no claim, when the
// delivery was confirmed, or when the record no longer exists.
func (r *Redis) Release(ctx context.Context, ref, rcpt string) error {
	return r.settle(ctx, "release", ref, rcpt)
}

func (r *Redis) settle(ctx context.Context, op, ref, rcpt string) error {
	if err := usable(ctx, &r.closed); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	key, err := rcptKey(rcpt)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	if err := lookupRef(op, ref); err != nil {
		if op == "release" {
			return nil
		}
		return err
	}
	n, err := r.runDlv(ctx, ref, op, fieldRcpt+key, 0)
	if err != nil {
		return fmt.Errorf("store: %s %s: %w", op, ref, err)
	}
	if n == -1 && op == "confirm" {
		return fmt.Errorf("store: %s %s: %w", op, ref, ErrNotFound)
	}
	return nil
}

// CountReturn increments the number of times the message recorded under ref
// came back from the vendor and returns the new count. It returns an error
// wrapping ErrNotFound if the record does not exist.
func (r *Redis) CountReturn(ctx context.Context, ref string) (int64, error) {
	if err := usable(ctx, &r.closed); err != nil {
		return 0, fmt.Errorf("store: count return: %w", err)
	}
	if err := lookupRef("count return", ref); err != nil {
		return 0, err
	}
	n, err := r.runDlv(ctx, ref, "count", fieldReturns, 0)
	if err != nil {
		return 0, fmt.Errorf("store: count return %s: %w", ref, err)
	}
	if n == -1 {
		return 0, fmt.Errorf("store: count return %s: %w", ref, ErrNotFound)
	}
	return n, nil
}

// Ping sends PING through the client and returns nil if Redis answers (in
// a Cluster, the node the client picks).
func (r *Redis) Ping(ctx context.Context) error {
	if err := usable(ctx, &r.closed); err != nil {
		return fmt.Errorf("store: redis ping: %w", err)
	}
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("store: redis ping: %w", err)
	}
	return nil
}

// Close releases the store. It closes the client if NewRedis created it;
// a client passed to NewRedisClient stays open. Later calls of the store's
// other methods return an error wrapping ErrClosed. Calling Close more than
// once returns the first result.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		if r.ownClient {
			if err := r.c.Close(); err != nil {
				r.closeErr = fmt.Errorf("store: redis close: %w", err)
			}
		}
	})
	return r.closeErr
}
