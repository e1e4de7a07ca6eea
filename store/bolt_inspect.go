package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/recallrelay/recallrelay/headers"
)

// boltScanBatch is the number of records Bolt.Scan decodes per read
// transaction; fn runs between transactions.
const boltScanBatch = 256

// OpenBoltReadOnly opens the existing store file at cfg.Path for reading
// only, for inspection while no relay uses it: Get, the lookups, Ping and
// the Inspector methods work; Put, Claim, Confirm, Release and CountReturn
// fail. It never creates or changes the file and runs no sweeper, so expired
// entries stay in the file (reads ignore them). Of cfg, it uses Path,
// LockTimeout and Now.
//
// It takes a shared lock on the file: several read-only stores may have the
// file open at once, but not while a store opened by OpenBolt has (a relay
// running on it), nor OpenBolt while a read-only store has. Then it fails
// after cfg.LockTimeout with an error wrapping go.etcd.io/bbolt/errors.ErrTimeout
// that says the file is locked. It fails if the file does not exist or is
// not a store file.
func OpenBoltReadOnly(cfg BoltConfig) (*Bolt, error) {
	if cfg.Path == "" {
		return nil, errors.New("store: bolt: no path configured")
	}
	if cfg.LockTimeout < 0 {
		return nil, errors.New("store: bolt: negative lock timeout")
	}
	if cfg.LockTimeout == 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: cfg.LockTimeout, ReadOnly: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: bolt: open %s read-only: file is locked by another process (gave up after %v): %w",
			cfg.Path, cfg.LockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: bolt: open %s read-only: %w", cfg.Path, err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRecords, bucketMessageID, bucketFingerprint, bucketDelivery} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("not a store file: no bucket %q", name)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: bolt: open %s read-only: %w", cfg.Path, err)
	}
	// No sweeper: stop only serves Close, which waits for none.
	return &Bolt{db: db, now: cfg.Now, stop: make(chan struct{})}, nil
}

// Deliveries returns the delivery state of the record ref, read with the
// store's clock in one read transaction, or an error wrapping ErrNotFound if
// the record does not exist.
func (b *Bolt) Deliveries(ctx context.Context, ref string) (Deliveries, error) {
	if err := usable(ctx, &b.closed); err != nil {
		return Deliveries{}, fmt.Errorf("store: deliveries: %w", err)
	}
	if err := lookupRef("deliveries", ref); err != nil {
		return Deliveries{}, err
	}
	d := Deliveries{Recipients: map[string]RecipientState{}}
	err := b.view(func(tx *bolt.Tx) error {
		now := b.now()
		d.At = now
		if liveRecord(tx, []byte(ref), now.UnixNano()) == nil {
			return ErrNotFound
		}
		bucket := tx.Bucket(bucketDelivery).Bucket([]byte(ref))
		if bucket == nil {
			return nil
		}
		return bucket.ForEach(func(k, v []byte) error {
			return deliveryField(&d, string(k),
				func() (RecipientState, error) {
					switch {
					case len(v) == 1 && v[0] == stateDelivered:
						return RecipientState{Delivery: DeliveryConfirmed}, nil
					case len(v) == 1+expiryLen && v[0] == stateClaimed:
						end := int64(binary.BigEndian.Uint64(v[1:]))
						return claimState(time.Unix(0, end), now), nil
					}
					return RecipientState{}, fmt.Errorf("malformed state %q", v)
				},
				func() (int64, error) {
					if len(v) != 8 {
						return 0, fmt.Errorf("malformed value %q", v)
					}
					return int64(binary.BigEndian.Uint64(v)), nil
				})
		})
	})
	if err != nil {
		return Deliveries{}, fmt.Errorf("store: deliveries %s: %w", ref, err)
	}
	return d, nil
}

// TTL returns the remaining lifetime of the record ref on the store's clock,
// or an error wrapping ErrNotFound if the record does not exist.
func (b *Bolt) TTL(ctx context.Context, ref string) (time.Duration, error) {
	if err := usable(ctx, &b.closed); err != nil {
		return 0, fmt.Errorf("store: ttl: %w", err)
	}
	if err := lookupRef("ttl", ref); err != nil {
		return 0, err
	}
	var ttl time.Duration
	err := b.view(func(tx *bolt.Tx) error {
		now := b.now().UnixNano()
		v := liveRecord(tx, []byte(ref), now)
		if v == nil {
			return ErrNotFound
		}
		// Both are positive int64s with exp > now: no overflow.
		ttl = time.Duration(int64(binary.BigEndian.Uint64(v)) - now)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: ttl %s: %w", ref, err)
	}
	return ttl.Truncate(time.Millisecond), nil
}

// Scan calls fn with each live record, in the order of their refs, until fn
// returns false. It reads boltScanBatch records per read transaction and
// calls fn between transactions, so that fn may use the store.
func (b *Bolt) Scan(ctx context.Context, fn func(*headers.Record) bool) error {
	var after []byte // the last ref read; nil before the first batch
	for {
		if err := usable(ctx, &b.closed); err != nil {
			return fmt.Errorf("store: scan: %w", err)
		}
		var batch []*headers.Record
		err := b.view(func(tx *bolt.Tx) error {
			now := b.now().UnixNano()
			c := tx.Bucket(bucketRecords).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(batch) < boltScanBatch; k, v = c.Next() {
				after = bytes.Clone(k)
				if !live(v, now) {
					continue
				}
				rec, err := decodeRecord(v[expiryLen:])
				if err != nil {
					return fmt.Errorf("record %s: %w", k, err)
				}
				batch = append(batch, rec)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: scan: %w", err)
		}
		for _, rec := range batch {
			if !fn(rec) {
				return nil
			}
		}
		if len(batch) < boltScanBatch {
			return nil
		}
	}
}
