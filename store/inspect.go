package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/recallrelay/recallrelay/headers"
)

// Inspector reads what a store holds, for operators and diagnostic tools
// (recallrelay trace) rather than for the relay: the delivery state and the
// remaining lifetime of a record, and every live record. Redis and Bolt
// implement it.
//
// Its methods only read: none changes a record, an index entry or a delivery
// state, nor extends a lifetime. They follow the conventions of Store: a done
// context makes them return an error wrapping ctx.Err(), a closed store one
// wrapping ErrClosed, and an error wraps ErrNotFound only when the record is
// missing (never stored, expired, or ref cannot name a record).
type Inspector interface {
	// Deliveries returns the delivery state of the live record ref: the
	// recipients that have a claim or a confirmed delivery, and the return
	// count. It returns an error wrapping ErrNotFound if no live record
	// exists under ref.
	Deliveries(ctx context.Context, ref string) (Deliveries, error)

	// TTL returns how long the live record ref has left to live, measured
	// on the store's clock (for Redis, the server's), rounded down to the
	// millisecond. It is never negative, except when the record has no
	// expiry, which only a change made to the backend outside the store
	// can cause. It returns an error wrapping ErrNotFound if no live
	// record exists under ref.
	TTL(ctx context.Context, ref string) (time.Duration, error)

	// Scan calls fn with each live record, as a copy fn may keep and
	// modify, until fn returns false or there are no more records; it
	// returns nil then. The order is unspecified. A record that stays live
	// for the whole scan is visited at least once; Redis may visit a
	// record more than once (SCAN promises no better), so a caller that
	// counts records must skip refs it has seen. A record put, replaced or
	// expiring during the scan may or may not be visited. Scan never holds
	// a transaction or lock of the store while fn runs: fn may call the
	// store.
	//
	// The stores have no index by envelope or field: Scan reads every
	// record, and its cost grows with the number of records stored. It
	// returns an error, after calling fn with the records read so far, if
	// the backend fails, ctx ends or a record cannot be decoded.
	Scan(ctx context.Context, fn func(*headers.Record) bool) error
}

var (
	_ Inspector = (*Redis)(nil)
	_ Inspector = (*Bolt)(nil)
)

// Deliveries is the delivery state of one record, as Inspector.Deliveries
// reads it at one instant.
type Deliveries struct {
	// Recipients holds the state of each recipient that has a claim or a
	// confirmed delivery, keyed by the recipient as the store keeps it:
	// the address with its domain lower-cased (see Store.Claim). Use For
	// to look a recipient up. A recipient never claimed, or whose claim was
	// released, is absent.
	Recipients map[string]RecipientState
	// Returns is the record's CountReturn count: the copies the vendor
	// sent back after every recipient had the message, acknowledged
	// without delivery (the relay does not count first deliveries); 0 if
	// there were none.
	Returns int64
	// At is the instant the state was read, on the store's clock (for
	// Redis, the server's): the lease ends in Recipients compare to it.
	At time.Time
}

// For returns the state of the recipient rcpt, comparing addresses as
// Claim does: the domain ignoring case, the local part exactly. It returns
// the zero RecipientState, whose Delivery is DeliveryPending, when rcpt has
// no delivery state.
func (d Deliveries) For(rcpt string) RecipientState {
	key, err := rcptKey(rcpt)
	if err != nil {
		return RecipientState{}
	}
	return d.Recipients[key]
}

// RecipientState is the delivery state of one recipient of a record.
type RecipientState struct {
	// Delivery says where the delivery to the recipient stands.
	Delivery Delivery
	// LeaseEnd is, for DeliveryInFlight and DeliveryLapsed, when the
	// lease of the latest claim ends or ended, on the store's clock; the
	// zero time otherwise.
	LeaseEnd time.Time
}

// Delivery is where the delivery of a record to one recipient stands.
type Delivery int

const (
	// DeliveryPending means there is neither a confirmed delivery nor a
	// claim: the next Claim gets Claimed. It is the zero value.
	DeliveryPending Delivery = iota
	// DeliveryConfirmed means a delivery was confirmed: Claim reports
	// AlreadyDelivered for the rest of the record's life.
	DeliveryConfirmed
	// DeliveryInFlight means a claim whose lease has not ended is held:
	// Claim reports InFlight until the claim is confirmed, released or
	// its lease ends.
	DeliveryInFlight
	// DeliveryLapsed means a claim was neither confirmed nor released
	// before its lease ended (the process holding it died, or is late):
	// the next Claim gets Claimed, as for DeliveryPending.
	DeliveryLapsed
)

// String returns the name of the state: "pending", "delivered", "in flight"
// or "lapsed".
func (d Delivery) String() string {
	switch d {
	case DeliveryPending:
		return "pending"
	case DeliveryConfirmed:
		return "delivered"
	case DeliveryInFlight:
		return "in flight"
	case DeliveryLapsed:
		return "lapsed"
	default:
		return "Delivery(" + strconv.Itoa(int(d)) + ")"
	}
}

// claimState returns the state of a claim whose lease ends at end, read at
// now.
func claimState(end, now time.Time) RecipientState {
	if end.After(now) {
		return RecipientState{Delivery: DeliveryInFlight, LeaseEnd: end}
	}
	return RecipientState{Delivery: DeliveryLapsed, LeaseEnd: end}
}

// deliveryField decodes one field of a record's delivery state, whatever the
// backend: a recipient's claim or delivery (fieldRcpt + key) through rcpt,
// the return counter (fieldReturns) through returns. Unknown fields are an
// error: the state was written by something this code does not know.
func deliveryField(d *Deliveries, field string, rcpt func() (RecipientState, error), returns func() (int64, error)) error {
	switch {
	case field == fieldReturns:
		n, err := returns()
		if err != nil {
			return fmt.Errorf("return count: %w", err)
		}
		d.Returns = n
	case len(field) > len(fieldRcpt) && field[:len(fieldRcpt)] == fieldRcpt:
		st, err := rcpt()
		if err != nil {
			return fmt.Errorf("recipient %q: %w", field[len(fieldRcpt):], err)
		}
		d.Recipients[field[len(fieldRcpt):]] = st
	default:
		return fmt.Errorf("unknown delivery-state field %q", field)
	}
	return nil
}
