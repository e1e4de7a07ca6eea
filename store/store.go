// Package store keeps origin records between the two legs of a message's
// round trip through the vendor, and the delivery state that suppresses
// duplicate deliveries when the vendor sends one message back more than once.
//
// Two implementations share one method set: Redis, for one or several relay
// processes sharing a Redis deployment (single node, Sentinel or Cluster),
// and Bolt, an embedded single-process store on a local file for relays
// without Redis.
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
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/recallrelay/recallrelay/headers"
)

// ErrNotFound is returned, possibly wrapped, when a record does not exist or
// has expired. Test for it with errors.Is.
var ErrNotFound = errors.New("store: record not found")

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
