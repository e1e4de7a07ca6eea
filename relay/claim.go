package relay

import (
	"context"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/store"
)

// deliveryClaim guards the delivery of one record's message to the
// recipients of one return transaction, so that a vendor that sends a
// message back again cannot deliver it twice: the security-critical core
// of duplicate suppression, with no SMTP in it.
//
// take claims each recipient. A recipient the tenant already accepted the
// message for is suppressed (acknowledged, not delivered again); one
// another copy is being delivered to right now makes the whole
// transaction 451. settle confirms the claims when the tenant answered
// 250, releases them when the tenant certainly does not have the message,
// and keeps them (until their lease lapses) when end-of-data was sent and
// no verdict came back: releasing then could let a second copy through.
type deliveryClaim struct {
	store   Store
	rec     *headers.Record
	lease   time.Duration
	timeout time.Duration // each store operation of release and settle
	// maxReturns bounds the copies acknowledged without delivery.
	maxReturns int
	// warn reports what settle or release could not do.
	warn func(msg string, err error)

	claimed    []string
	suppressed []string
}

// take claims rcpts. skip is true when every recipient already has the
// message: the copy is to be acknowledged without delivery. The error is
// an *smtp.SMTPError (451 another copy in delivery, 550 too many copies)
// or a *storeError; on error nothing stays claimed.
func (c *deliveryClaim) take(ctx context.Context, rcpts []string) (skip bool, err error) {
	for _, rc := range rcpts {
		res, err := c.store.Claim(ctx, c.rec.Ref, rc, c.lease)
		if err != nil {
			c.release()
			return false, &storeError{op: "claim", ref: c.rec.Ref, err: err}
		}
		switch res {
		case store.Claimed:
			c.claimed = append(c.claimed, rc)
		case store.AlreadyDelivered:
			c.suppressed = append(c.suppressed, rc)
		default:
			c.release()
			return false, Reply(451, smtp.EnhancedCode{4, 3, 0}, "Another copy of this message is being delivered to %s right now; try again later", rc)
		}
	}
	if len(c.claimed) > 0 {
		return false, nil
	}
	n, err := c.store.CountReturn(ctx, c.rec.Ref)
	if err != nil {
		return false, &storeError{op: "count returns", ref: c.rec.Ref, err: err}
	}
	if n > int64(c.maxReturns) {
		return false, Reply(550, smtp.EnhancedCode{5, 7, 1}, "This message was already delivered and came back %d times; further copies refused", n)
	}
	return true, nil
}

// settle ends the claims by what became of the message at the tenant.
func (c *deliveryClaim) settle(res hopResult) {
	switch res {
	case notDelivered:
		c.release()
	case unknown:
		c.warn("tenant's verdict on end of data unknown; claims kept until their lease lapses", nil)
	case delivered:
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		for _, rc := range c.claimed {
			if err := c.store.Confirm(ctx, c.rec.Ref, rc); err != nil {
				c.warn("confirm failed for "+rc+": a later duplicate may be delivered", err)
			}
		}
	}
}

// release gives up every claim taken.
func (c *deliveryClaim) release() {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for _, rc := range c.claimed {
		if err := c.store.Release(ctx, c.rec.Ref, rc); err != nil {
			c.warn("release claim failed for "+rc+"; it lapses with its lease", err)
		}
	}
	c.claimed = nil
}
