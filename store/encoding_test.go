package store_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

// The record of testdata/record-v0.json: the bytes the store wrote for
// storetest.Record(v0Ref, v0MessageID, v0Fingerprint, baseTime) before
// records carried a format version, captured from a Redis GET of its key.
const (
	v0Fixture     = "testdata/record-v0.json"
	v0Ref         = "v0-fixture-ref"
	v0MessageID   = "<v0.fixture@contoso.example>"
	v0Fingerprint = "v0fingerprint"
)

// rawStore is a store into which a test can write an encoded record as an
// older or newer release would have, and read back what this one writes.
type rawStore struct {
	name string
	st   store.Store
	put  func(t *testing.T, ref string, data []byte)
	get  func(t *testing.T, ref string) []byte
}

func rawStores(t *testing.T) []rawStore {
	srv := storetest.StartRedisServer(t)
	cfg, err := store.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	r, err := store.NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	key := func(ref string) string { return r.KeyPrefix() + ":{" + ref + "}:rec" }
	b := storetest.Bolt(t)
	return []rawStore{
		{
			name: "redis", st: r,
			put: func(t *testing.T, ref string, data []byte) {
				if err := r.Client().Set(ctxT(t), key(ref), data, time.Hour).Err(); err != nil {
					t.Fatal(err)
				}
			},
			get: func(t *testing.T, ref string) []byte {
				data, err := r.Client().Get(ctxT(t), key(ref)).Bytes()
				if err != nil {
					t.Fatal(err)
				}
				return data
			},
		},
		{
			name: "bolt", st: b,
			put: func(t *testing.T, ref string, data []byte) {
				if err := store.PutBoltRaw(b, ref, data, time.Hour); err != nil {
					t.Fatal(err)
				}
			},
			get: func(t *testing.T, ref string) []byte {
				data, err := store.GetBoltRaw(b, ref)
				if err != nil {
					t.Fatal(err)
				}
				return data
			},
		},
	}
}

// A record written before records carried a version (no "v" member) reads
// back whole on both stores, and its delivery state works as for any other.
func TestRecordVersion0Readable(t *testing.T) {
	data, err := os.ReadFile(v0Fixture)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(`"v":`)) {
		t.Fatalf("%s has a version member: it is not the previous format", v0Fixture)
	}
	want := storetest.Record(v0Ref, v0MessageID, v0Fingerprint, baseTime)
	for _, s := range rawStores(t) {
		t.Run(s.name, func(t *testing.T) {
			s.put(t, v0Ref, data)
			got, err := s.st.Get(ctxT(t), v0Ref)
			if err != nil {
				t.Fatalf("get version-0 record: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("version-0 record decoded as\n%+v\nwant\n%+v", got, want)
			}
			if res, err := s.st.Claim(ctxT(t), v0Ref, "bob@contoso.example", time.Minute); err != nil || res != store.Claimed {
				t.Fatalf("claim on a version-0 record: %v, %v", res, err)
			}
		})
	}
}

// What this release writes carries "v":1, and reads back equal.
func TestRecordVersionWritten(t *testing.T) {
	for _, s := range rawStores(t) {
		t.Run(s.name, func(t *testing.T) {
			rec := storetest.Record("v1-ref", "<v1@contoso.example>", "v1fp", baseTime)
			if err := s.st.Put(ctxT(t), rec, time.Hour); err != nil {
				t.Fatal(err)
			}
			if raw := s.get(t, "v1-ref"); !bytes.HasPrefix(raw, []byte(`{"v":1,"ref":"v1-ref",`)) {
				t.Fatalf("stored %.60s…, want it to start with the version", raw)
			}
			got, err := s.st.Get(ctxT(t), "v1-ref")
			if err != nil || !reflect.DeepEqual(got, rec) {
				t.Fatalf("got %+v, %v; want %+v", got, err, rec)
			}
		})
	}
}

// A record of a version this release does not know is refused with an
// error that says so, never read as missing (which would make the return
// leg refuse the mail for good) nor half-read.
func TestRecordVersionFutureRefused(t *testing.T) {
	data, err := os.ReadFile(v0Fixture)
	if err != nil {
		t.Fatal(err)
	}
	future := append([]byte(`{"v":2,`), data[1:]...)
	for _, s := range rawStores(t) {
		t.Run(s.name, func(t *testing.T) {
			s.put(t, v0Ref, future)
			_, err := s.st.Get(ctxT(t), v0Ref)
			if !errors.Is(err, store.ErrRecordVersion) || errors.Is(err, store.ErrNotFound) {
				t.Fatalf("get of a version-2 record: %v, want ErrRecordVersion", err)
			}
			t.Logf("refused: %v", err)
			recs, err := s.st.ByMessageID(context.Background(), v0MessageID)
			if err == nil && len(recs) > 0 {
				t.Fatalf("message-id lookup returned a version-2 record: %+v", recs)
			}
		})
	}
}
