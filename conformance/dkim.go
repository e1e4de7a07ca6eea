package conformance

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/recallrelay/recallrelay/relaytest"
)

// DKIM: Exchange Online signs the mail a tenant sends, and a vendor that
// changes the body or drops a signed field breaks that signature; Exchange
// then evaluates DMARC when the message comes back in
// (docs/exchange-round-trip.md §5). The report signs every message as the
// tenant would before it is sent and verifies the signature on every
// delivery, so it shows which vendor behaviours break DKIM and what the
// relay's restoration mends. Signing and verifying are go-msgauth's.
const (
	dkimDomain   = "tenant.conformance.invalid"
	dkimSelector = "rr"
)

// dkimHeaderKeys are the fields Exchange Online's own signatures cover
// (h= of every Exchange signature in ../shared/corpus/exchange).
var dkimHeaderKeys = []string{"From", "Date", "Subject", "Message-ID", "Content-Type", "MIME-Version", "X-MS-Exchange-SenderADCheck"}

// dkimKey is the tenant's signing key for one run; verification looks its
// public key up here, not in DNS.
type dkimKey struct {
	priv   ed25519.PrivateKey
	record string // the TXT record of <selector>._domainkey.<domain>
}

func newDKIMKey() (*dkimKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	return &dkimKey{priv: priv, record: "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}, nil
}

// signAll returns msgs with a DKIM-Signature of the key prepended to each.
func (k *dkimKey) signAll(msgs []relaytest.Message) ([]relaytest.Message, error) {
	out := make([]relaytest.Message, len(msgs))
	for i, m := range msgs {
		var b bytes.Buffer
		err := dkim.Sign(&b, bytes.NewReader(m.Data), &dkim.SignOptions{
			Domain: dkimDomain, Selector: dkimSelector, Signer: k.priv,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             dkimHeaderKeys,
		})
		if err != nil {
			return nil, fmt.Errorf("dkim sign %s: %w", m.Name, err)
		}
		m.Data = b.Bytes()
		out[i] = m
	}
	return out, nil
}

// verifies reports whether msg carries a valid signature of the key.
// Other signatures (the messages' own, from domains that cannot be looked
// up here) are ignored.
func (k *dkimKey) verifies(msg []byte) bool {
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if name == dkimSelector+"._domainkey."+dkimDomain {
				return []string{k.record}, nil
			}
			return nil, errors.New("no such record (conformance looks up its own key only)")
		},
	})
	if err != nil {
		return false
	}
	for _, v := range vs {
		if v.Domain == dkimDomain && v.Err == nil {
			return true
		}
	}
	return false
}
