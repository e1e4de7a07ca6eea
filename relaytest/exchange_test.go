package relaytest

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"
	"time"
)

// secondPassBlock is what exchange-second-pass appends at the bottom of
// the header, for a message without an X-MS-Office365-Filtering-Correlation-Id,
// at 2026-03-04 05:06:07.89 UTC; netID is the message's new Network-Message-Id.
func secondPassBlock(netID string) []string {
	return []string{
		"X-MS-Office365-Filtering-Correlation-Id: " + netID + "\r\n",
		"X-MS-Exchange-CrossTenant-OriginalArrivalTime: 04 Mar 2026 05:06:07.8900\r\n (UTC)\r\n",
		"X-MS-Exchange-CrossTenant-Network-Message-Id: " + netID + "\r\n",
		"X-MS-Exchange-CrossTenant-Id: " + SecondPassTenantID + "\r\n",
		"X-MS-Exchange-CrossTenant-AuthSource: " + SecondPassFrontend + "\r\n",
		"X-MS-Exchange-CrossTenant-AuthAs: Anonymous\r\n",
		"X-MS-Exchange-CrossTenant-FromEntityHeader: Internet\r\n",
		"X-MS-Exchange-Transport-CrossTenantHeadersStamped: AM6PR05MB4321\r\n",
		"X-MS-Exchange-CrossPremises-AuthAs: Anonymous\r\n",
		"X-MS-Exchange-CrossPremises-AuthSource: " + SecondPassFrontend + "\r\n",
		"X-MS-Exchange-CrossPremises-TransportTrafficType: Email\r\n",
		"X-MS-Exchange-CrossPremises-SCL: " + SecondPassSCL + "\r\n",
		"X-MS-Exchange-CrossPremises-OriginalClientIPAddress: " + SecondPassClientIP + "\r\n",
		"X-MS-Exchange-CrossPremises-Antispam-ScanContext: DIR:In;SFV:NSPM;SKIP:0;\r\n",
		"X-OrganizationHeadersPreserved: " + SecondPassServer + "\r\n",
	}
}

// exchange-second-pass, on every generated and corpus message as a vendor
// returned it (processed marker, relay reference): the body and every field
// outside the organization families stay byte for byte and in order; every
// Organization, CrossPremises, CrossTenant field, X-OrganizationHeadersPreserved,
// X-OriginatorOrg and CrossTenantHeadersStamped the message had is gone; a
// frontend Received field is on top and the anonymous block at the bottom.
func TestExchangeSecondPass(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	sp := exchangeSecondPass{now: func() time.Time { return at }}
	ref := "X-RecallRelay-Ref: v=1; k=t1; r=abc; t=1772600767; s=xyz\r\n"
	damaged := 0
	for _, m := range testMessages(t) {
		in := append([]byte("X-CodeTwoProcessed: true\r\n"+ref), m.Data...)
		out, err := sp.Transform(in)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if again, _ := sp.Transform(in); !bytes.Equal(again, out) {
			t.Errorf("%s: not deterministic under a fixed clock", m.Name)
		}
		if !bytes.Equal(bodyOf(out), bodyOf(in)) {
			t.Errorf("%s: body bytes changed", m.Name)
		}
		inFields, outFields := exactFields(in), exactFields(out)

		// The Received field on top.
		if len(outFields) == 0 || outFields[0].Name != "Received" ||
			!bytes.HasPrefix(unfold(outFields[0].Raw), []byte("Received: from vendor.relaytest.invalid ("+SecondPassClientIP+") by AM6EUR05FT021.mail.protection.outlook.com")) ||
			!bytes.Contains(unfold(outFields[0].Raw), []byte("via Frontend Transport; Wed, 4 Mar 2026 05:06:07 +0000")) {
			t.Errorf("%s: first field %q, want the frontend's Received field", m.Name, outFields[0].Raw)
			continue
		}
		outFields = outFields[1:]

		// The other fields, in order, byte for byte.
		var want []exactField
		var correlation string
		for _, f := range inFields {
			if secondPassRemoves(f.Name) {
				if strings.EqualFold(f.Name, "X-MS-Office365-Filtering-Correlation-Id") && correlation == "" {
					_, v, _ := strings.Cut(string(unfold(f.Raw)), ":")
					correlation = strings.TrimSpace(v)
				}
				continue
			}
			want = append(want, f)
		}
		if len(outFields) < len(want) {
			t.Errorf("%s: %d fields after Received, want at least %d", m.Name, len(outFields), len(want))
			continue
		}
		assertSameFields(t, m.Name, outFields[:len(want)], want)

		// The block at the bottom.
		var block []string
		for _, f := range outFields[len(want):] {
			block = append(block, string(f.Raw))
		}
		netID := guidOfData(in)
		wantBlock := secondPassBlock(netID)
		if correlation != "" {
			wantBlock = append([]string{"X-MS-Office365-Filtering-Correlation-Id-Prvs: " + correlation + "\r\n"}, wantBlock...)
		}
		if !slices.Equal(block, wantBlock) {
			t.Errorf("%s: stamped block\n%q\nwant\n%q", m.Name, block, wantBlock)
		}

		// The reference and the marker survive; recall identity does not.
		if !bytes.Contains(out, []byte("\r\n"+ref)) || !bytes.Contains(out, []byte("\r\nX-CodeTwoProcessed: true\r\n")) {
			t.Errorf("%s: reference or processed marker lost", m.Name)
		}
		if r := CompareIdentity(in, out); !r.Intact {
			damaged++
		}
	}
	if damaged == 0 {
		t.Error("the second pass damaged no message's recall identity")
	}
}

func guidOfData(data []byte) string {
	sum := sha256.Sum256(data)
	return guidOf(sum[:16])
}

// A message without a header block or with only organization fields is
// still handled.
func TestExchangeSecondPassEdgeCases(t *testing.T) {
	t.Parallel()
	sp := MustParseBehaviors("exchange-second-pass")[0].(Transformer)
	for _, in := range []string{
		"\r\nbody only\r\n",
		"X-MS-Exchange-Organization-AuthAs: Internal\r\nx-ms-exchange-crosspremises-authas: Internal\r\nX-OrganizationHeadersPreserved: x\r\n\r\n",
		"Subject: no body\r\n",
		"X-MS-Office365-Filtering-Correlation-Id: old-id\r\nSubject: s\r\n\r\nb\r\n",
	} {
		out, err := sp.Transform([]byte(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if bytes.Contains(out, []byte("Internal")) || bytes.Contains(out, []byte("Preserved: x\r\n")) {
			t.Errorf("%q: an arriving organization field survived:\n%s", in, out)
		}
		if !bytes.Contains(out, []byte("\r\nX-MS-Exchange-CrossPremises-AuthAs: Anonymous\r\n")) {
			t.Errorf("%q: no anonymous AuthAs:\n%s", in, out)
		}
		if strings.Contains(in, "old-id") && !bytes.Contains(out, []byte("\r\nX-MS-Office365-Filtering-Correlation-Id-Prvs: old-id\r\n")) {
			t.Errorf("%q: the old correlation id is not kept as -Prvs:\n%s", in, out)
		}
	}
}
