package relaytest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
)

// Values the exchange-second-pass behaviour stamps. They are shaped like
// the values real Exchange Online messages carry but name no real server or
// tenant.
const (
	// SecondPassTenantID is the tenant id stamped in
	// X-MS-Exchange-CrossTenant-Id.
	SecondPassTenantID = "5eca1c0d-2f6b-4c3e-9a1d-7b0e5f3a2c41"
	// SecondPassClientIP is the address the vendor is taken to have
	// delivered from (X-MS-Exchange-CrossPremises-OriginalClientIPAddress
	// and the Received field): TEST-NET-1, the vendor placeholder of the
	// example configuration. A Transformer sees only the message, not the
	// connection it came on.
	SecondPassClientIP = "192.0.2.25"
	// SecondPassFrontend is the Exchange Online Protection frontend that
	// received the vendor's delivery: the AuthSource of anonymous mail.
	SecondPassFrontend = "AM6EUR05FT021.eop-eur05.prod.protection.outlook.com"
	// SecondPassServer is the transport server that sent the message out
	// through the OnPremises connector (X-OrganizationHeadersPreserved,
	// X-MS-Exchange-Transport-CrossTenantHeadersStamped).
	SecondPassServer = "AM6PR05MB4321.eurprd05.prod.outlook.com"
	// SecondPassSCL is the spam confidence level stamped for the vendor's
	// (clean) mail.
	SecondPassSCL = "1"
)

// exchangeSecondPass plays Exchange Online's second pass in the
// "via-tenant" topology (docs/exchange-online.md): the vendor delivers the
// processed message back to the tenant's MX endpoint, Exchange Online
// receives it as mail from outside the organization, and a transport rule
// (vendor marker present, relay loop marker absent) sends it out again
// through a rule-scoped OnPremises outbound connector with
// CloudServicesMailEnabled to the relay's return listener. A Vendor with
// this behaviour and ReturnAddr set to the relay's return listener stands
// in for that Exchange Online.
//
// What it does to the top-level header (the body is left byte for byte):
//
//   - Removes every X-MS-Exchange-Organization-*,
//     X-MS-Exchange-CrossPremises-* and X-OrganizationHeadersPreserved field
//     the message arrives with (Exchange's header firewall for mail from
//     outside the organization; the X-MS-Exchange-Organization-* it stamps
//     itself are converted to X-MS-Exchange-CrossPremises-* on the way out,
//     so none leave).
//   - Removes every X-MS-Exchange-CrossTenant-*,
//     X-MS-Exchange-Transport-CrossTenantHeadersStamped and X-OriginatorOrg
//     field, and stamps the CrossTenant block anew: documented as what
//     Exchange does on re-entry (docs/exchange-online.md in this module,
//     "What makes returning mail internal"). An
//     X-MS-Office365-Filtering-Correlation-Id the message arrives with is
//     kept as X-MS-Office365-Filtering-Correlation-Id-Prvs and replaced by
//     the new Network-Message-Id (same section).
//   - Adds on top one Received field, from the vendor (SecondPassClientIP)
//     by the frontend, in the form of the Received fields Exchange Online
//     frontends stamp on Internet mail (observed).
//   - Adds at the bottom of the header, where Exchange Online puts its block
//     on outgoing mail (observed): the -Prvs field above, if any,
//     X-MS-Office365-Filtering-Correlation-Id: <new Network-Message-Id>,
//     X-MS-Exchange-CrossTenant-OriginalArrivalTime, -Network-Message-Id,
//     -Id (SecondPassTenantID), -AuthSource (SecondPassFrontend),
//     -AuthAs: Anonymous, -FromEntityHeader: Internet,
//     X-MS-Exchange-Transport-CrossTenantHeadersStamped (SecondPassServer),
//     X-MS-Exchange-CrossPremises-AuthAs: Anonymous, -AuthSource
//     (SecondPassFrontend), -TransportTrafficType: Email, -SCL
//     (SecondPassSCL), -OriginalClientIPAddress (SecondPassClientIP),
//     -Antispam-ScanContext: DIR:In;SFV:NSPM;SKIP:0; and
//     X-OrganizationHeadersPreserved: SecondPassServer.
//
// Every other field (the relay's reference, Message-ID, the vendor's
// processed marker, ...) is kept byte for byte and in place. The envelope
// is not changed: the Vendor sends the result on to ReturnAddr with the
// envelope it received.
//
// Documented (docs/exchange-online.md, "What makes returning mail
// internal"): the Organization-* to CrossPremises-* conversion with
// X-OrganizationHeadersPreserved through a connector with
// CloudServicesMailEnabled, and the CrossTenant re-stamping. Observed (in
// real Internet mail received by a tenant): AuthAs Anonymous,
// AuthSource the EOP frontend, FromEntityHeader Internet, the Received
// field's form. Assumed, where the domain notes are silent: that Exchange
// drops the organization fields the vendor's delivery carries (its header
// firewall for mail from outside; through a vendor connector with
// CloudServicesMailEnabled it would instead promote CrossPremises fields
// the vendor kept); that the anonymous set converted on the way out is
// exactly AuthAs, AuthSource,
// TransportTrafficType, SCL, OriginalClientIPAddress and
// Antispam-ScanContext (no AuthMechanism, since nothing authenticated;
// DIR:In rather than the DIR:Originating of the organization's own mail);
// the SCL value; that Exchange keeps the envelope (no SRS: the sender is in
// an accepted domain) and every other field; that it adds no
// X-OriginatorOrg on this hop. Not modelled: Authentication-Results,
// Received-SPF, ARC, X-Forefront-Antispam-Report, X-MS-Exchange-AntiSpam-*,
// the Received fields of Exchange's internal hops, and header reordering.
// If the vendor's inbound connector attributes the mail to the tenant (as
// the via-tenant topology's FromScope InOrganization needs), the real
// second pass may stamp other authentication values than Anonymous; the
// relay must replace whatever it stamps, which is what this behaviour lets
// a test check.
type exchangeSecondPass struct {
	now func() time.Time
}

func newExchangeSecondPass() exchangeSecondPass { return exchangeSecondPass{now: time.Now} }

func (exchangeSecondPass) Name() string { return "exchange-second-pass" }

// secondPassRemoves reports whether the second pass removes a field the
// message arrives with.
func secondPassRemoves(name string) bool {
	return hasPrefixFold(name, "X-MS-Exchange-Organization-") ||
		hasPrefixFold(name, "X-MS-Exchange-CrossPremises-") ||
		strings.EqualFold(name, "X-OrganizationHeadersPreserved") ||
		hasPrefixFold(name, "X-MS-Exchange-CrossTenant-") ||
		strings.EqualFold(name, "X-MS-Exchange-Transport-CrossTenantHeadersStamped") ||
		strings.EqualFold(name, "X-OriginatorOrg") ||
		strings.EqualFold(name, "X-MS-Office365-Filtering-Correlation-Id") ||
		strings.EqualFold(name, "X-MS-Office365-Filtering-Correlation-Id-Prvs")
}

func (s exchangeSecondPass) Transform(data []byte) ([]byte, error) {
	rawHeader, body := splitHeaderBody(data)
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(rawHeader)))
	if err != nil {
		return nil, fmt.Errorf("parse header: %w", err)
	}
	raws, err := rawFields(h)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	at := now().UTC()
	sum := sha256.Sum256(data)
	netID := guidOf(sum[:16])

	var kept [][]byte
	var prevCorrelation string
	for _, raw := range raws {
		name := fieldName(raw)
		if strings.EqualFold(name, "X-MS-Office365-Filtering-Correlation-Id") && prevCorrelation == "" {
			_, v, _ := bytes.Cut(unfold(raw), []byte(":"))
			prevCorrelation = strings.TrimSpace(string(v))
		}
		if !secondPassRemoves(name) {
			kept = append(kept, raw)
		}
	}

	var top, block header
	top.addFolded("Received", fmt.Sprintf("from %s (%s) by %s (%s) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.8722.7 via Frontend Transport; %s",
		"vendor.relaytest.invalid", SecondPassClientIP,
		strings.Replace(SecondPassFrontend, ".eop-eur05.prod.protection.", ".mail.protection.", 1),
		"2603:10a6:20b:5::21", at.Format("Mon, 2 Jan 2006 15:04:05 -0700")))
	if prevCorrelation != "" {
		block.add("X-MS-Office365-Filtering-Correlation-Id-Prvs", prevCorrelation)
	}
	block.add("X-MS-Office365-Filtering-Correlation-Id", netID)
	block.raw("X-MS-Exchange-CrossTenant-OriginalArrivalTime: " + at.Format("02 Jan 2006 15:04:05.0000") + "\r\n (UTC)\r\n")
	block.add("X-MS-Exchange-CrossTenant-Network-Message-Id", netID)
	block.add("X-MS-Exchange-CrossTenant-Id", SecondPassTenantID)
	block.add("X-MS-Exchange-CrossTenant-AuthSource", SecondPassFrontend)
	block.add("X-MS-Exchange-CrossTenant-AuthAs", "Anonymous")
	block.add("X-MS-Exchange-CrossTenant-FromEntityHeader", "Internet")
	block.add("X-MS-Exchange-Transport-CrossTenantHeadersStamped", strings.SplitN(SecondPassServer, ".", 2)[0])
	block.add("X-MS-Exchange-CrossPremises-AuthAs", "Anonymous")
	block.add("X-MS-Exchange-CrossPremises-AuthSource", SecondPassFrontend)
	block.add("X-MS-Exchange-CrossPremises-TransportTrafficType", "Email")
	block.add("X-MS-Exchange-CrossPremises-SCL", SecondPassSCL)
	block.add("X-MS-Exchange-CrossPremises-OriginalClientIPAddress", SecondPassClientIP)
	block.add("X-MS-Exchange-CrossPremises-Antispam-ScanContext", "DIR:In;SFV:NSPM;SKIP:0;")
	block.add("X-OrganizationHeadersPreserved", SecondPassServer)

	var out bytes.Buffer
	out.Grow(len(data) + 2048)
	out.WriteString(top.String())
	for _, raw := range kept {
		out.Write(raw)
	}
	out.WriteString(block.String())
	out.WriteString("\r\n")
	out.Write(body)
	return out.Bytes(), nil
}

// guidOf formats 16 bytes as a lower-case GUID, as Exchange writes
// Network-Message-Ids.
func guidOf(b []byte) string {
	s := hex.EncodeToString(b[:16])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}
