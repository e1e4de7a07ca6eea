package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relaytest"
	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// capacityEnv runs TestRedisCapacity: the number of records to write.
const capacityEnv = "RECALLRELAY_CAPACITY_RECORDS"

// TestRedisCapacity measures, on a fresh redis-server of its own, what
// records cost: used_memory per record (record, delivery state with one
// confirmed recipient and the return counter, Message-ID and fingerprint
// index entries) and Redis commands per message on each leg, from INFO
// commandstats. It only logs figures, and runs only when
// RECALLRELAY_CAPACITY_RECORDS is set (e.g. 20000):
//
//	RECALLRELAY_CAPACITY_RECORDS=20000 go test -run TestRedisCapacity -v ./store/
func TestRedisCapacity(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(capacityEnv))
	if n <= 0 {
		t.Skipf("set %s to a number of records to measure", capacityEnv)
	}
	srv := storetest.StartRedisServer(t)
	cfg, err := store.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := st.Client()
	ctx := context.Background()
	rec := func(i int) *headers.Record {
		r := storetest.Record(fmt.Sprintf("r%025d", i), fmt.Sprintf("<cap.%d@contoso.example>", i), fmt.Sprintf("%064x", i), time.Now())
		return r
	}
	exchange := corpusSized(t)
	mk := func(i int) *headers.Record {
		r := rec(i)
		r.Fields = exchange.Fields
		return r
	}
	sample := mk(0)
	t.Logf("one record: %d captured fields, %d bytes of fields, %d recipients", len(sample.Fields), fieldBytes(sample), len(sample.Rcpts))

	// Commands per message, per leg, on a handful of messages.
	const m = 100
	before := commandStats(t, c)
	for i := 0; i < m; i++ {
		if err := st.Put(ctx, mk(1_000_000+i), 72*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	tenant := diffStats(before, commandStats(t, c))
	before = commandStats(t, c)
	for i := 0; i < m; i++ {
		r := mk(1_000_000 + i)
		if _, err := st.Get(ctx, r.Ref); err != nil {
			t.Fatal(err)
		}
		for _, rc := range r.Rcpts {
			if _, err := st.Claim(ctx, r.Ref, rc, time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := st.Confirm(ctx, r.Ref, rc); err != nil {
				t.Fatal(err)
			}
		}
	}
	ret := diffStats(before, commandStats(t, c))
	t.Logf("tenant leg (Put): %s per message", perMessage(tenant, m))
	t.Logf("return leg (Get by reference, Claim+Confirm for each of %d recipients): %s per message", len(sample.Rcpts), perMessage(ret, m))
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	// Memory per record, with its delivery state.
	mem0 := usedMemory(t, c)
	for i := 0; i < n; i++ {
		r := mk(i)
		if err := st.Put(ctx, r, 72*time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Claim(ctx, r.Ref, r.Rcpts[0], time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := st.Confirm(ctx, r.Ref, r.Rcpts[0]); err != nil {
			t.Fatal(err)
		}
	}
	mem1 := usedMemory(t, c)
	per := float64(mem1-mem0) / float64(n)
	t.Logf("%d records: used_memory %d → %d bytes: %.0f bytes per record, %.0f records per GiB", n, mem0, mem1, per, float64(1<<30)/per)
}

// corpusSized returns a record holding what the tenant leg captures by
// default (headers.DefaultCapture) of the generated Exchange Online message
// with the largest such capture.
func corpusSized(t *testing.T) *headers.Record {
	m := headers.MustMatcher(headers.DefaultCapture...)
	var best *headers.Record
	for _, msg := range relaytest.Generate(relaytest.GenerateOptions{Seed: 7}) {
		h, _, err := headers.ReadHeader(bytes.NewReader(msg.Data), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		r := &headers.Record{Fields: h.Capture(m)}
		if best == nil || fieldBytes(r) > fieldBytes(best) {
			best = r
		}
	}
	return best
}

func fieldBytes(r *headers.Record) int {
	n := 0
	for _, f := range r.Fields {
		n += len(f.Raw)
	}
	return n
}

func usedMemory(t *testing.T, c redis.UniversalClient) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// commandStats returns the calls per command from INFO commandstats.
func commandStats(t *testing.T, c redis.UniversalClient) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, _ := strconv.ParseInt(calls, 10, 64)
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

func diffStats(a, b map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range b {
		if d := v - a[k]; d > 0 && k != "info" {
			out[k] = d
		}
	}
	return out
}

func perMessage(d map[string]int64, m int) string {
	var total int64
	var parts []string
	for k, v := range d {
		total += v
		parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(v)/float64(m)))
	}
	return fmt.Sprintf("%.1f commands (%s)", float64(total)/float64(m), strings.Join(sortedStrings(parts), ", "))
}

func sortedStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}
