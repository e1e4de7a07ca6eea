package store

import (
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
