// Package store keeps origin records between the two legs of a message's
// round trip through the vendor, and the delivery state that suppresses
// duplicate deliveries when the vendor sends one message back more than once.
//
// Store is the interface the relay, its wiring and the tests use. Two
// implementations satisfy it: Redis, for one or several relay processes
// sharing a Redis deployment (single node, Sentinel or Cluster), and Bolt, an
// embedded single-process store on a local file for relays without Redis.
// storetest.Run checks an implementation against the contract Store
// documents.
//
// Every entry expires: a record, its index entries and its delivery state all
// live for the TTL given to Put. Lookups of expired entries behave as if the
// entries had never existed.
//
// # Delivery claims
//
// Before delivering a returning message to a recipient, the return leg calls
// Claim for the pair (ref, rcpt). Only the caller that gets Claimed delivers;
// it then calls Confirm after the delivery succeeded or Release after it
// failed. A claim that is neither confirmed nor released (the process died)
// lapses after its lease, so that a later retry by the vendor can deliver.
// Claims carry no owner token: a caller must choose a lease longer than its
// own delivery timeout, or a Release after the lease lapsed may drop a claim
// that another caller has taken meanwhile.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/recallrelay/recallrelay/headers"
)

// Store keeps origin records between the two legs of a message's round trip,
// and the per-recipient delivery state that suppresses duplicate returns.
//
// A record is named by its reference, Record.Ref: a non-empty string of at
// most 256 bytes without spaces, control characters or braces, compared byte
// for byte. A string that cannot name a record names none: lookups by it
// report ErrNotFound.
//
// Every entry expires. A record, its Message-ID and fingerprint index entries
// and its delivery state (claims, confirmed deliveries, the return count)
// live for the TTL of the latest Put of the record; once it has passed,
// every method behaves as if the record had never been stored, and a new Put
// under the same reference starts with no delivery state. TTLs and leases are
// measured on the store's clock (for Redis, the server's) to the
// millisecond.
//
// A Store is safe for concurrent use; a Redis store also by several
// processes sharing one Redis. Claim, Confirm, Release and CountReturn are
// each one atomic read-modify-write of the record's delivery state.
//
// If ctx is already done when a method other than Close is called, the
// method returns an error wrapping ctx.Err() and changes nothing; if ctx ends
// during the call, it returns an error and a write may or may not have
// happened. A method called after Close returns an error wrapping ErrClosed.
// An error wraps ErrNotFound only when the record is missing: an unreachable
// backend, a done context or a closed store never reads as "not found".
type Store interface {
	// Put stores rec under rec.Ref for ttl, replacing any record with that
	// reference, and indexes it under rec.MessageID and rec.Fingerprint,
	// each when non-empty. After a replacement, lookups by the old record's
	// Message-ID or fingerprint no longer find it. The delivery state of a
	// live record with that reference is kept and lives on for ttl with the
	// new record; that of an expired one is gone. The store keeps no
	// reference to rec.
	//
	// Put fails without storing anything if rec is nil, rec.Ref cannot name
	// a record or ttl is not positive; that error does not wrap ErrNotFound.
	Put(ctx context.Context, rec *headers.Record, ttl time.Duration) error

	// Get returns the live record stored under ref, as a copy the caller may
	// modify. Field.Raw bytes come back exactly as they were put; a string
	// field that is not valid UTF-8 may come back with each invalid byte
	// replaced by U+FFFD. Get returns an error wrapping ErrNotFound when no
	// live record exists under ref: never stored, expired, or ref cannot
	// name a record.
	Get(ctx context.Context, ref string) (*headers.Record, error)

	// ByMessageID returns the live records put with a MessageID of exactly
	// messageID (byte for byte: no case folding, no normalization), ordered
	// by ReceivedAt and then by Ref. It returns an empty, non-nil slice, and
	// no error, when there are none or messageID is empty.
	ByMessageID(ctx context.Context, messageID string) ([]*headers.Record, error)

	// ByFingerprint is ByMessageID for the Fingerprint of a record.
	ByFingerprint(ctx context.Context, fp string) ([]*headers.Record, error)

	// Claim tries to take the delivery of the record ref to the recipient
	// rcpt for lease. It reports:
	//
	//   - Claimed: there was neither a confirmed delivery nor an unexpired
	//     claim for (ref, rcpt); the caller now holds a claim until lease
	//     has passed, and must Confirm or Release it.
	//   - AlreadyDelivered: a delivery to rcpt was confirmed for the
	//     record; nothing changed.
	//   - InFlight: an unexpired claim on (ref, rcpt) exists; nothing
	//     changed.
	//
	// Of concurrent claims on one (ref, rcpt), whether from one process or
	// several, at most one gets Claimed while its lease runs. Recipients
	// compare as in headers.SameAddress: the domain ignoring case, the local
	// part exactly, and an address without '@' as a whole; claims for other
	// recipients or other records are independent.
	//
	// Claim returns an error wrapping ErrNotFound if no live record exists
	// under ref, and another error if rcpt is empty or lease is shorter
	// than a millisecond.
	Claim(ctx context.Context, ref, rcpt string, lease time.Duration) (ClaimResult, error)

	// Confirm records that the record ref was delivered to rcpt: for the
	// rest of the record's life, Claim(ref, rcpt) reports AlreadyDelivered.
	// It does so whether or not a claim is held, and by whom; confirming
	// again changes nothing. It returns an error wrapping ErrNotFound if no
	// live record exists under ref, and another error if rcpt is empty.
	Confirm(ctx context.Context, ref, rcpt string) error

	// Release drops an unconfirmed claim on (ref, rcpt), whoever holds it,
	// so that the next Claim gets Claimed at once. It does nothing and
	// returns nil when there is no claim, when the delivery was confirmed
	// and when no live record exists under ref: it never reports
	// ErrNotFound. It returns an error if rcpt is empty.
	Release(ctx context.Context, ref, rcpt string) error

	// CountReturn adds one to the number of times the record ref came back
	// from the vendor and returns the new count: 1 on the first call for a
	// record. The relay calls it only for a copy that delivers to nobody
	// (every recipient had it already), so the count is of duplicates
	// acknowledged without delivery, which the relay's
	// max_duplicate_returns bounds; a first delivery is not counted.
	// Concurrent calls get distinct, consecutive counts. The count is part
	// of the record's delivery state (kept when a live record is replaced,
	// gone when it expires) and independent of claims. It returns an error
	// wrapping ErrNotFound if no live record exists under ref.
	CountReturn(ctx context.Context, ref string) (int64, error)

	// Ping reports whether the store can serve requests: it returns nil if
	// the backend answers, an error otherwise.
	Ping(ctx context.Context) error

	// Close releases the store's resources. Calls made after Close returns
	// fail with ErrClosed; calls in progress may fail. Calling Close more
	// than once returns the first result. The relay never calls Close: the
	// code that opened the store closes it once nothing uses it.
	Close() error
}

// ErrNotFound is returned, possibly wrapped, when a record does not exist or
// has expired. Test for it with errors.Is.
var ErrNotFound = errors.New("store: record not found")

// ErrClosed is returned, wrapped, by the methods of a Store called after its
// Close. Test for it with errors.Is.
var ErrClosed = errors.New("store: closed")

// usable returns why an operation must not go ahead: the store is closed,
// or ctx is done.
func usable(ctx context.Context, closed *atomic.Bool) error {
	if closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// minLease is the shortest lease Claim accepts: Redis measures leases in
// milliseconds.
const minLease = time.Millisecond

// ClaimResult is the outcome of a Claim.
type ClaimResult int

const (
	// Claimed means the caller now owns the delivery of (ref, rcpt) until the
	// lease runs out, and must Confirm or Release it.
	Claimed ClaimResult = iota + 1
	// AlreadyDelivered means a delivery of (ref, rcpt) was confirmed before.
	AlreadyDelivered
	// InFlight means another caller holds an unexpired claim on (ref, rcpt).
	InFlight
)

// String returns the name of the result.
func (r ClaimResult) String() string {
	switch r {
	case Claimed:
		return "Claimed"
	case AlreadyDelivered:
		return "AlreadyDelivered"
	case InFlight:
		return "InFlight"
	default:
		return fmt.Sprintf("ClaimResult(%d)", int(r))
	}
}

// maxRefLen bounds the length of a record reference. References are short
// random strings; anything longer is a caller bug, not a record.
const maxRefLen = 256

// checkRef reports whether ref can name a record. Besides being non-empty and
// short, a reference must not contain braces, which would break the Redis
// hash tag that keeps all keys of a record in one cluster slot, nor spaces,
// control characters or NUL, which the Bolt key layout relies on being absent.
func checkRef(ref string) error {
	if ref == "" {
		return errors.New("empty ref")
	}
	if len(ref) > maxRefLen {
		return fmt.Errorf("ref longer than %d bytes", maxRefLen)
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; c <= ' ' || c == 0x7f || c == '{' || c == '}' {
			return fmt.Errorf("ref contains invalid byte %q", c)
		}
	}
	return nil
}

// checkPut validates the arguments of Put.
func checkPut(rec *headers.Record, ttl time.Duration) error {
	if rec == nil {
		return errors.New("store: put: nil record")
	}
	if err := checkRef(rec.Ref); err != nil {
		return fmt.Errorf("store: put: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("store: put %s: non-positive ttl %v", rec.Ref, ttl)
	}
	return nil
}

// lookupRef validates a reference passed to a lookup. A reference that cannot
// name a record names no record, so the error wraps ErrNotFound.
func lookupRef(op, ref string) error {
	if err := checkRef(ref); err != nil {
		return fmt.Errorf("store: %s: %w: %w", op, ErrNotFound, err)
	}
	return nil
}

// rcptKey returns the key under which delivery state for rcpt is kept: the
// address with its domain lowercased and its local part unchanged, matching
// headers.SameAddress. An address without '@' (e.g. "postmaster") is used
// as it is.
func rcptKey(rcpt string) (string, error) {
	if rcpt == "" {
		return "", errors.New("empty recipient")
	}
	i := strings.LastIndexByte(rcpt, '@')
	if i < 0 {
		return rcpt, nil
	}
	return rcpt[:i+1] + strings.ToLower(rcpt[i+1:]), nil
}

// sortRecords orders records by ReceivedAt, then by Ref, so that index
// lookups are deterministic.
func sortRecords(recs []*headers.Record) {
	slices.SortFunc(recs, func(a, b *headers.Record) int {
		if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Ref, b.Ref)
	})
}

// sameValue reports whether stored, a field of a decoded record, equals
// queried, the value a lookup asked for. JSON turns invalid UTF-8 into U+FFFD,
// so a queried value that is not valid UTF-8 is compared in the form it takes
// after a JSON round trip.
func sameValue(stored, queried string) bool {
	if stored == queried {
		return true
	}
	if utf8.ValidString(queried) {
		return false
	}
	b, err := json.Marshal(queried)
	if err != nil {
		return false
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return false
	}
	return stored == s
}

// Delivery-state encoding shared by both implementations. Fields of a
// record's delivery state are either a claim for one recipient (prefix
// fieldRcpt followed by the recipient key) or the return counter
// (fieldReturns); the prefixes keep the two from ever colliding.
const (
	fieldRcpt    = "r:"
	fieldReturns = "n"
)
