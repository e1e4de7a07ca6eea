package store_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// storeAPI is the method set both implementations share.
type storeAPI interface {
	Put(ctx context.Context, rec *headers.Record, ttl time.Duration) error
	Get(ctx context.Context, ref string) (*headers.Record, error)
	ByMessageID(ctx context.Context, messageID string) ([]*headers.Record, error)
	ByFingerprint(ctx context.Context, fp string) ([]*headers.Record, error)
	Claim(ctx context.Context, ref, rcpt string, lease time.Duration) (store.ClaimResult, error)
	Confirm(ctx context.Context, ref, rcpt string) error
	Release(ctx context.Context, ref, rcpt string) error
	CountReturn(ctx context.Context, ref string) (int64, error)
	Ping(ctx context.Context) error
	Close() error
}

var (
	_ storeAPI = (*store.Redis)(nil)
	_ storeAPI = (*store.Bolt)(nil)
)

// harness is a fresh, empty store with a way to let its time pass.
type harness struct {
	s storeAPI
	// short is a TTL or lease short enough for a test to wait out.
	short time.Duration
	// elapse lets d pass on the store's clock.
	elapse func(d time.Duration)
}

// corpusDir holds real Exchange messages when the shared workspace is there.
const corpusDir = "../../shared/corpus/exchange"

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

// runConformance runs the behaviour every store must share.
func runConformance(t *testing.T, open func(t *testing.T) harness) {
	t.Run("RoundTrip", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		want := newRecord("ref-rt", "<rt@contoso.example>", "fp-rt", baseTime)
		if err := h.s.Put(ctx, want, long); err != nil {
			t.Fatal(err)
		}
		got, err := h.s.Get(ctx, want.Ref)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want.Fields {
			if !bytes.Equal(got.Fields[i].Raw, want.Fields[i].Raw) {
				t.Errorf("field %d raw = %q, want %q", i, got.Fields[i].Raw, want.Fields[i].Raw)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Get = %+v\nwant %+v", got, want)
		}
	})

	t.Run("RoundTripExchangeCorpus", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(corpusDir, "*.eml"))
		if len(files) == 0 {
			t.Skipf("no corpus at %s (shared workspace absent)", corpusDir)
		}
		h := open(t)
		ctx := ctxT(t)
		for i, f := range files {
			want := corpusRecord(t, f)
			want.Ref = "corpus-" + strings.TrimSuffix(filepath.Base(f), ".eml")
			if err := h.s.Put(ctx, want, long); err != nil {
				t.Fatal(err)
			}
			got, err := h.s.Get(ctx, want.Ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Fields) != len(want.Fields) {
				t.Fatalf("%s: %d fields back, want %d", f, len(got.Fields), len(want.Fields))
			}
			for j := range want.Fields {
				if got.Fields[j].Name != want.Fields[j].Name || !bytes.Equal(got.Fields[j].Raw, want.Fields[j].Raw) {
					t.Fatalf("%s field %d = %q, want %q", f, j, got.Fields[j].Raw, want.Fields[j].Raw)
				}
			}
			if i == 0 && len(want.Fields) == 0 {
				t.Fatalf("%s: no header fields parsed", f)
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		if err := h.s.Put(ctx, newRecord("present", "", "", baseTime), long); err != nil {
			t.Fatal(err)
		}
		for _, ref := range []string{"absent", "", "{present}", "pre sent"} {
			if _, err := h.s.Get(ctx, ref); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(%q) error = %v, want ErrNotFound", ref, err)
			}
			if _, err := h.s.Claim(ctx, ref, "bob@contoso.example", time.Minute); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Claim(%q) error = %v, want ErrNotFound", ref, err)
			}
			if err := h.s.Confirm(ctx, ref, "bob@contoso.example"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Confirm(%q) error = %v, want ErrNotFound", ref, err)
			}
			if _, err := h.s.CountReturn(ctx, ref); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("CountReturn(%q) error = %v, want ErrNotFound", ref, err)
			}
			if err := h.s.Release(ctx, ref, "bob@contoso.example"); err != nil {
				t.Errorf("Release(%q) = %v, want nil", ref, err)
			}
		}
	})

	t.Run("PutRejects", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		tests := []struct {
			name string
			rec  *headers.Record
			ttl  time.Duration
		}{
			{"nil record", nil, long},
			{"empty ref", newRecord("", "<m@x>", "", baseTime), long},
			{"zero ttl", newRecord("zero-ttl", "<m@x>", "", baseTime), 0},
			{"negative ttl", newRecord("neg-ttl", "<m@x>", "", baseTime), -time.Second},
			{"brace in ref", newRecord("a{b}c", "<m@x>", "", baseTime), long},
			{"space in ref", newRecord("a b", "<m@x>", "", baseTime), long},
			{"overlong ref", newRecord(strings.Repeat("r", 257), "<m@x>", "", baseTime), long},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := h.s.Put(ctx, tt.rec, tt.ttl)
				if err == nil {
					t.Fatal("Put succeeded")
				}
				if errors.Is(err, store.ErrNotFound) {
					t.Errorf("Put error %v wraps ErrNotFound", err)
				}
				if tt.rec == nil {
					return
				}
				if _, err := h.s.Get(ctx, tt.rec.Ref); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("after rejected Put, Get error = %v, want ErrNotFound", err)
				}
			})
		}
		if got, err := h.s.ByMessageID(ctx, "<m@x>"); err != nil || len(got) != 0 {
			t.Errorf("rejected Puts left index entries: %v, %v", refsOf(got), err)
		}
	})

	t.Run("Replace", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		first := newRecord("same", "<old@x>", "fp-old", baseTime)
		second := newRecord("same", "<new@x>", "fp-new", baseTime.Add(time.Second))
		second.Fields = second.Fields[:1]
		for _, r := range []*headers.Record{first, second} {
			if err := h.s.Put(ctx, r, long); err != nil {
				t.Fatal(err)
			}
		}
		got, err := h.s.Get(ctx, "same")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, second) {
			t.Errorf("Get after replace = %+v, want %+v", got, second)
		}
		lookups := []struct {
			name string
			fn   func(context.Context, string) ([]*headers.Record, error)
			key  string
			want []string
		}{
			{"old message-id", h.s.ByMessageID, "<old@x>", []string{}},
			{"new message-id", h.s.ByMessageID, "<new@x>", []string{"same"}},
			{"old fingerprint", h.s.ByFingerprint, "fp-old", []string{}},
			{"new fingerprint", h.s.ByFingerprint, "fp-new", []string{"same"}},
		}
		for _, l := range lookups {
			got, err := l.fn(ctx, l.key)
			if err != nil {
				t.Fatalf("%s: %v", l.name, err)
			}
			if !slices.Equal(refsOf(got), l.want) {
				t.Errorf("%s: refs %v, want %v", l.name, refsOf(got), l.want)
			}
		}
	})

	t.Run("Indexes", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		const mid = "<shared.1234@contoso.example>"
		recs := []*headers.Record{
			newRecord("r-late", mid, "fp-a", baseTime.Add(2*time.Minute)),
			newRecord("r-early", mid, "fp-b", baseTime),
			newRecord("r-tie-b", mid, "fp-a", baseTime.Add(time.Minute)),
			newRecord("r-tie-a", mid, "fp-a", baseTime.Add(time.Minute)),
			newRecord("r-other", "<other@contoso.example>", "fp-b", baseTime),
			newRecord("r-none", "", "", baseTime),
			newRecord("r-bad-utf8", "<\xff\xfe@contoso.example>", "", baseTime),
		}
		for _, r := range recs {
			if err := h.s.Put(ctx, r, long); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name string
			fn   func(context.Context, string) ([]*headers.Record, error)
			key  string
			want []string
		}{
			{"shared message-id", h.s.ByMessageID, mid, []string{"r-early", "r-tie-a", "r-tie-b", "r-late"}},
			{"single message-id", h.s.ByMessageID, "<other@contoso.example>", []string{"r-other"}},
			{"invalid utf-8 message-id", h.s.ByMessageID, "<\xff\xfe@contoso.example>", []string{"r-bad-utf8"}},
			{"message-id is exact", h.s.ByMessageID, strings.ToUpper(mid), []string{}},
			{"unknown message-id", h.s.ByMessageID, "<nobody@x>", []string{}},
			{"empty message-id", h.s.ByMessageID, "", []string{}},
			{"fingerprint a", h.s.ByFingerprint, "fp-a", []string{"r-tie-a", "r-tie-b", "r-late"}},
			{"fingerprint b", h.s.ByFingerprint, "fp-b", []string{"r-early", "r-other"}},
			{"unknown fingerprint", h.s.ByFingerprint, "fp-z", []string{}},
			{"empty fingerprint", h.s.ByFingerprint, "", []string{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := tt.fn(ctx, tt.key)
				if err != nil {
					t.Fatal(err)
				}
				if got == nil {
					t.Error("nil slice, want empty non-nil")
				}
				if !slices.Equal(refsOf(got), tt.want) {
					t.Errorf("refs %v, want %v", refsOf(got), tt.want)
				}
			})
		}
		got, err := h.s.ByMessageID(ctx, mid)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got[0], recs[1]) {
			t.Errorf("looked-up record = %+v, want %+v", got[0], recs[1])
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		const mid = "<expiry@contoso.example>"
		if err := h.s.Put(ctx, newRecord("short", mid, "fp-x", baseTime), h.short); err != nil {
			t.Fatal(err)
		}
		if err := h.s.Put(ctx, newRecord("long", mid, "fp-x", baseTime.Add(time.Second)), long); err != nil {
			t.Fatal(err)
		}
		if _, err := h.s.Claim(ctx, "short", "bob@contoso.example", long); err != nil {
			t.Fatal(err)
		}
		if got, _ := h.s.ByMessageID(ctx, mid); len(got) != 2 {
			t.Fatalf("before expiry: %v, want both records", refsOf(got))
		}
		h.elapse(h.short + h.short/2)
		if _, err := h.s.Get(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(expired) error = %v, want ErrNotFound", err)
		}
		if _, err := h.s.Get(ctx, "long"); err != nil {
			t.Errorf("Get(live) = %v", err)
		}
		for name, fn := range map[string]func() ([]*headers.Record, error){
			"message-id":  func() ([]*headers.Record, error) { return h.s.ByMessageID(ctx, mid) },
			"fingerprint": func() ([]*headers.Record, error) { return h.s.ByFingerprint(ctx, "fp-x") },
		} {
			got, err := fn()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(refsOf(got), []string{"long"}) {
				t.Errorf("by %s after expiry: %v, want [long]", name, refsOf(got))
			}
		}
		if _, err := h.s.Claim(ctx, "short", "bob@contoso.example", long); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Claim on expired record error = %v, want ErrNotFound", err)
		}
		if _, err := h.s.CountReturn(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CountReturn on expired record error = %v, want ErrNotFound", err)
		}
		// Delivery state died with the record: a new record under the same
		// ref starts afresh.
		if err := h.s.Put(ctx, newRecord("short", mid, "", baseTime), long); err != nil {
			t.Fatal(err)
		}
		if res, err := h.s.Claim(ctx, "short", "bob@contoso.example", long); err != nil || res != store.Claimed {
			t.Errorf("Claim on re-put record = %v, %v, want Claimed", res, err)
		}
		if n, err := h.s.CountReturn(ctx, "short"); err != nil || n != 1 {
			t.Errorf("CountReturn on re-put record = %d, %v, want 1", n, err)
		}
	})

	t.Run("ReplaceKeepsDeliveryState", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		rec := newRecord("keep", "", "", baseTime)
		if err := h.s.Put(ctx, rec, long); err != nil {
			t.Fatal(err)
		}
		if err := h.s.Confirm(ctx, "keep", "bob@contoso.example"); err != nil {
			t.Fatal(err)
		}
		if err := h.s.Put(ctx, rec, long); err != nil {
			t.Fatal(err)
		}
		if res, err := h.s.Claim(ctx, "keep", "bob@contoso.example", long); err != nil || res != store.AlreadyDelivered {
			t.Errorf("Claim after replacing a live record = %v, %v, want AlreadyDelivered", res, err)
		}
	})

	t.Run("ClaimSequence", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		if err := h.s.Put(ctx, newRecord("claims", "", "", baseTime), long); err != nil {
			t.Fatal(err)
		}
		type step struct {
			op   string // claim, confirm, release
			rcpt string
			want store.ClaimResult
		}
		steps := []step{
			{"claim", "bob@contoso.example", store.Claimed},
			{"claim", "bob@contoso.example", store.InFlight},
			{"claim", "bob@CONTOSO.Example", store.InFlight},
			{"claim", "Bob@contoso.example", store.Claimed}, // local parts are exact
			{"claim", "carol@contoso.example", store.Claimed},
			{"confirm", "bob@contoso.example", 0},
			{"claim", "bob@contoso.example", store.AlreadyDelivered},
			{"claim", "bob@Contoso.EXAMPLE", store.AlreadyDelivered},
			{"release", "bob@contoso.example", 0}, // no-op once delivered
			{"claim", "bob@contoso.example", store.AlreadyDelivered},
			{"release", "carol@CONTOSO.EXAMPLE", 0},
			{"claim", "carol@contoso.example", store.Claimed},
			{"claim", "carol@contoso.example", store.InFlight},
			{"release", "dave@contoso.example", 0}, // no claim: no-op
			{"claim", "dave@contoso.example", store.Claimed},
			{"confirm", "erin@contoso.example", 0}, // confirm without claim
			{"claim", "erin@contoso.example", store.AlreadyDelivered},
			{"claim", "postmaster", store.Claimed},
			{"claim", "postmaster", store.InFlight},
		}
		for i, s := range steps {
			switch s.op {
			case "claim":
				got, err := h.s.Claim(ctx, "claims", s.rcpt, long)
				if err != nil {
					t.Fatalf("step %d: Claim(%s): %v", i, s.rcpt, err)
				}
				if got != s.want {
					t.Errorf("step %d: Claim(%s) = %v, want %v", i, s.rcpt, got, s.want)
				}
			case "confirm":
				if err := h.s.Confirm(ctx, "claims", s.rcpt); err != nil {
					t.Fatalf("step %d: Confirm(%s): %v", i, s.rcpt, err)
				}
			case "release":
				if err := h.s.Release(ctx, "claims", s.rcpt); err != nil {
					t.Fatalf("step %d: Release(%s): %v", i, s.rcpt, err)
				}
			}
		}
	})

	t.Run("ClaimRejects", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		if err := h.s.Put(ctx, newRecord("rej", "", "", baseTime), long); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name  string
			rcpt  string
			lease time.Duration
		}{
			{"empty recipient", "", long},
			{"zero lease", "bob@contoso.example", 0},
			{"negative lease", "bob@contoso.example", -time.Second},
		}
		for _, tt := range tests {
			if res, err := h.s.Claim(ctx, "rej", tt.rcpt, tt.lease); err == nil || errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: Claim = %v, %v, want a non-NotFound error", tt.name, res, err)
			}
		}
		if err := h.s.Confirm(ctx, "rej", ""); err == nil {
			t.Error("Confirm with empty recipient succeeded")
		}
	})

	t.Run("LeaseExpiry", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		if err := h.s.Put(ctx, newRecord("lease", "", "", baseTime), long); err != nil {
			t.Fatal(err)
		}
		if res, err := h.s.Claim(ctx, "lease", "bob@contoso.example", h.short); err != nil || res != store.Claimed {
			t.Fatalf("first Claim = %v, %v", res, err)
		}
		if res, err := h.s.Claim(ctx, "lease", "bob@contoso.example", long); err != nil || res != store.InFlight {
			t.Fatalf("Claim within lease = %v, %v, want InFlight", res, err)
		}
		h.elapse(h.short + h.short/2)
		if res, err := h.s.Claim(ctx, "lease", "bob@contoso.example", long); err != nil || res != store.Claimed {
			t.Fatalf("Claim after lease = %v, %v, want Claimed", res, err)
		}
		if res, err := h.s.Claim(ctx, "lease", "bob@contoso.example", long); err != nil || res != store.InFlight {
			t.Fatalf("Claim within new lease = %v, %v, want InFlight", res, err)
		}
	})

	t.Run("ConcurrentClaim", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		if err := h.s.Put(ctx, newRecord("race", "", "", baseTime), long); err != nil {
			t.Fatal(err)
		}
		for _, rcpt := range []string{"bob@contoso.example", "carol@contoso.example", "dave@contoso.example"} {
			results := claimConcurrently(t, []storeAPI{h.s}, "race", rcpt, 20)
			if results[store.Claimed] != 1 || results[store.InFlight] != 19 {
				t.Errorf("%s: results %v, want 1 Claimed and 19 InFlight", rcpt, results)
			}
		}
	})

	t.Run("CountReturn", func(t *testing.T) {
		h := open(t)
		ctx := ctxT(t)
		for _, ref := range []string{"count-a", "count-b"} {
			if err := h.s.Put(ctx, newRecord(ref, "", "", baseTime), long); err != nil {
				t.Fatal(err)
			}
		}
		for want := int64(1); want <= 3; want++ {
			if n, err := h.s.CountReturn(ctx, "count-a"); err != nil || n != want {
				t.Fatalf("CountReturn = %d, %v, want %d", n, err, want)
			}
		}
		// Counters are per record, and independent of claims.
		if _, err := h.s.Claim(ctx, "count-b", "bob@contoso.example", long); err != nil {
			t.Fatal(err)
		}
		if n, err := h.s.CountReturn(ctx, "count-b"); err != nil || n != 1 {
			t.Fatalf("CountReturn(count-b) = %d, %v, want 1", n, err)
		}
		var (
			mu   sync.Mutex
			seen []int64
			wg   sync.WaitGroup
		)
		for range 20 {
			wg.Go(func() {
				n, err := h.s.CountReturn(ctx, "count-a")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen = append(seen, n)
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(seen)
		for i, n := range seen {
			if n != int64(4+i) {
				t.Fatalf("concurrent counts %v, want 4..23 each once", seen)
			}
		}
	})

	t.Run("Ping", func(t *testing.T) {
		h := open(t)
		if err := h.s.Ping(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	})
}

// claimConcurrently calls Claim(ref, rcpt) n times at once, spreading the
// calls over stores, and counts the results.
func claimConcurrently(t *testing.T, stores []storeAPI, ref, rcpt string, n int) map[store.ClaimResult]int {
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

// corpusRecord reads the header of a corpus message, converted to CRLF as it
// would arrive over SMTP, into a record.
func corpusRecord(t *testing.T, path string) *headers.Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
	hdr, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	rec := &headers.Record{ReceivedAt: baseTime, MessageID: hdr.Get("Message-Id")}
	for fs := hdr.Fields(); fs.Next(); {
		raw, err := fs.Raw()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		name, _, _ := bytes.Cut(raw, []byte(":"))
		rec.Fields = append(rec.Fields, headers.Field{Name: string(name), Raw: bytes.Clone(raw)})
	}
	return rec
}
