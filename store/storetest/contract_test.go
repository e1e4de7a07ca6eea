package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// Each mutant is a Bolt store with one part of the contract broken. A suite
// case that passes them all would test nothing.
type (
	missingIsNil        struct{ store.Store } // Get of a missing record: nil, nil
	mangledRaw          struct{ store.Store } // Field.Raw through a UTF-8 string
	unfolded            struct{ store.Store } // Field.Raw unfolded
	firstPutWins        struct{ store.Store } // Put does not replace
	laxPut              struct{ store.Store } // a non-positive TTL becomes an hour
	ttlIgnored          struct{ store.Store } // records live 100 times too long
	unsortedLookups     struct{ store.Store } // ByMessageID in reverse order
	nilLookups          struct{ store.Store } // ByMessageID("") returns nil
	foldedFingerprints  struct{ store.Store } // ByFingerprint ignores case
	claimAlwaysWins     struct{ store.Store } // InFlight reads Claimed
	leaseIgnored        struct{ store.Store } // every lease an hour
	leaseRoundedUp      struct{ store.Store } // a lease under 1ms becomes 1ms
	foldedRecipients    struct{ store.Store } // local parts compared ignoring case
	confirmForgets      struct{ store.Store } // Confirm does nothing
	releaseForgets      struct{ store.Store } // Release does nothing
	countStuck          struct{ store.Store } // CountReturn always 1
	releaseNotFound     struct{ store.Store } // Release reports a missing record
	contextIgnored      struct{ store.Store } // Get ignores a done context
	closeLeavesItOpen   struct{ store.Store } // Close does nothing
	closedPingSucceeds  struct{ store.Store } // Ping nil after Close
	closedReadsNotFound struct{ store.Store } // Get after Close: ErrNotFound
	pingFails           struct{ store.Store } // Ping always fails
)

func (m missingIsNil) Get(ctx context.Context, ref string) (*headers.Record, error) {
	rec, err := m.Store.Get(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return rec, err
}

func (m mangledRaw) Get(ctx context.Context, ref string) (*headers.Record, error) {
	rec, err := m.Store.Get(ctx, ref)
	if rec != nil {
		for i := range rec.Fields {
			rec.Fields[i].Raw = []byte(strings.ToValidUTF8(string(rec.Fields[i].Raw), "\uFFFD"))
		}
	}
	return rec, err
}

func (m unfolded) Get(ctx context.Context, ref string) (*headers.Record, error) {
	rec, err := m.Store.Get(ctx, ref)
	if rec != nil {
		for i := range rec.Fields {
			raw := bytes.ReplaceAll(rec.Fields[i].Raw, []byte("\r\n "), []byte(" "))
			rec.Fields[i].Raw = bytes.ReplaceAll(raw, []byte("\r\n\t"), []byte("\t"))
		}
	}
	return rec, err
}

func (m firstPutWins) Put(ctx context.Context, rec *headers.Record, ttl time.Duration) error {
	if rec != nil {
		if _, err := m.Store.Get(ctx, rec.Ref); err == nil {
			return nil
		}
	}
	return m.Store.Put(ctx, rec, ttl)
}

func (m laxPut) Put(ctx context.Context, rec *headers.Record, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = time.Hour
	}
	return m.Store.Put(ctx, rec, ttl)
}

func (m ttlIgnored) Put(ctx context.Context, rec *headers.Record, ttl time.Duration) error {
	return m.Store.Put(ctx, rec, 100*ttl)
}

func (m unsortedLookups) ByMessageID(ctx context.Context, mid string) ([]*headers.Record, error) {
	recs, err := m.Store.ByMessageID(ctx, mid)
	slices.Reverse(recs)
	return recs, err
}

func (m nilLookups) ByMessageID(ctx context.Context, mid string) ([]*headers.Record, error) {
	if mid == "" {
		return nil, nil
	}
	return m.Store.ByMessageID(ctx, mid)
}

func (m foldedFingerprints) ByFingerprint(ctx context.Context, fp string) ([]*headers.Record, error) {
	return m.Store.ByFingerprint(ctx, strings.ToLower(fp))
}

func (m claimAlwaysWins) Claim(ctx context.Context, ref, rcpt string, lease time.Duration) (store.ClaimResult, error) {
	res, err := m.Store.Claim(ctx, ref, rcpt, lease)
	if res == store.InFlight {
		res = store.Claimed
	}
	return res, err
}

func (m leaseIgnored) Claim(ctx context.Context, ref, rcpt string, lease time.Duration) (store.ClaimResult, error) {
	if lease > 0 {
		lease = time.Hour
	}
	return m.Store.Claim(ctx, ref, rcpt, lease)
}

func (m leaseRoundedUp) Claim(ctx context.Context, ref, rcpt string, lease time.Duration) (store.ClaimResult, error) {
	return m.Store.Claim(ctx, ref, rcpt, max(lease, time.Millisecond))
}

func (m foldedRecipients) Claim(ctx context.Context, ref, rcpt string, lease time.Duration) (store.ClaimResult, error) {
	return m.Store.Claim(ctx, ref, strings.ToLower(rcpt), lease)
}

func (m confirmForgets) Confirm(ctx context.Context, ref, rcpt string) error { return nil }

func (m releaseForgets) Release(ctx context.Context, ref, rcpt string) error { return nil }

func (m countStuck) CountReturn(ctx context.Context, ref string) (int64, error) {
	_, err := m.Store.CountReturn(ctx, ref)
	return 1, err
}

func (m releaseNotFound) Release(ctx context.Context, ref, rcpt string) error {
	if _, err := m.Store.Get(ctx, ref); err != nil {
		return err
	}
	return m.Store.Release(ctx, ref, rcpt)
}

func (m contextIgnored) Get(_ context.Context, ref string) (*headers.Record, error) {
	return m.Store.Get(context.Background(), ref)
}

func (m closeLeavesItOpen) Close() error { return nil }

func (m pingFails) Ping(ctx context.Context) error { return errors.New("no answer") }

func (m closedPingSucceeds) Ping(ctx context.Context) error { return nil }

func (m closedReadsNotFound) Get(ctx context.Context, ref string) (*headers.Record, error) {
	rec, err := m.Store.Get(ctx, ref)
	if errors.Is(err, store.ErrClosed) {
		return nil, fmt.Errorf("store: get %s: %w", ref, store.ErrNotFound)
	}
	return rec, err
}

type mutant struct {
	name string
	wrap func(store.Store) store.Store
	// fails are the cases that must fail on the mutant.
	fails []string
}

var mutants = []mutant{
	{"missingIsNil", func(s store.Store) store.Store { return missingIsNil{s} }, []string{"GetMissing", "PutRejects", "TTLExpires"}},
	{"mangledRaw", func(s store.Store) store.Store { return mangledRaw{s} }, []string{"PutGet"}},
	{"unfolded", func(s store.Store) store.Store { return unfolded{s} }, []string{"PutGet", "PutGetExchangeCorpus"}},
	{"firstPutWins", func(s store.Store) store.Store { return firstPutWins{s} }, []string{"PutReplaces"}},
	{"pingFails", func(s store.Store) store.Store { return pingFails{s} }, []string{"Ping"}},
	{"laxPut", func(s store.Store) store.Store { return laxPut{s} }, []string{"PutRejects"}},
	{"ttlIgnored", func(s store.Store) store.Store { return ttlIgnored{s} }, []string{"TTLExpires", "IndexesDropExpired", "PutResetsTTL"}},
	{"unsortedLookups", func(s store.Store) store.Store { return unsortedLookups{s} }, []string{"ByMessageID"}},
	{"nilLookups", func(s store.Store) store.Store { return nilLookups{s} }, []string{"ByMessageID"}},
	{"foldedFingerprints", func(s store.Store) store.Store { return foldedFingerprints{s} }, []string{"ByFingerprint"}},
	{"claimAlwaysWins", func(s store.Store) store.Store { return claimAlwaysWins{s} },
		[]string{"ClaimConfirm", "ClaimRelease", "ClaimPerRecipient", "ClaimLeaseLapses", "ConcurrentClaimOneWinner", "ConcurrentClaimRelease", "PutKeepsDeliveryState", "ContextCanceled"}},
	{"leaseIgnored", func(s store.Store) store.Store { return leaseIgnored{s} }, []string{"ClaimLeaseLapses"}},
	{"leaseRoundedUp", func(s store.Store) store.Store { return leaseRoundedUp{s} }, []string{"ClaimRejects"}},
	{"foldedRecipients", func(s store.Store) store.Store { return foldedRecipients{s} }, []string{"ClaimPerRecipient"}},
	{"confirmForgets", func(s store.Store) store.Store { return confirmForgets{s} },
		[]string{"ClaimConfirm", "ClaimLeaseLapses", "ConcurrentClaimRelease", "PutKeepsDeliveryState", "PutResetsTTL"}},
	{"releaseForgets", func(s store.Store) store.Store { return releaseForgets{s} }, []string{"ClaimRelease", "ConcurrentClaimRelease", "ClaimPerRecipient"}},
	{"countStuck", func(s store.Store) store.Store { return countStuck{s} }, []string{"CountReturn", "PutKeepsDeliveryState"}},
	{"releaseNotFound", func(s store.Store) store.Store { return releaseNotFound{s} }, []string{"GetMissing", "TTLExpires"}},
	{"contextIgnored", func(s store.Store) store.Store { return contextIgnored{s} }, []string{"ContextCanceled"}},
	{"closeLeavesItOpen", func(s store.Store) store.Store { return closeLeavesItOpen{s} }, []string{"Close"}},
	{"closedPingSucceeds", func(s store.Store) store.Store { return closedPingSucceeds{s} }, []string{"Close"}},
	{"closedReadsNotFound", func(s store.Store) store.Store { return closedReadsNotFound{s} }, []string{"Close"}},
}

// mutantEnv names the mutant TestMutant runs the suite on.
const mutantEnv = "STORETEST_MUTANT"

// TestMutant runs the suite on the mutant named by $STORETEST_MUTANT, or on
// an intact store for "none". TestRunCatchesMutants runs it.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("run by TestRunCatchesMutants")
	}
	wrap := func(s store.Store) store.Store { return s }
	if name != "none" {
		i := slices.IndexFunc(mutants, func(m mutant) bool { return m.name == name })
		if i < 0 {
			t.Fatalf("no mutant %q", name)
		}
		wrap = mutants[i].wrap
	}
	Run(t, func(t *testing.T) store.Store { return wrap(Bolt(t)) })
}

// TestRunCatchesMutants checks that Run fails each mutant in the cases that
// test what the mutant broke, and passes an intact store.
func TestRunCatchesMutants(t *testing.T) {
	if os.Getenv(mutantEnv) != "" {
		t.Skip("inside a mutant run")
	}
	if testing.Short() {
		t.Skip("runs the suite in subprocesses")
	}
	files, _ := filepath.Glob(filepath.Join(exchangeCorpus(), "*.eml"))
	haveCorpus := len(files) > 0
	run := func(t *testing.T, mutant string, cases []string) (string, error) {
		pattern := "^TestMutant$"
		if len(cases) > 0 {
			pattern += "/^(" + strings.Join(cases, "|") + ")$"
		}
		cmd := exec.Command(os.Args[0], "-test.run="+pattern, "-test.count=1", "-test.v", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), mutantEnv+"="+mutant)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Run("none", func(t *testing.T) {
		t.Parallel()
		out, err := run(t, "none", nil)
		if err != nil || !strings.Contains(out, "--- PASS: TestMutant ") {
			t.Fatalf("suite on an intact store: %v\n%s", err, out)
		}
	})
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			out, err := run(t, m.name, m.fails)
			if err == nil {
				t.Fatalf("the suite passed a store that breaks %s:\n%s", m.name, out)
			}
			for _, c := range m.fails {
				if c == "PutGetExchangeCorpus" && !haveCorpus {
					continue
				}
				if !strings.Contains(out, "--- FAIL: TestMutant/"+c+" ") {
					t.Errorf("case %s passed a store that breaks %s", c, m.name)
				}
			}
			if strings.Contains(out, "panic:") {
				t.Errorf("the suite panicked on %s:\n%s", m.name, out)
			}
		})
	}
}
