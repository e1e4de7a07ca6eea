package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recallrelay/recallrelay/headers"
)

// redisScanCount is the COUNT hint of each SCAN call of Redis.Scan, and so
// about the number of keys read per round trip.
const redisScanCount = 500

// dlvReadScript reads a record's delivery state in one step. KEYS[1] is the
// record, KEYS[2] its delivery-state hash. It returns nil when the record
// does not exist, otherwise the server time (seconds, microseconds) and the
// hash's fields and values.
const dlvReadScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local t = redis.call('TIME')
return {t[1], t[2], redis.call('HGETALL', KEYS[2])}
`

// Deliveries returns the delivery state of the record ref, read with the
// Redis server's clock in one script call, or an error wrapping ErrNotFound
// if the record does not exist.
func (r *Redis) Deliveries(ctx context.Context, ref string) (Deliveries, error) {
	if err := usable(ctx, &r.closed); err != nil {
		return Deliveries{}, fmt.Errorf("store: deliveries: %w", err)
	}
	if err := lookupRef("deliveries", ref); err != nil {
		return Deliveries{}, err
	}
	v, err := r.c.Eval(ctx, dlvReadScript, []string{r.recKey(ref), r.dlvKey(ref)}).Slice()
	if errors.Is(err, redis.Nil) {
		return Deliveries{}, fmt.Errorf("store: deliveries %s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return Deliveries{}, fmt.Errorf("store: deliveries %s: %w", ref, err)
	}
	d, err := decodeRedisDeliveries(v)
	if err != nil {
		return Deliveries{}, fmt.Errorf("store: deliveries %s: %w", ref, err)
	}
	return d, nil
}

// decodeRedisDeliveries decodes the reply of dlvReadScript.
func decodeRedisDeliveries(v []any) (Deliveries, error) {
	d := Deliveries{Recipients: map[string]RecipientState{}}
	if len(v) != 3 {
		return d, fmt.Errorf("unexpected script reply %v", v)
	}
	sec, err1 := strconv.ParseInt(fmt.Sprint(v[0]), 10, 64)
	usec, err2 := strconv.ParseInt(fmt.Sprint(v[1]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return d, fmt.Errorf("server time: %w", err)
	}
	d.At = time.Unix(sec, usec*1000)
	kv, ok := v[2].([]any)
	if !ok || len(kv)%2 != 0 {
		return d, fmt.Errorf("unexpected delivery-state reply %v", v[2])
	}
	for i := 0; i < len(kv); i += 2 {
		field, _ := kv[i].(string)
		val, _ := kv[i+1].(string)
		err := deliveryField(&d, field,
			func() (RecipientState, error) {
				if val == "d" {
					return RecipientState{Delivery: DeliveryConfirmed}, nil
				}
				ms, ok := strings.CutPrefix(val, "c:")
				n, err := strconv.ParseInt(ms, 10, 64)
				if !ok || err != nil {
					return RecipientState{}, fmt.Errorf("malformed state %q", val)
				}
				return claimState(time.UnixMilli(n), d.At), nil
			},
			func() (int64, error) { return strconv.ParseInt(val, 10, 64) })
		if err != nil {
			return d, err
		}
	}
	return d, nil
}

// TTL returns the remaining lifetime of the record ref, as Redis's PTTL
// reports it, or an error wrapping ErrNotFound if the record does not exist.
func (r *Redis) TTL(ctx context.Context, ref string) (time.Duration, error) {
	if err := usable(ctx, &r.closed); err != nil {
		return 0, fmt.Errorf("store: ttl: %w", err)
	}
	if err := lookupRef("ttl", ref); err != nil {
		return 0, err
	}
	// Do, not PTTL: go-redis turns the replies -1 and -2 into durations.
	ms, err := r.c.Do(ctx, "PTTL", r.recKey(ref)).Int64()
	if err != nil {
		return 0, fmt.Errorf("store: ttl %s: %w", ref, err)
	}
	switch {
	case ms == -2:
		return 0, fmt.Errorf("store: ttl %s: %w", ref, ErrNotFound)
	case ms < 0:
		return -1, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Scan calls fn with each live record until fn returns false. It runs SCAN
// over the record keys of its key prefix, on every master of a Redis
// Cluster in turn, and reads each batch of records with one pipeline.
func (r *Redis) Scan(ctx context.Context, fn func(*headers.Record) bool) error {
	if err := usable(ctx, &r.closed); err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	nodes, err := r.scanNodes(ctx)
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	match := globEscape(r.prefix) + ":{*}:rec"
	for _, n := range nodes {
		more, err := r.scanNode(ctx, n, match, fn)
		if err != nil {
			return fmt.Errorf("store: scan: %w", err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// scanNodes returns the clients Scan runs SCAN on: every master of a
// cluster, or the client itself.
func (r *Redis) scanNodes(ctx context.Context) ([]redis.Cmdable, error) {
	cc, ok := r.c.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{r.c}, nil
	}
	var (
		mu    sync.Mutex
		nodes []redis.Cmdable
	)
	err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		nodes = append(nodes, c)
		return nil
	})
	return nodes, err
}

// scanNode runs Scan on one node. It reports whether fn wants more records.
func (r *Redis) scanNode(ctx context.Context, c redis.Cmdable, match string, fn func(*headers.Record) bool) (bool, error) {
	var cursor uint64
	for {
		if err := usable(ctx, &r.closed); err != nil {
			return false, err
		}
		keys, next, err := c.Scan(ctx, cursor, match, redisScanCount).Result()
		if err != nil {
			return false, err
		}
		recs, err := r.readKeys(ctx, c, keys)
		if err != nil {
			return false, err
		}
		for _, rec := range recs {
			if !fn(rec) {
				return false, nil
			}
		}
		if next == 0 {
			return true, nil
		}
		cursor = next
	}
}

// readKeys reads and decodes the records stored under keys, found by SCAN,
// skipping those that have expired since and keys that SCAN's pattern
// matched but that are no record key of this store.
func (r *Redis) readKeys(ctx context.Context, c redis.Cmdable, keys []string) ([]*headers.Record, error) {
	refs := make([]string, 0, len(keys))
	for _, k := range keys {
		if ref, ok := r.refOfRecKey(k); ok {
			refs = append(refs, ref)
		}
	}
	if len(refs) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringCmd, len(refs))
	// One GET per key rather than MGET: the records live in different
	// Cluster slots.
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ref := range refs {
			cmds[i] = p.Get(ctx, r.recKey(ref))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	recs := make([]*headers.Record, 0, len(refs))
	for i, cmd := range cmds {
		data, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", refs[i], err)
		}
		rec, err := decodeRecord(data)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", refs[i], err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// refOfRecKey returns the ref that key, a record key of r, names; ok is
// false if key is not one.
func (r *Redis) refOfRecKey(key string) (ref string, ok bool) {
	rest, ok := strings.CutPrefix(key, r.prefix+":{")
	if !ok {
		return "", false
	}
	ref, ok = strings.CutSuffix(rest, "}:rec")
	if !ok || checkRef(ref) != nil {
		return "", false
	}
	return ref, true
}

// globEscape escapes the characters special in a Redis glob pattern, so that
// the pattern matches s literally.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\', '^':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
