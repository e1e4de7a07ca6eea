package storetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// DefaultShortTTL is the TTL and lease the time-dependent cases of Run use
// unless ShortTTL says otherwise.
const DefaultShortTTL = 300 * time.Millisecond

// An Option adjusts Run to a store.
type Option func(*suite)

// ShortTTL sets the TTL and lease, d, that the time-dependent cases of Run
// give entries they wait to see lapse; DefaultShortTTL by default. A case
// waits 2d after a write before it expects the entry gone, and expects the
// entry live only while less than d has passed. A store that measures time
// coarsely, in whole seconds say, or drops expired entries only
// periodically, needs a d at least as long as that resolution or period.
func ShortTTL(d time.Duration) Option {
	return func(s *suite) { s.short = d }
}

// Run tests a store.Store implementation against the contract that the
// store.Store documentation states, in one subtest per case (PutGet,
// GetMissing, TTLExpires, ClaimConfirm, ...), as fstest.TestFS does for a
// file system.
//
// open must return a new, empty store for the test it is given, and close it
// when that test ends; a case may close it first. Run calls open once per
// case, from the case's goroutine. Expiry is observed in real time: the store
// must measure TTLs and leases on the wall clock (a Bolt store with its
// default clock, any Redis).
//
// PutGetExchangeCorpus stores the header blocks of the real Exchange Online
// messages in ../shared/corpus/exchange next to the directory of the go.mod
// that encloses the working directory, and is skipped when there are none.
func Run(t *testing.T, open func(t *testing.T) store.Store, opts ...Option) {
	s := &suite{open: open, short: DefaultShortTTL}
	for _, o := range opts {
		o(s)
	}
	if s.short <= 0 {
		t.Fatalf("storetest: ShortTTL(%v): not positive", s.short)
	}
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"PutGet", s.putGet},
		{"PutGetExchangeCorpus", s.putGetExchangeCorpus},
		{"PutRejects", s.putRejects},
		{"PutReplaces", s.putReplaces},
		{"PutKeepsDeliveryState", s.putKeepsDeliveryState},
		{"PutResetsTTL", s.putResetsTTL},
		{"GetMissing", s.getMissing},
		{"TTLExpires", s.ttlExpires},
		{"ByMessageID", s.byMessageID},
		{"ByFingerprint", s.byFingerprint},
		{"IndexesDropExpired", s.indexesDropExpired},
		{"ClaimConfirm", s.claimConfirm},
		{"ClaimRelease", s.claimRelease},
		{"ClaimPerRecipient", s.claimPerRecipient},
		{"ClaimRejects", s.claimRejects},
		{"ClaimLeaseLapses", s.claimLeaseLapses},
		{"ConcurrentClaimOneWinner", s.concurrentClaimOneWinner},
		{"ConcurrentClaimRelease", s.concurrentClaimRelease},
		{"CountReturn", s.countReturn},
		{"Ping", s.ping},
		{"ContextCanceled", s.contextCanceled},
		{"Close", s.close},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// suite is one run of the contract cases.
type suite struct {
	open  func(t *testing.T) store.Store
	short time.Duration
}

// long is a TTL and lease no case waits out.
const long = time.Hour

// Recipients the cases claim deliveries for.
const (
	bob   = "bob@contoso.example"
	carol = "carol@contoso.example"
	dave  = "dave@contoso.example"
	erin  = "erin@contoso.example"
)

var baseTime = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)

// testContext returns a context that ends with t or after a generous bound.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Record returns a record whose fields hold the byte sequences a store must
// not alter: folding, trailing white space, 8-bit, NUL and invalid UTF-8.
func Record(ref, messageID, fp string, at time.Time) *headers.Record {
	return &headers.Record{
		Ref:         ref,
		MailFrom:    "alice@contoso.example",
		Params:      headers.MailParams{Size: 12345, Body: "8BITMIME", SMTPUTF8: true},
		Rcpts:       []string{bob, "Carol@Fabrikam.Example"},
		ReceivedAt:  at,
		Listener:    "127.0.0.1:2525",
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
		Route: []string{"signatures", "scanner"},
	}
}

func refsOf(recs []*headers.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Ref
	}
	return out
}

func put(t *testing.T, s store.Store, rec *headers.Record, ttl time.Duration) {
	t.Helper()
	if err := s.Put(testContext(t), rec, ttl); err != nil {
		t.Fatalf("Put(%s, %v): %v", rec.Ref, ttl, err)
	}
}

// wantClaim claims (ref, rcpt) for lease and fails the test unless the
// result is want.
func wantClaim(t *testing.T, s store.Store, ref, rcpt string, lease time.Duration, want store.ClaimResult) {
	t.Helper()
	got, err := s.Claim(testContext(t), ref, rcpt, lease)
	if err != nil {
		t.Fatalf("Claim(%s, %s): %v", ref, rcpt, err)
	}
	if got != want {
		t.Fatalf("Claim(%s, %s) = %v, want %v", ref, rcpt, got, want)
	}
}

func wantCount(t *testing.T, s store.Store, ref string, want int64) {
	t.Helper()
	n, err := s.CountReturn(testContext(t), ref)
	if err != nil {
		t.Fatalf("CountReturn(%s): %v", ref, err)
	}
	if n != want {
		t.Fatalf("CountReturn(%s) = %d, want %d", ref, n, want)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: error %v, want ErrNotFound", what, err)
	}
}

// sleepUntil sleeps until at.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// fresh reports whether an entry written at start with the short TTL or
// lease must still be live: less than s.short has passed.
func (s *suite) fresh(start time.Time) bool { return time.Since(start) < s.short }

// Put then Get returns an equal record, Field.Raw byte for byte, and neither
// the record passed to Put nor the one Get returned is shared with the store.
func (s *suite) putGet(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	tests := []struct {
		name string
		rec  func() *headers.Record
	}{
		{"full", func() *headers.Record { return Record("ref-full", "<full@contoso.example>", "fp-full", baseTime) }},
		{"minimal", func() *headers.Record { return &headers.Record{Ref: "ref-minimal", ReceivedAt: baseTime} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, in := tt.rec(), tt.rec()
			put(t, st, in, long)
			if len(in.Fields) > 0 {
				in.Fields[0].Raw[0] = '!'
				in.Rcpts[0] = "mallory@contoso.example"
			}
			got, err := st.Get(ctx, want.Ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Fields) != len(want.Fields) {
				t.Fatalf("Get returned %d fields, want %d", len(got.Fields), len(want.Fields))
			}
			for i := range want.Fields {
				if !bytes.Equal(got.Fields[i].Raw, want.Fields[i].Raw) {
					t.Errorf("field %d raw = %q, want %q", i, got.Fields[i].Raw, want.Fields[i].Raw)
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Get = %+v\nwant %+v", got, want)
			}
			if len(got.Fields) > 0 {
				got.Fields[0].Raw[0] = '!'
				got.Rcpts[0] = "mallory@contoso.example"
			}
			got.MailFrom = "mallory@contoso.example"
			again, err := st.Get(ctx, want.Ref)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(again, want) {
				t.Errorf("changing a returned record changed the store: Get = %+v\nwant %+v", again, want)
			}
		})
	}
}

// The header blocks of real Exchange Online messages come back byte for
// byte.
func (s *suite) putGetExchangeCorpus(t *testing.T) {
	dir := exchangeCorpus()
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) == 0 {
		t.Skipf("no Exchange corpus at %q (shared workspace absent)", dir)
	}
	st := s.open(t)
	ctx := testContext(t)
	for _, f := range files {
		want := corpusRecord(t, f)
		want.Ref = "corpus-" + strings.TrimSuffix(filepath.Base(f), ".eml")
		if len(want.Fields) == 0 {
			t.Fatalf("%s: no header fields parsed", f)
		}
		put(t, st, want, long)
		got, err := st.Get(ctx, want.Ref)
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
		if got.MessageID != want.MessageID {
			t.Fatalf("%s: MessageID %q, want %q", f, got.MessageID, want.MessageID)
		}
	}
}

// exchangeCorpus returns ../shared/corpus/exchange beside the module root
// that encloses the working directory, or "" outside a module.
func exchangeCorpus() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "corpus", "exchange")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
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

// Put refuses a nil record, a reference that cannot name a record and a
// non-positive TTL, stores nothing then, and leaves a live record under the
// same reference as it was.
func (s *suite) putRejects(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	kept := Record("kept", "<kept@x>", "fp-kept", baseTime)
	put(t, st, kept, long)
	tests := []struct {
		name string
		rec  *headers.Record
		ttl  time.Duration
	}{
		{"nil record", nil, long},
		{"empty ref", Record("", "<m@x>", "fp-m", baseTime), long},
		{"zero ttl", Record("zero-ttl", "<m@x>", "fp-m", baseTime), 0},
		{"negative ttl", Record("neg-ttl", "<m@x>", "fp-m", baseTime), -time.Second},
		{"brace in ref", Record("a{b}c", "<m@x>", "fp-m", baseTime), long},
		{"space in ref", Record("a b", "<m@x>", "fp-m", baseTime), long},
		{"control byte in ref", Record("a\x00b", "<m@x>", "fp-m", baseTime), long},
		{"overlong ref", Record(strings.Repeat("r", 257), "<m@x>", "fp-m", baseTime), long},
		{"zero ttl over a live record", Record("kept", "<m@x>", "fp-m", baseTime), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := st.Put(ctx, tt.rec, tt.ttl)
			if err == nil {
				t.Fatal("Put succeeded")
			}
			if errors.Is(err, store.ErrNotFound) {
				t.Errorf("Put error %v wraps ErrNotFound", err)
			}
			if tt.rec == nil || tt.rec.Ref == kept.Ref {
				return
			}
			_, err = st.Get(ctx, tt.rec.Ref)
			wantNotFound(t, "Get after a refused Put", err)
		})
	}
	got, err := st.Get(ctx, kept.Ref)
	if err != nil || !reflect.DeepEqual(got, kept) {
		t.Errorf("after refused Puts, Get(kept) = %+v, %v, want %+v", got, err, kept)
	}
	if got, err := st.ByMessageID(ctx, "<m@x>"); err != nil || len(got) != 0 {
		t.Errorf("refused Puts left Message-ID index entries: %v, %v", refsOf(got), err)
	}
	if got, err := st.ByFingerprint(ctx, "fp-m"); err != nil || len(got) != 0 {
		t.Errorf("refused Puts left fingerprint index entries: %v, %v", refsOf(got), err)
	}
}

// A second Put under a reference replaces the record, and lookups by the old
// record's Message-ID and fingerprint no longer find it.
func (s *suite) putReplaces(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	first := Record("same", "<old@x>", "fp-old", baseTime)
	second := Record("same", "<new@x>", "fp-new", baseTime.Add(time.Second))
	second.Fields = second.Fields[:1]
	put(t, st, first, long)
	put(t, st, second, long)
	got, err := st.Get(ctx, "same")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, second) {
		t.Errorf("Get after replace = %+v\nwant %+v", got, second)
	}
	lookups := []struct {
		name string
		fn   func(context.Context, string) ([]*headers.Record, error)
		key  string
		want []string
	}{
		{"old message-id", st.ByMessageID, "<old@x>", []string{}},
		{"new message-id", st.ByMessageID, "<new@x>", []string{"same"}},
		{"old fingerprint", st.ByFingerprint, "fp-old", []string{}},
		{"new fingerprint", st.ByFingerprint, "fp-new", []string{"same"}},
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
}

// Replacing a live record keeps its confirmed deliveries, open claims and
// return count: the tenant leg puts the record again when Exchange retries a
// message the vendor may already have sent back.
func (s *suite) putKeepsDeliveryState(t *testing.T) {
	st := s.open(t)
	put(t, st, Record("keep", "<keep@x>", "", baseTime), long)
	if err := st.Confirm(testContext(t), "keep", bob); err != nil {
		t.Fatal(err)
	}
	wantClaim(t, st, "keep", carol, long, store.Claimed)
	wantCount(t, st, "keep", 1)
	put(t, st, Record("keep", "<keep-again@x>", "", baseTime.Add(time.Second)), long)
	wantClaim(t, st, "keep", bob, long, store.AlreadyDelivered)
	wantClaim(t, st, "keep", carol, long, store.InFlight)
	wantClaim(t, st, "keep", dave, long, store.Claimed)
	wantCount(t, st, "keep", 2)
}

// The latest Put sets the life of a record and of its delivery state, longer
// or shorter than before.
func (s *suite) putResetsTTL(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	start := time.Now()
	put(t, st, Record("longer", "<longer@x>", "fp-longer", baseTime), 2*s.short)
	if err := st.Confirm(ctx, "longer", bob); err != nil {
		t.Fatal(err)
	}
	wantCount(t, st, "longer", 1)
	put(t, st, Record("longer", "<longer@x>", "fp-longer", baseTime), long)
	if time.Since(start) >= 2*s.short {
		t.Skipf("the writes took %v, longer than the first TTL %v: cannot tell a renewal from a new record", time.Since(start), 2*s.short)
	}
	put(t, st, Record("shorter", "<shorter@x>", "", baseTime), long)
	wantClaim(t, st, "shorter", bob, long, store.Claimed)
	put(t, st, Record("shorter", "<shorter@x>", "", baseTime), s.short)
	shortened := time.Now()

	// Past the first TTL of "longer" and the second of "shorter".
	sleepUntil(start.Add(3 * s.short))
	sleepUntil(shortened.Add(2 * s.short))
	if _, err := st.Get(ctx, "longer"); err != nil {
		t.Fatalf("Get of a record renewed with a longer TTL: %v", err)
	}
	if got, err := st.ByMessageID(ctx, "<longer@x>"); err != nil || !slices.Equal(refsOf(got), []string{"longer"}) {
		t.Errorf("ByMessageID of a renewed record = %v, %v, want [longer]", refsOf(got), err)
	}
	wantClaim(t, st, "longer", bob, long, store.AlreadyDelivered)
	wantCount(t, st, "longer", 2)

	_, err := st.Get(ctx, "shorter")
	wantNotFound(t, "Get of a record put again with a shorter TTL, after it", err)
	put(t, st, Record("shorter", "<shorter@x>", "", baseTime), long)
	wantClaim(t, st, "shorter", bob, long, store.Claimed)
}

// A reference that names no live record, or cannot name one, is not found
// by any method, and Release ignores it.
func (s *suite) getMissing(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("present", "<present@x>", "fp-present", baseTime), long)
	refs := []string{"absent", "PRESENT", "presen", "present ", "", "{present}", "pre sent", "pre\x00sent", "pre\nsent", strings.Repeat("p", 257)}
	for _, ref := range refs {
		_, err := st.Get(ctx, ref)
		wantNotFound(t, fmt.Sprintf("Get(%q)", ref), err)
		_, err = st.Claim(ctx, ref, bob, long)
		wantNotFound(t, fmt.Sprintf("Claim(%q)", ref), err)
		wantNotFound(t, fmt.Sprintf("Confirm(%q)", ref), st.Confirm(ctx, ref, bob))
		_, err = st.CountReturn(ctx, ref)
		wantNotFound(t, fmt.Sprintf("CountReturn(%q)", ref), err)
		if err := st.Release(ctx, ref, bob); err != nil {
			t.Errorf("Release(%q) = %v, want nil", ref, err)
		}
	}
	// None of it touched the record that is there.
	wantClaim(t, st, "present", bob, long, store.Claimed)
	wantCount(t, st, "present", 1)
}

// A record lives for its TTL and not longer, nor does its delivery state: a
// new record under the same reference starts afresh, even where a claim
// with a longer lease was open.
func (s *suite) ttlExpires(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	start := time.Now()
	put(t, st, Record("short", "<short@x>", "fp-short", baseTime), s.short)
	_, claimErr := st.Claim(ctx, "short", bob, long)
	confirmErr := st.Confirm(ctx, "short", carol)
	_, countErr := st.CountReturn(ctx, "short")
	_, getErr := st.Get(ctx, "short")
	if s.fresh(start) {
		for name, err := range map[string]error{"Claim": claimErr, "Confirm": confirmErr, "CountReturn": countErr, "Get": getErr} {
			if err != nil {
				t.Fatalf("%s within the TTL: %v", name, err)
			}
		}
	}

	sleepUntil(start.Add(2 * s.short))
	_, err := st.Get(ctx, "short")
	wantNotFound(t, "Get after the TTL", err)
	_, err = st.Claim(ctx, "short", dave, long)
	wantNotFound(t, "Claim after the TTL", err)
	wantNotFound(t, "Confirm after the TTL", st.Confirm(ctx, "short", dave))
	_, err = st.CountReturn(ctx, "short")
	wantNotFound(t, "CountReturn after the TTL", err)
	if err := st.Release(ctx, "short", bob); err != nil {
		t.Errorf("Release after the TTL = %v, want nil", err)
	}

	put(t, st, Record("short", "<short@x>", "fp-short", baseTime), long)
	wantClaim(t, st, "short", bob, long, store.Claimed)
	wantClaim(t, st, "short", carol, long, store.Claimed)
	wantCount(t, st, "short", 1)
}

// indexed puts the records the index cases look up.
func indexed(t *testing.T, st store.Store) []*headers.Record {
	recs := []*headers.Record{
		Record("r-late", sharedMID, "fp-a", baseTime.Add(2*time.Minute)),
		Record("r-early", sharedMID, "fp-b", baseTime),
		Record("r-tie-b", sharedMID, "fp-a", baseTime.Add(time.Minute)),
		Record("r-tie-a", sharedMID, "fp-a", baseTime.Add(time.Minute)),
		Record("r-other", "<other@contoso.example>", "fp-b", baseTime),
		Record("r-none", "", "", baseTime),
		Record("r-bad-utf8", "<\xff\xfe@contoso.example>", "fp-\xff", baseTime),
	}
	for _, r := range recs {
		put(t, st, r, long)
	}
	return recs
}

const sharedMID = "<shared.1234@contoso.example>"

type indexCase struct {
	name string
	key  string
	want []string
}

func runIndexCases(t *testing.T, fn func(context.Context, string) ([]*headers.Record, error), tests []indexCase) {
	ctx := testContext(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fn(ctx, tt.key)
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
}

// ByMessageID finds the live records put under exactly that Message-ID, in
// the order of ReceivedAt, then Ref.
func (s *suite) byMessageID(t *testing.T) {
	st := s.open(t)
	recs := indexed(t, st)
	runIndexCases(t, st.ByMessageID, []indexCase{
		{"shared", sharedMID, []string{"r-early", "r-tie-a", "r-tie-b", "r-late"}},
		{"single", "<other@contoso.example>", []string{"r-other"}},
		{"invalid utf-8", "<\xff\xfe@contoso.example>", []string{"r-bad-utf8"}},
		{"other invalid utf-8", "<\xfe\xff@contoso.example>", []string{}},
		{"exact case", strings.ToUpper(sharedMID), []string{}},
		{"exact bytes", sharedMID + " ", []string{}},
		{"a fingerprint is no message-id", "fp-a", []string{}},
		{"unknown", "<nobody@x>", []string{}},
		{"empty", "", []string{}},
	})
	got, err := st.ByMessageID(testContext(t), "<other@contoso.example>")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], recs[4]) {
		t.Errorf("looked-up record = %+v\nwant %+v", got, recs[4])
	}
}

// ByFingerprint finds the live records put under exactly that fingerprint,
// in the order of ReceivedAt, then Ref.
func (s *suite) byFingerprint(t *testing.T) {
	st := s.open(t)
	recs := indexed(t, st)
	runIndexCases(t, st.ByFingerprint, []indexCase{
		{"fingerprint a", "fp-a", []string{"r-tie-a", "r-tie-b", "r-late"}},
		{"fingerprint b", "fp-b", []string{"r-early", "r-other"}},
		{"invalid utf-8", "fp-\xff", []string{"r-bad-utf8"}},
		{"exact case", "FP-A", []string{}},
		{"a message-id is no fingerprint", sharedMID, []string{}},
		{"unknown", "fp-z", []string{}},
		{"empty", "", []string{}},
	})
	got, err := st.ByFingerprint(testContext(t), "fp-b")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0], recs[1]) {
		t.Errorf("looked-up records = %+v\nwant first %+v", got, recs[1])
	}
}

// Lookups by Message-ID and fingerprint skip expired records.
func (s *suite) indexesDropExpired(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	const mid, fp = "<expiry@contoso.example>", "fp-expiry"
	start := time.Now()
	put(t, st, Record("short", mid, fp, baseTime), s.short)
	put(t, st, Record("long", mid, fp, baseTime.Add(time.Second)), long)
	lookups := []struct {
		name string
		fn   func(context.Context, string) ([]*headers.Record, error)
		key  string
	}{
		{"ByMessageID", st.ByMessageID, mid},
		{"ByFingerprint", st.ByFingerprint, fp},
	}
	var before [][]*headers.Record
	for _, l := range lookups {
		got, err := l.fn(ctx, l.key)
		if err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		before = append(before, got)
	}
	if s.fresh(start) {
		for i, l := range lookups {
			if !slices.Equal(refsOf(before[i]), []string{"short", "long"}) {
				t.Fatalf("%s within the TTL: %v, want [short long]", l.name, refsOf(before[i]))
			}
		}
	}
	sleepUntil(start.Add(2 * s.short))
	for _, l := range lookups {
		got, err := l.fn(ctx, l.key)
		if err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		if !slices.Equal(refsOf(got), []string{"long"}) {
			t.Errorf("%s after the TTL: %v, want [long]", l.name, refsOf(got))
		}
	}
}

// The delivery protocol's success path: the claim holder confirms, and
// every later claim, released or not, reads AlreadyDelivered.
func (s *suite) claimConfirm(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("cc", "", "", baseTime), long)
	wantClaim(t, st, "cc", bob, long, store.Claimed)
	wantClaim(t, st, "cc", bob, long, store.InFlight)
	if err := st.Confirm(ctx, "cc", bob); err != nil {
		t.Fatal(err)
	}
	wantClaim(t, st, "cc", bob, long, store.AlreadyDelivered)
	wantClaim(t, st, "cc", bob, long, store.AlreadyDelivered)
	if err := st.Confirm(ctx, "cc", bob); err != nil {
		t.Fatalf("second Confirm: %v", err)
	}
	wantClaim(t, st, "cc", bob, long, store.AlreadyDelivered)
	if err := st.Release(ctx, "cc", bob); err != nil {
		t.Fatalf("Release after Confirm: %v", err)
	}
	wantClaim(t, st, "cc", bob, long, store.AlreadyDelivered)
	// Confirm needs no claim.
	if err := st.Confirm(ctx, "cc", erin); err != nil {
		t.Fatal(err)
	}
	wantClaim(t, st, "cc", erin, long, store.AlreadyDelivered)
}

// The delivery protocol's failure path: a released claim can be taken again
// at once; releasing what is not claimed does nothing.
func (s *suite) claimRelease(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("cr", "", "", baseTime), long)
	release := func(rcpt string) {
		t.Helper()
		if err := st.Release(ctx, "cr", rcpt); err != nil {
			t.Fatalf("Release(%s): %v", rcpt, err)
		}
	}
	wantClaim(t, st, "cr", bob, long, store.Claimed)
	release(bob)
	wantClaim(t, st, "cr", bob, long, store.Claimed)
	wantClaim(t, st, "cr", bob, long, store.InFlight)
	release(bob)
	release(bob) // nothing claimed: no-op
	wantClaim(t, st, "cr", bob, long, store.Claimed)
	release(dave) // never claimed: no-op
	wantClaim(t, st, "cr", dave, long, store.Claimed)
	wantClaim(t, st, "cr", bob, long, store.InFlight) // releasing dave left bob's claim
}

// Claims are per recipient and per record; recipients compare as
// headers.SameAddress does.
func (s *suite) claimPerRecipient(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("one", "", "", baseTime), long)
	put(t, st, Record("two", "", "", baseTime), long)
	steps := []struct {
		op   string // claim, confirm, release
		ref  string
		rcpt string
		want store.ClaimResult
	}{
		{"claim", "one", "bob@contoso.example", store.Claimed},
		{"claim", "one", "bob@CONTOSO.Example", store.InFlight}, // domains ignore case
		{"claim", "one", "Bob@contoso.example", store.Claimed},  // local parts are exact
		{"claim", "one", "carol@contoso.example", store.Claimed},
		{"claim", "two", "bob@contoso.example", store.Claimed}, // another record
		{"confirm", "one", "bob@Contoso.EXAMPLE", 0},
		{"claim", "one", "bob@contoso.example", store.AlreadyDelivered},
		{"claim", "one", "Bob@contoso.example", store.InFlight},
		{"claim", "two", "bob@contoso.example", store.InFlight},
		{"release", "one", "carol@CONTOSO.EXAMPLE", 0},
		{"claim", "one", "carol@contoso.example", store.Claimed},
		{"claim", "one", "postmaster", store.Claimed}, // no domain: the whole address
		{"claim", "one", "postmaster", store.InFlight},
		{"claim", "one", "Postmaster", store.Claimed},
	}
	for i, step := range steps {
		switch step.op {
		case "claim":
			got, err := st.Claim(ctx, step.ref, step.rcpt, long)
			if err != nil {
				t.Fatalf("step %d: Claim(%s, %s): %v", i, step.ref, step.rcpt, err)
			}
			if got != step.want {
				t.Errorf("step %d: Claim(%s, %s) = %v, want %v", i, step.ref, step.rcpt, got, step.want)
			}
		case "confirm":
			if err := st.Confirm(ctx, step.ref, step.rcpt); err != nil {
				t.Fatalf("step %d: Confirm(%s, %s): %v", i, step.ref, step.rcpt, err)
			}
		case "release":
			if err := st.Release(ctx, step.ref, step.rcpt); err != nil {
				t.Fatalf("step %d: Release(%s, %s): %v", i, step.ref, step.rcpt, err)
			}
		}
	}
}

// Claim refuses an empty recipient and a lease under a millisecond, Confirm
// and Release an empty recipient; none of those errors reads as not found,
// and none changes anything.
func (s *suite) claimRejects(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("rej", "", "", baseTime), long)
	tests := []struct {
		name string
		call func() error
	}{
		{"Claim with empty recipient", func() error { _, err := st.Claim(ctx, "rej", "", long); return err }},
		{"Claim with zero lease", func() error { _, err := st.Claim(ctx, "rej", bob, 0); return err }},
		{"Claim with negative lease", func() error { _, err := st.Claim(ctx, "rej", bob, -time.Second); return err }},
		{"Claim with sub-millisecond lease", func() error { _, err := st.Claim(ctx, "rej", bob, 999*time.Microsecond); return err }},
		{"Confirm with empty recipient", func() error { return st.Confirm(ctx, "rej", "") }},
		{"Release with empty recipient", func() error { return st.Release(ctx, "rej", "") }},
	}
	for _, tt := range tests {
		err := tt.call()
		if err == nil {
			t.Errorf("%s succeeded", tt.name)
		} else if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: error %v wraps ErrNotFound", tt.name, err)
		}
	}
	wantClaim(t, st, "rej", bob, long, store.Claimed)
	wantClaim(t, st, "rej", "postmaster", time.Millisecond, store.Claimed)
}

// A claim neither confirmed nor released lapses with its lease, so that a
// later copy can be delivered; a confirmed delivery does not.
func (s *suite) claimLeaseLapses(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("lease", "", "", baseTime), long)
	start := time.Now()
	wantClaim(t, st, "lease", bob, s.short, store.Claimed)
	wantClaim(t, st, "lease", carol, s.short, store.Claimed)
	if err := st.Confirm(ctx, "lease", carol); err != nil {
		t.Fatal(err)
	}
	res, err := st.Claim(ctx, "lease", bob, long)
	if err != nil {
		t.Fatal(err)
	}
	if s.fresh(start) && res != store.InFlight {
		t.Fatalf("Claim within the lease = %v, want InFlight", res)
	}
	sleepUntil(start.Add(2 * s.short))
	wantClaim(t, st, "lease", bob, long, store.Claimed)
	wantClaim(t, st, "lease", bob, long, store.InFlight)
	wantClaim(t, st, "lease", carol, long, store.AlreadyDelivered)
}

// Of many concurrent claims on one (ref, rcpt), spelled in different cases
// of the domain, exactly one wins.
func (s *suite) concurrentClaimOneWinner(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("race", "", "", baseTime), long)
	const n = 20
	for _, rcpt := range []string{bob, carol, dave} {
		local, domain, _ := strings.Cut(rcpt, "@")
		spellings := []string{rcpt, local + "@" + strings.ToUpper(domain)}
		var (
			mu      sync.Mutex
			results = map[store.ClaimResult]int{}
			wg      sync.WaitGroup
			start   = make(chan struct{})
		)
		for i := range n {
			wg.Go(func() {
				<-start
				res, err := st.Claim(ctx, "race", spellings[i%len(spellings)], long)
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
		if results[store.Claimed] != 1 || results[store.InFlight] != n-1 {
			t.Errorf("%s: results %v, want 1 Claimed and %d InFlight", rcpt, results, n-1)
		}
	}
}

// Claims taken and released concurrently, as by sessions delivering copies
// of one message, are never held by two callers at once; after a
// confirmation, every concurrent claim reads AlreadyDelivered.
func (s *suite) concurrentClaimRelease(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("mutex", "", "", baseTime), long)
	const workers, rounds = 8, 25
	var (
		holders, wins atomic.Int32
		wg            sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range rounds {
				res, err := st.Claim(ctx, "mutex", bob, long)
				if err != nil {
					t.Error(err)
					return
				}
				if res != store.Claimed {
					runtime.Gosched()
					continue
				}
				if n := holders.Add(1); n != 1 {
					t.Errorf("%d callers hold the claim at once", n)
				}
				time.Sleep(50 * time.Microsecond)
				holders.Add(-1)
				wins.Add(1)
				if err := st.Release(ctx, "mutex", bob); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// The first winner claims again after its release, or someone else
	// does: with Release working, there are at least two wins.
	if n := wins.Load(); n < 2 {
		t.Errorf("%d claims won in %d attempts: released claims were not free again", n, workers*rounds)
	}

	wantClaim(t, st, "mutex", bob, long, store.Claimed)
	if err := st.Confirm(ctx, "mutex", bob); err != nil {
		t.Fatal(err)
	}
	for range workers {
		wg.Go(func() {
			res, err := st.Claim(ctx, "mutex", bob, long)
			if err != nil {
				t.Error(err)
			} else if res != store.AlreadyDelivered {
				t.Errorf("Claim after Confirm = %v, want AlreadyDelivered", res)
			}
		})
	}
	wg.Wait()
}

// CountReturn counts from 1 per record, independently of claims, and
// concurrent calls get distinct consecutive counts.
func (s *suite) countReturn(t *testing.T) {
	st := s.open(t)
	ctx := testContext(t)
	put(t, st, Record("count-a", "", "", baseTime), long)
	put(t, st, Record("count-b", "", "", baseTime), long)
	for want := int64(1); want <= 3; want++ {
		wantCount(t, st, "count-a", want)
	}
	wantClaim(t, st, "count-b", bob, long, store.Claimed)
	if err := st.Confirm(ctx, "count-b", bob); err != nil {
		t.Fatal(err)
	}
	wantCount(t, st, "count-b", 1)
	wantClaim(t, st, "count-b", carol, long, store.Claimed) // counting claimed nothing
	const n = 20
	var (
		mu   sync.Mutex
		seen []int64
		wg   sync.WaitGroup
	)
	for range n {
		wg.Go(func() {
			c, err := st.CountReturn(ctx, "count-a")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen = append(seen, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(seen)
	for i, c := range seen {
		if c != int64(4+i) {
			t.Fatalf("concurrent counts %v, want 4..%d each once", seen, 3+n)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d concurrent counts, want %d", len(seen), n)
	}
}

// An open store answers Ping.
func (s *suite) ping(t *testing.T) {
	st := s.open(t)
	if err := st.Ping(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

// Every method but Close fails with the context's error when called with a
// done context, and changes nothing.
func (s *suite) contextCanceled(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	dones := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"canceled", canceled, context.Canceled},
		{"deadline", expired, context.DeadlineExceeded},
	}
	for _, d := range dones {
		t.Run(d.name, func(t *testing.T) {
			st := s.open(t)
			ctx := testContext(t)
			put(t, st, Record("ctx", "<ctx@x>", "fp-ctx", baseTime), long)
			wantClaim(t, st, "ctx", bob, long, store.Claimed)
			nothingPut := func(t *testing.T) {
				_, err := st.Get(ctx, "ctx-put")
				wantNotFound(t, "Get after a Put with a done context", err)
			}
			calls := []struct {
				name  string
				call  func(context.Context) error
				check func(t *testing.T) // that the call changed nothing
			}{
				{"Put", func(c context.Context) error { return st.Put(c, Record("ctx-put", "", "", baseTime), long) }, nothingPut},
				{"Get", func(c context.Context) error { _, err := st.Get(c, "ctx"); return err }, nil},
				{"ByMessageID", func(c context.Context) error { _, err := st.ByMessageID(c, "<ctx@x>"); return err }, nil},
				{"ByMessageID empty", func(c context.Context) error { _, err := st.ByMessageID(c, ""); return err }, nil},
				{"ByFingerprint", func(c context.Context) error { _, err := st.ByFingerprint(c, "fp-ctx"); return err }, nil},
				{"Claim", func(c context.Context) error { _, err := st.Claim(c, "ctx", carol, long); return err },
					func(t *testing.T) { wantClaim(t, st, "ctx", carol, long, store.Claimed) }},
				{"Confirm", func(c context.Context) error { return st.Confirm(c, "ctx", dave) },
					func(t *testing.T) { wantClaim(t, st, "ctx", dave, long, store.Claimed) }},
				{"Release", func(c context.Context) error { return st.Release(c, "ctx", bob) },
					func(t *testing.T) { wantClaim(t, st, "ctx", bob, long, store.InFlight) }},
				{"CountReturn", func(c context.Context) error { _, err := st.CountReturn(c, "ctx"); return err },
					func(t *testing.T) { wantCount(t, st, "ctx", 1) }},
				{"Ping", st.Ping, nil},
			}
			for _, c := range calls {
				err := c.call(d.ctx)
				if !errors.Is(err, d.want) {
					t.Errorf("%s: error %v, want %v", c.name, err, d.want)
				}
				if errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s: error %v wraps ErrNotFound", c.name, err)
				}
			}
			for _, c := range calls {
				if c.check != nil {
					t.Run(c.name, c.check)
				}
			}
		})
	}
}

// Close succeeds once and returns the same again; afterwards every method
// fails with ErrClosed, never ErrNotFound.
func (s *suite) close(t *testing.T) {
	st := s.open(t)
	put(t, st, Record("closed", "<closed@x>", "fp-closed", baseTime), long)
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := testContext(t)
	calls := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { return st.Put(ctx, Record("after", "", "", baseTime), long) }},
		{"Get", func() error { _, err := st.Get(ctx, "closed"); return err }},
		{"Get of a missing ref", func() error { _, err := st.Get(ctx, "missing"); return err }},
		{"ByMessageID", func() error { _, err := st.ByMessageID(ctx, "<closed@x>"); return err }},
		{"ByFingerprint", func() error { _, err := st.ByFingerprint(ctx, "fp-closed"); return err }},
		{"Claim", func() error { _, err := st.Claim(ctx, "closed", bob, long); return err }},
		{"Confirm", func() error { return st.Confirm(ctx, "closed", bob) }},
		{"Release", func() error { return st.Release(ctx, "closed", bob) }},
		{"CountReturn", func() error { _, err := st.CountReturn(ctx, "closed"); return err }},
		{"Ping", func() error { return st.Ping(ctx) }},
	}
	for _, c := range calls {
		err := c.call()
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: error %v, want ErrClosed", c.name, err)
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after Close: error %v wraps ErrNotFound", c.name, err)
		}
	}
}
