package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltEntries returns the number of entries in each bucket of b: records,
// index entries, and records with delivery state.
func BoltEntries(b *Bolt) (map[string]int, error) {
	counts := map[string]int{}
	err := b.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRecords, bucketMessageID, bucketFingerprint, bucketDelivery} {
			n := 0
			c := tx.Bucket(name).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				n++
			}
			counts[string(name)] = n
		}
		return nil
	})
	return counts, err
}

// PutBoltRaw stores data, an encoded record, under ref for ttl exactly as
// given, as a relay of another release would have written it.
func PutBoltRaw(b *Bolt, ref string, data []byte, ttl time.Duration) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		exp := encodeExpiry(expiryAt(b.now(), ttl))
		return tx.Bucket(bucketRecords).Put([]byte(ref), append(exp, data...))
	})
}

// GetBoltRaw returns the encoded record stored under ref, without its
// expiry, or nil.
func GetBoltRaw(b *Bolt, ref string) ([]byte, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketRecords).Get([]byte(ref)); len(v) >= expiryLen {
			out = append([]byte(nil), v[expiryLen:]...)
		}
		return nil
	})
	return out, err
}
