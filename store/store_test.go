package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
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

// newRecord returns a record whose fields hold the byte sequences a store
// must not alter: folding, trailing white space, 8-bit and invalid UTF-8.
func newRecord(ref, messageID, fp string, at time.Time) *headers.Record {
	return &headers.Record{
		Ref:         ref,
		MailFrom:    "alice@contoso.example",
		Params:      headers.MailParams{Size: 12345, Body: "8BITMIME", SMTPUTF8: true},
		Rcpts:       []string{"bob@contoso.example", "Carol@Fabrikam.Example"},
		ReceivedAt:  at,
		Listener:    "tenant",
		ClientAddr:  "40.107.1.2:49152",
		Helo:        "EUR05-AM6-obe.outbound.protection.outlook.com",
		TLS:         "TLS1.3 TLS_AES_256_GCM_SHA384",
		MessageID:   messageID,
		Fingerprint: fp,
		Fields: []headers.Field{
			{Name: "X-MS-Exchange-CrossPremises-AuthAs", Raw: []byte("X-MS-Exchange-CrossPremises-AuthAs: Internal\r\n")},
			{Name: "x-ms-exchange-crosspremises-scl", Raw: []byte("x-ms-exchange-crosspremises-scl:-1\r\n")},
			{Name: "Thread-Topic", Raw: []byte("Thread-Topic: =?utf-8?B?R3LDvMOfZQ==?=\r\n =?utf-8?B?w6TDtsO8?=  \r\n")},
			{Name: "X-Raw", Raw: []byte("X-Raw: \xff\xfe\x00 gr\xc3\xbc\xc3\x9fe\t \r\n\tfolded\r\n")},
			{Name: "Message-ID", Raw: []byte("Message-ID: " + messageID + "\r\n")},
		},
	}
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
