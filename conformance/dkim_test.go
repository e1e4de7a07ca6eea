package conformance

import (
	"bytes"
	"testing"

	"github.com/recallrelay/recallrelay/relaytest"
)

// The tenant's signature verifies on the message as signed and stops
// verifying when a signed field or the body changes; fields it does not
// cover (the relay's Received and loop marker) do not matter.
func TestDKIMKey(t *testing.T) {
	t.Parallel()
	k, err := newDKIMKey()
	if err != nil {
		t.Fatal(err)
	}
	msgs := relaytest.Generate(relaytest.GenerateOptions{Seed: 1})[:1]
	signed, err := k.signAll(msgs)
	if err != nil {
		t.Fatal(err)
	}
	data := signed[0].Data
	if !bytes.HasPrefix(data, []byte("DKIM-Signature: ")) || bytes.Equal(data, msgs[0].Data) {
		t.Fatalf("not signed:\n%.200s", data)
	}
	other, _ := newDKIMKey()
	tests := []struct {
		name string
		msg  []byte
		key  *dkimKey
		want bool
	}{
		{"as signed", data, k, true},
		{"unsigned", msgs[0].Data, k, false},
		{"another key", data, other, false},
		{"unsigned field added on top", append([]byte("Received: from relay\r\nX-RecallRelay-Processed: true\r\n"), data...), k, true},
		{"body changed", append(bytes.Clone(data), []byte("-- \r\nSignature\r\n")...), k, false},
		{"signed field dropped", bytes.Replace(data, []byte("X-MS-Exchange-SenderADCheck: 1\r\n"), nil, 1), k, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.key.verifies(tt.msg); got != tt.want {
				t.Errorf("verifies = %v, want %v", got, tt.want)
			}
		})
	}
}
