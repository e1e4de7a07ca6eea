package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/recallrelay/recallrelay/headers"
)

// Defaults of BoltConfig.
const (
	DefaultSweepInterval = time.Minute
	DefaultLockTimeout   = time.Second
)

// BoltConfig configures OpenBolt.
type BoltConfig struct {
	// Path is the database file. Its directory is created with mode 0700
	// if missing; the file itself is created with mode 0600.
	Path string
	// SweepInterval is how often expired entries are deleted from the file;
	// DefaultSweepInterval when zero. Reads ignore expired entries whether
	// or not they were swept yet.
	SweepInterval time.Duration
	// LockTimeout is how long OpenBolt waits for the exclusive lock on the
	// file that another process may hold; DefaultLockTimeout when zero.
	LockTimeout time.Duration
	// Now returns the current time; time.Now when nil. Tests use it to move
	// the store's clock.
	Now func() time.Time
	// OnSweepError, if non-nil, is called from the sweeper goroutine with
	// every error a sweep ends with. The sweeper tries again at the next
	// interval regardless.
	OnSweepError func(error)
}

// Bolt is an embedded store in a bbolt file, for a single relay process.
// It is safe for concurrent use. Records survive Close and a later OpenBolt
// of the same file; a background goroutine deletes expired entries.
//
// bbolt runs one writing transaction at a time, which makes every
// delivery-state operation atomic.
type Bolt struct {
	db           *bolt.DB
	now          func() time.Time
	onSweepError func(error)

	stop      chan struct{}
	wg        sync.WaitGroup
	commits   chan commitReq // to commitLoop; unbuffered
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Bolt)(nil)

// Bucket layout. Every record and index value starts with the entry's expiry
// as 8 bytes of big-endian Unix nanoseconds.
//
//	records:        ref -> expiry | record JSON
//	by-message-id:  sha256(Message-ID) | ref -> expiry
//	by-fingerprint: sha256(fingerprint) | ref -> expiry
//	delivery:       ref -> bucket of
//	                  "r:" rcpt -> "d" | "c" lease end (Unix ns)
//	                  "n"       -> return count (uint64)
var (
	bucketRecords     = []byte("records")
	bucketMessageID   = []byte("by-message-id")
	bucketFingerprint = []byte("by-fingerprint")
	bucketDelivery    = []byte("delivery")
)

const (
	stateDelivered = 'd'
	stateClaimed   = 'c'
	expiryLen      = 8
	indexHashLen   = sha256.Size
	sweepBatch     = 1000
)

// OpenBolt opens or creates the store file at cfg.Path and starts its
// sweeper. If another process has the file open, it fails after
// cfg.LockTimeout with an error saying so.
func OpenBolt(cfg BoltConfig) (*Bolt, error) {
	if cfg.Path == "" {
		return nil, errors.New("store: bolt: no path configured")
	}
	if cfg.SweepInterval < 0 || cfg.LockTimeout < 0 {
		return nil, errors.New("store: bolt: negative interval")
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.LockTimeout == 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("store: bolt: %w", err)
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: cfg.LockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: bolt: open %s: file is locked by another process (gave up after %v): %w",
			cfg.Path, cfg.LockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: bolt: open %s: %w", cfg.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRecords, bucketMessageID, bucketFingerprint, bucketDelivery} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: bolt: open %s: %w", cfg.Path, err)
	}
	b := &Bolt{
		db:           db,
		now:          cfg.Now,
		onSweepError: cfg.OnSweepError,
		stop:         make(chan struct{}),
		commits:      make(chan commitReq),
	}
	b.wg.Add(2)
	go b.sweepLoop(cfg.SweepInterval)
	go b.commitLoop()
	return b, nil
}

// expiryAt returns the expiry, in Unix nanoseconds, of an entry created at
// now to live for ttl, saturating instead of overflowing.
func expiryAt(now time.Time, ttl time.Duration) int64 {
	n := now.UnixNano()
	if int64(ttl) > math.MaxInt64-n {
		return math.MaxInt64
	}
	return n + int64(ttl)
}

func encodeExpiry(exp int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, expiryLen), uint64(exp))
}

// live reports whether v, a value that starts with an expiry, is unexpired
// at now.
func live(v []byte, now int64) bool {
	return len(v) >= expiryLen && int64(binary.BigEndian.Uint64(v)) > now
}

func indexKey(value, ref string) []byte {
	sum := sha256.Sum256([]byte(value))
	return append(sum[:], ref...)
}

// liveRecord returns the stored value of the record ref if it is unexpired
// at now. The value is only valid during tx.
func liveRecord(tx *bolt.Tx, ref []byte, now int64) []byte {
	v := tx.Bucket(bucketRecords).Get(ref)
	if !live(v, now) {
		return nil
	}
	return v
}

// view runs fn in a read-only transaction; update in a read-write one. A
// database closed meanwhile reads as ErrClosed.
func (b *Bolt) view(fn func(*bolt.Tx) error) error { return dbErr(b.db.View(fn)) }

// update runs fn in a read-write transaction and returns once that
// transaction is on disk, or fn's error. Writes are committed in groups
// (commitLoop): those that arrive while a commit is being written to disk
// share the next one, so concurrent messages pay for one fsync between
// them instead of one each, and a lone write is committed at once. fn may
// run more than once (see commitGroup), each time in a fresh transaction:
// it must keep nothing from a run but what it writes to the transaction
// and the results it sets.
func (b *Bolt) update(fn func(*bolt.Tx) error) error {
	if b.commits == nil { // opened read-only: bbolt refuses the write
		return dbErr(b.db.Update(fn))
	}
	req := commitReq{fn: fn, done: make(chan error, 1)}
	select {
	case b.commits <- req:
	case <-b.stop:
		return ErrClosed
	}
	return <-req.done
}

// commitReq is one write waiting for commitLoop.
type commitReq struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// maxGroup bounds the writes committed in one transaction.
const maxGroup = 256

// commitLoop commits the writes update hands it: the first one that comes,
// with every one that is waiting by then.
func (b *Bolt) commitLoop() {
	defer b.wg.Done()
	for {
		var group []commitReq
		select {
		case req := <-b.commits:
			group = append(group, req)
		case <-b.stop:
			return
		}
	more:
		for len(group) < maxGroup {
			select {
			case req := <-b.commits:
				group = append(group, req)
			default:
				break more
			}
		}
		b.commitGroup(group)
	}
}

// commitGroup runs a group's writes in one transaction. When one of them
// fails, the transaction is rolled back, that write runs again in a
// transaction of its own (its result is its own, not the group's) and the
// others are committed as a group again: a write that fails on its own
// terms, such as a Claim of a missing record, costs one more commit, not
// one per member.
func (b *Bolt) commitGroup(group []commitReq) {
	for len(group) > 1 {
		failed := -1
		err := b.db.Update(func(tx *bolt.Tx) error {
			for i, r := range group {
				if err := r.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, r := range group {
				r.done <- dbErr(err)
			}
			return
		}
		r := group[failed]
		r.done <- dbErr(b.db.Update(r.fn))
		group = append(group[:failed:failed], group[failed+1:]...)
	}
	for _, r := range group {
		r.done <- dbErr(b.db.Update(r.fn))
	}
}

func dbErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Put stores rec under rec.Ref for ttl, replacing any record with that ref,
// and indexes it by rec.MessageID and rec.Fingerprint when those are
// non-empty. The delivery state of a live record with that ref is kept; that
// of an expired one is discarded.
func (b *Bolt) Put(ctx context.Context, rec *headers.Record, ttl time.Duration) error {
	if err := usable(ctx, &b.closed); err != nil {
		return fmt.Errorf("store: put: %w", err)
	}
	if err := checkPut(rec, ttl); err != nil {
		return err
	}
	data, err := encodeRecord(rec)
	if err != nil {
		return fmt.Errorf("store: put %s: %w", rec.Ref, err)
	}
	ref := []byte(rec.Ref)
	err = b.update(func(tx *bolt.Tx) error {
		now := b.now()
		if liveRecord(tx, ref, now.UnixNano()) == nil {
			err := tx.Bucket(bucketDelivery).DeleteBucket(ref)
			if err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
		}
		exp := encodeExpiry(expiryAt(now, ttl))
		if err := tx.Bucket(bucketRecords).Put(ref, append(exp, data...)); err != nil {
			return err
		}
		if rec.MessageID != "" {
			if err := tx.Bucket(bucketMessageID).Put(indexKey(rec.MessageID, rec.Ref), exp); err != nil {
				return err
			}
		}
		if rec.Fingerprint != "" {
			if err := tx.Bucket(bucketFingerprint).Put(indexKey(rec.Fingerprint, rec.Ref), exp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: put %s: %w", rec.Ref, err)
	}
	return nil
}

// Get returns the record stored under ref, or an error wrapping ErrNotFound.
func (b *Bolt) Get(ctx context.Context, ref string) (*headers.Record, error) {
	if err := usable(ctx, &b.closed); err != nil {
		return nil, fmt.Errorf("store: get: %w", err)
	}
	if err := lookupRef("get", ref); err != nil {
		return nil, err
	}
	var rec *headers.Record
	err := b.view(func(tx *bolt.Tx) error {
		v := liveRecord(tx, []byte(ref), b.now().UnixNano())
		if v == nil {
			return ErrNotFound
		}
		var err error
		rec, err = decodeRecord(v[expiryLen:])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", ref, err)
	}
	return rec, nil
}

// ByMessageID returns the live records whose MessageID is messageID, ordered
// by ReceivedAt and then Ref. It returns an empty slice when there are none.
func (b *Bolt) ByMessageID(ctx context.Context, messageID string) ([]*headers.Record, error) {
	return b.byIndex(ctx, "message-id lookup", bucketMessageID, messageID, func(rec *headers.Record) bool {
		return sameValue(rec.MessageID, messageID)
	})
}

// ByFingerprint returns the live records whose Fingerprint is fp, ordered by
// ReceivedAt and then Ref. It returns an empty slice when there are none.
func (b *Bolt) ByFingerprint(ctx context.Context, fp string) ([]*headers.Record, error) {
	return b.byIndex(ctx, "fingerprint lookup", bucketFingerprint, fp, func(rec *headers.Record) bool {
		return sameValue(rec.Fingerprint, fp)
	})
}

func (b *Bolt) byIndex(ctx context.Context, op string, bucket []byte, value string, match func(*headers.Record) bool) ([]*headers.Record, error) {
	if err := usable(ctx, &b.closed); err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	out := []*headers.Record{}
	if value == "" {
		return out, nil
	}
	prefix := indexKey(value, "")
	err := b.view(func(tx *bolt.Tx) error {
		now := b.now().UnixNano()
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if !live(v, now) {
				continue
			}
			rv := liveRecord(tx, k[indexHashLen:], now)
			if rv == nil {
				continue
			}
			rec, err := decodeRecord(rv[expiryLen:])
			if err != nil {
				return fmt.Errorf("record %s: %w", k[indexHashLen:], err)
			}
			if match(rec) {
				out = append(out, rec)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	sortRecords(out)
	return out, nil
}

// deliveryOp runs fn in a writing transaction on the delivery-state bucket of
// the live record ref, creating the bucket if needed. It returns an error
// wrapping ErrNotFound if the record does not exist. The caller has checked
// usable.
func (b *Bolt) deliveryOp(op, ref string, fn func(d *bolt.Bucket, now int64) error) error {
	if err := lookupRef(op, ref); err != nil {
		return err
	}
	err := b.update(func(tx *bolt.Tx) error {
		now := b.now().UnixNano()
		if liveRecord(tx, []byte(ref), now) == nil {
			return ErrNotFound
		}
		d, err := tx.Bucket(bucketDelivery).CreateBucketIfNotExists([]byte(ref))
		if err != nil {
			return err
		}
		return fn(d, now)
	})
	if err != nil {
		return fmt.Errorf("store: %s %s: %w", op, ref, err)
	}
	return nil
}

// Claim tries to take the delivery of the message recorded under ref to rcpt
// for lease. See ClaimResult for the outcomes. It returns an error wrapping
// ErrNotFound if the record does not exist.
func (b *Bolt) Claim(ctx context.Context, ref, rcpt string, lease time.Duration) (ClaimResult, error) {
	if err := usable(ctx, &b.closed); err != nil {
		return 0, fmt.Errorf("store: claim: %w", err)
	}
	key, err := rcptKey(rcpt)
	if err != nil {
		return 0, fmt.Errorf("store: claim: %w", err)
	}
	if lease < minLease {
		return 0, fmt.Errorf("store: claim: lease %v shorter than %v", lease, minLease)
	}
	var res ClaimResult
	err = b.deliveryOp("claim", ref, func(d *bolt.Bucket, now int64) error {
		field := []byte(fieldRcpt + key)
		v := d.Get(field)
		switch {
		case len(v) == 1 && v[0] == stateDelivered:
			res = AlreadyDelivered
			return nil
		case len(v) == 1+expiryLen && v[0] == stateClaimed && live(v[1:], now):
			res = InFlight
			return nil
		}
		res = Claimed
		end := expiryAt(time.Unix(0, now), lease)
		return d.Put(field, append([]byte{stateClaimed}, encodeExpiry(end)...))
	})
	if err != nil {
		return 0, err
	}
	return res, nil
}

// Confirm records that the message recorded under ref was delivered to rcpt;
// later claims for rcpt get AlreadyDelivered for the rest of the record's
// life. It returns an error wrapping ErrNotFound if the record does not
// exist.
func (b *Bolt) Confirm(ctx context.Context, ref, rcpt string) error {
	if err := usable(ctx, &b.closed); err != nil {
		return fmt.Errorf("store: confirm: %w", err)
	}
	key, err := rcptKey(rcpt)
	if err != nil {
		return fmt.Errorf("store: confirm: %w", err)
	}
	return b.deliveryOp("confirm", ref, func(d *bolt.Bucket, _ int64) error {
		return d.Put([]byte(fieldRcpt+key), []byte{stateDelivered})
	})
}

// Release drops an unconfirmed claim on (ref, rcpt), so that the delivery can
// be claimed again at once. It does nothing when there is no claim, when the
// delivery was confirmed, or when the record no longer exists.
func (b *Bolt) Release(ctx context.Context, ref, rcpt string) error {
	if err := usable(ctx, &b.closed); err != nil {
		return fmt.Errorf("store: release: %w", err)
	}
	key, err := rcptKey(rcpt)
	if err != nil {
		return fmt.Errorf("store: release: %w", err)
	}
	if checkRef(ref) != nil {
		return nil
	}
	err = b.deliveryOp("release", ref, func(d *bolt.Bucket, _ int64) error {
		field := []byte(fieldRcpt + key)
		if v := d.Get(field); len(v) > 0 && v[0] == stateClaimed {
			return d.Delete(field)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// CountReturn increments the number of times the message recorded under ref
// came back from the vendor and returns the new count. It returns an error
// wrapping ErrNotFound if the record does not exist.
func (b *Bolt) CountReturn(ctx context.Context, ref string) (int64, error) {
	if err := usable(ctx, &b.closed); err != nil {
		return 0, fmt.Errorf("store: count return: %w", err)
	}
	var n uint64
	err := b.deliveryOp("count return", ref, func(d *bolt.Bucket, _ int64) error {
		field := []byte(fieldReturns)
		if v := d.Get(field); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		n++
		return d.Put(field, binary.BigEndian.AppendUint64(nil, n))
	})
	if err != nil {
		return 0, err
	}
	return int64(n), nil
}

// Ping opens and closes a read-only transaction: it returns nil while the
// database is open, and an error wrapping ErrClosed after Close.
func (b *Bolt) Ping(ctx context.Context) error {
	if err := usable(ctx, &b.closed); err != nil {
		return fmt.Errorf("store: bolt ping: %w", err)
	}
	if err := b.view(func(*bolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("store: bolt ping: %w", err)
	}
	return nil
}

// Close stops the sweeper, waiting for a running sweep to finish, and closes
// the file. Later calls of the store's other methods return an error
// wrapping ErrClosed. Calling Close more than once returns the first result.
func (b *Bolt) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.stop)
		b.wg.Wait()
		if err := b.db.Close(); err != nil {
			b.closeErr = fmt.Errorf("store: bolt close: %w", err)
		}
	})
	return b.closeErr
}

func (b *Bolt) sweepLoop(interval time.Duration) {
	defer b.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			if err := b.sweep(); err != nil && b.onSweepError != nil {
				b.onSweepError(err)
			}
		}
	}
}

// sweep deletes every entry that has expired, in transactions of at most
// sweepBatch deletions so that writers are never held up for long. It stops
// early when the store is closing.
func (b *Bolt) sweep() error {
	for {
		select {
		case <-b.stop:
			return nil
		default:
		}
		n, err := b.sweepOnce(sweepBatch)
		if err != nil {
			return fmt.Errorf("store: bolt sweep: %w", err)
		}
		if n < sweepBatch {
			return nil
		}
	}
}

// sweepOnce deletes up to limit expired entries and returns how many it
// deleted. A record is deleted together with its delivery state; the
// delivery state of a record that no longer exists is deleted as well.
func (b *Bolt) sweepOnce(limit int) (int, error) {
	n := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		now := b.now().UnixNano()
		recs, dlv := tx.Bucket(bucketRecords), tx.Bucket(bucketDelivery)

		// Collect first: deleting under a cursor can skip keys.
		var expired [][]byte
		c := recs.Cursor()
		for k, v := c.First(); k != nil && len(expired) < limit; k, v = c.Next() {
			if !live(v, now) {
				expired = append(expired, bytes.Clone(k))
			}
		}
		for _, ref := range expired {
			if err := recs.Delete(ref); err != nil {
				return err
			}
			if err := dlv.DeleteBucket(ref); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
		}
		n += len(expired)

		var orphans [][]byte
		c = dlv.Cursor()
		for k, _ := c.First(); k != nil && n+len(orphans) < limit; k, _ = c.Next() {
			if recs.Get(k) == nil {
				orphans = append(orphans, bytes.Clone(k))
			}
		}
		for _, ref := range orphans {
			if err := dlv.DeleteBucket(ref); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
		}
		n += len(orphans)

		for _, name := range [][]byte{bucketMessageID, bucketFingerprint} {
			idx := tx.Bucket(name)
			var keys [][]byte
			c := idx.Cursor()
			for k, v := c.First(); k != nil && n+len(keys) < limit; k, v = c.Next() {
				if !live(v, now) {
					keys = append(keys, bytes.Clone(k))
				}
			}
			for _, k := range keys {
				if err := idx.Delete(k); err != nil {
					return err
				}
			}
			n += len(keys)
		}
		return nil
	})
	return n, err
}
