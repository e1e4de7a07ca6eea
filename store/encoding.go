package store

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/recallrelay/recallrelay/headers"
)

// RecordVersion is the version of the encoding in which both stores write
// origin records: the JSON of headers.Record with a "v" member added, e.g.
// {"v":1,"ref":"…",…}. Records written before versions were introduced
// have no "v" member; they are version 0, which has the same members, and
// are read as they are.
//
// A store refuses to decode a record of a version newer than RecordVersion
// (ErrRecordVersion): a relay of an older release sharing a Redis with a
// newer one must not restore from a record it only half understands. Such
// a refusal is a store error, so the return leg answers it with a 4xx and
// the vendor retries, e.g. on another relay instance.
const RecordVersion = 1

// ErrRecordVersion is returned, wrapped, when a stored record has a version
// this code does not know. Test for it with errors.Is.
var ErrRecordVersion = errors.New("store: unknown record format version")

// versioned is the stored form of a record.
type versioned struct {
	V *int `json:"v,omitempty"`
	*headers.Record
}

// encodeRecord encodes rec in the current version.
func encodeRecord(rec *headers.Record) ([]byte, error) {
	v := RecordVersion
	return json.Marshal(versioned{V: &v, Record: rec})
}

// decodeRecord decodes a stored record of version 0 (no "v" member) up to
// RecordVersion.
func decodeRecord(data []byte) (*headers.Record, error) {
	rec := &headers.Record{}
	e := versioned{Record: rec}
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	if e.V != nil && (*e.V < 0 || *e.V > RecordVersion) {
		return nil, fmt.Errorf("decode record: %w %d (this relay reads versions 0 to %d; upgrade it)", ErrRecordVersion, *e.V, RecordVersion)
	}
	return rec, nil
}
