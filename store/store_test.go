package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// The behaviour both stores share is tested by storetest.Run, from
// TestRedisContract and TestBoltContract; this package's own tests cover
// what is particular to each backend.

const long = time.Hour

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var baseTime = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)

// newRecord is the contract suite's sample record (storetest.Record): its
// fields hold the byte sequences a store must not alter.
func newRecord(ref, messageID, fp string, at time.Time) *headers.Record {
	return storetest.Record(ref, messageID, fp, at)
}

func refsOf(recs []*headers.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Ref
	}
	return out
}

// claimConcurrently calls Claim(ref, rcpt) n times at once, spreading the
// calls over stores, and counts the results.
func claimConcurrently(t *testing.T, stores []store.Store, ref, rcpt string, n int) map[store.ClaimResult]int {
	t.Helper()
	ctx := ctxT(t)
	var (
		mu      sync.Mutex
		results = map[store.ClaimResult]int{}
		wg      sync.WaitGroup
		start   = make(chan struct{})
	)
	for i := range n {
		s := stores[i%len(stores)]
		wg.Go(func() {
			<-start
			res, err := s.Claim(ctx, ref, rcpt, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			results[res]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return results
}
