package e2e

// The forged messages of the fault suite: a rogue on the vendor side sends
// the relay's return leg messages that claim to be internal, with no
// reference, a tampered one, or a real one replayed for other recipients.
// None may reach the tenant.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/recallrelay/recallrelay/headers"
	"github.com/recallrelay/recallrelay/relaytest"
)

const (
	// refHeader carries the relay's signed reference to its record.
	refHeader = "X-RecallRelay-Ref"
	// rogueHeader marks a forged message, with its number.
	rogueHeader = "X-Fault-Rogue"
)

// Kinds of forged messages a rogue vendor sends straight to the return leg.
const (
	rogueNoReference   = iota // a message the relay never saw, claiming to be internal
	rogueBadSignature         // a real message and envelope, one byte of the reference's MAC flipped
	rogueOtherRcpts           // a real reference replayed for other recipients
	rogueAddedRcpt            // a real reference replayed with one recipient added
	rogueRealMessageID        // no reference, a real Message-ID, another recipient (the fallback lookup)
	rogueKinds
)

var rogueKindNames = [rogueKinds]string{"no-reference", "bad-signature", "replay-other-rcpts", "replay-added-rcpt", "real-message-id-other-rcpt"}

// rogueResult is what the relay answered a forged message.
type rogueResult struct {
	kind int
	name string
	res  relaytest.Result
}

// sendRogues sends faultRogueMessages forged messages, all claiming
// X-MS-Exchange-CrossPremises-AuthAs and X-MS-Exchange-Organization-AuthAs
// Internal, straight to the relay's return leg while the run goes on. The
// replayed references are taken from what the vendor received.
func (h *faultHarness) sendRogues(ctx context.Context, seed uint64) []rogueResult {
	rng := rand.New(rand.NewPCG(seed, 0x0606E))
	s := relaytest.Sender{Addr: h.relay.returnAddr, Helo: "rogue.fault.test", MaxAttempts: 10, Backoff: 200 * time.Millisecond, Timeout: faultClientTimeout}
	var out []rogueResult
	for i := range faultRogueMessages {
		var real []relaytest.Delivery
		for len(real) == 0 {
			real = h.vendor.Received()
			if len(real) == 0 {
				select {
				case <-ctx.Done():
					return out
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		kind := i % rogueKinds
		m, err := forge(kind, i, seed, real[rng.IntN(len(real))])
		if err != nil {
			h.t.Errorf("forge rogue message %d: %v", i, err)
			return out
		}
		out = append(out, rogueResult{kind: kind, name: m.Name, res: s.Send(ctx, m)})
		select {
		case <-ctx.Done():
			return out
		case <-time.After(time.Duration(100+rng.IntN(200)) * time.Millisecond):
		}
	}
	return out
}

// forge builds forged message i of the given kind from a real message the
// vendor received (with the relay's reference in it).
func forge(kind, i int, seed uint64, real relaytest.Delivery) (relaytest.Message, error) {
	name := fmt.Sprintf("rogue-%02d-%s", i, rogueKindNames[kind])
	stranger := fmt.Sprintf("rogue-target-%02d@contoso.com", i)
	forged := []string{
		fmt.Sprintf("%s: %d", rogueHeader, i),
		"X-MS-Exchange-Organization-AuthAs: Internal",
		"X-MS-Exchange-Organization-AuthSource: DM6PR11MB4316.namprd11.prod.outlook.com",
		"X-MS-Exchange-CrossPremises-AuthAs: Internal",
		"X-MS-Exchange-CrossPremises-AuthSource: DM6PR11MB4316.namprd11.prod.outlook.com",
	}
	if kind == rogueNoReference {
		data := strings.Join(append(forged,
			"X-OrganizationHeadersPreserved: DM6PR11MB4316.namprd11.prod.outlook.com",
			"From: Mallory <mallory@contoso.com>",
			"To: <"+stranger+">",
			fmt.Sprintf("Subject: Forged internal message %d", i),
			"Date: Mon, 3 Mar 2025 09:00:00 +0000",
			fmt.Sprintf("Message-ID: <rogue-%d-%d@contoso.com>", seed, i),
			"MIME-Version: 1.0",
			"Content-Type: text/plain; charset=us-ascii",
			"",
			"Please wire the money today.",
			""), "\r\n")
		return relaytest.Message{Name: name, From: "mallory@contoso.com", To: []string{stranger}, Data: []byte(data)}, nil
	}

	hd, body, err := headers.ReadHeader(bytes.NewReader(real.Data), maxHeaderBytes)
	if err != nil {
		return relaytest.Message{}, err
	}
	rest, err := io.ReadAll(body)
	if err != nil {
		return relaytest.Message{}, err
	}
	var buf bytes.Buffer
	for _, f := range forged {
		buf.WriteString(f + "\r\n")
	}
	for _, f := range hd.Fields() {
		if !strings.EqualFold(f.Name, refHeader) {
			buf.Write(f.Raw)
			continue
		}
		switch kind {
		case rogueRealMessageID:
			// dropped: the relay must fall back to Message-ID
		case rogueBadSignature:
			v, err := flipSignature(hd.Get(refHeader))
			if err != nil {
				return relaytest.Message{}, err
			}
			buf.WriteString(refHeader + ": " + v + "\r\n")
		default:
			buf.Write(f.Raw)
		}
	}
	buf.WriteString("\r\n")
	buf.Write(rest)

	to := []string{stranger}
	switch kind {
	case rogueBadSignature:
		to = real.Rcpts
	case rogueAddedRcpt:
		to = append(slices.Clone(real.Rcpts), stranger)
	}
	return relaytest.Message{Name: name, From: real.MailFrom, To: to, UTF8: real.UTF8, Data: buf.Bytes()}, nil
}

// flipSignature returns the reference value with one byte of its MAC
// inverted (decoded and re-encoded: flipping a base64 character could touch
// only padding bits).
func flipSignature(v string) (string, error) {
	i := strings.LastIndex(v, "s=")
	if i < 0 {
		return "", fmt.Errorf("reference %q has no signature", v)
	}
	mac, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(v[i+2:]))
	if err != nil || len(mac) == 0 {
		return "", fmt.Errorf("reference %q: signature: %v", v, err)
	}
	mac[len(mac)/2] ^= 0xff
	return v[:i+2] + base64.RawURLEncoding.EncodeToString(mac), nil
}
