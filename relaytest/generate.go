package relaytest

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"strings"
	"time"
)

// TestNameHeader is the header field that names the test a message belongs
// to: GenerateOptions.TestNames adds it with the message's Message.Name
// ("gen-01-plain"), and tests stamp it on messages of their own. A service
// under test may rewrite Message-ID and Subject and a recipient may get
// several messages, so tests find "their" delivery with ByTestName,
// MatchTestName or TestName. It is not part of the recall identity
// (CompareIdentity ignores it, and nothing in Exchange or the relay reads
// it); a service may keep it, move it or drop it without consequence.
const TestNameHeader = "X-Relaytest-Name"

// GenerateOptions configures Generate and GenerateMessages.
type GenerateOptions struct {
	// Seed makes the output deterministic: the same options give the same
	// bytes.
	Seed int64
	// OrgDomain is the tenant's domain; "contoso.com" when empty.
	OrgDomain string
	// BigAttachmentBytes, when positive, adds a message with a base64
	// attachment of that many bytes to the default kinds, and sets the
	// attachment size of KindBigAttachment when Kinds names it
	// (DefaultBigAttachmentBytes otherwise).
	BigAttachmentBytes int

	// Kinds lists the kinds to generate, in order; a kind may appear more
	// than once. Empty means Kinds(): one message of every kind, the big
	// attachment only when BigAttachmentBytes is positive. An unknown kind is
	// an error.
	Kinds []string
	// Count is the number of messages to generate, going through Kinds
	// cyclically (Count 30 over 13 kinds gives every kind two or three
	// times). Zero means one message per entry of Kinds; negative is an
	// error.
	Count int

	// Senders, when not empty, replaces the generated senders: message i
	// (counted from 0) is from Senders[i%len(Senders)]. Every entry is an
	// address ("adele@contoso.com") or a name and an address ("Adele Vance
	// <adele@contoso.com>"); the entry is written to the From field as
	// given. The recall report, which Exchange sends to the user who
	// recalled, goes to the message's sender.
	Senders []string
	// Recipients, when not empty, replaces the generated recipients,
	// external ones included: message i's recipients are
	// Recipients[i%len(Recipients)] and the entries after it, as many as the
	// kind has (two To and one Cc for KindMultiRcpt), each at most once.
	// Entries are written like Senders; duplicates are an error.
	Recipients []string

	// NamePrefix begins every Message.Name, which is NamePrefix, the
	// message's number in the call (from 1, two digits or more) and its
	// kind: "gen-01-plain". "gen-" when empty; it must be printable ASCII
	// without blanks.
	NamePrefix string
	// TestNames adds a TestNameHeader field carrying Message.Name to every
	// message. Names are unique within one call; give every call its own
	// NamePrefix to keep them unique across calls.
	TestNames bool
}

// Message kinds Generate produces, in order.
const (
	KindPlain         = "plain"
	KindHTML          = "html"
	KindRelated       = "related"
	KindAttachment    = "attachment"
	KindTNEF          = "tnef"
	KindEightBit      = "8bit"
	KindSMTPUTF8      = "smtputf8"
	KindMultiRcpt     = "multi-rcpt"
	KindRecallRequest = "recall-request"
	KindTNEFRecall    = "tnef-recall"
	KindRecallReport  = "recall-report"
	KindCalendar      = "calendar"
	KindBigAttachment = "big-attachment"
	defaultOrgDomain  = "contoso.com"
	defaultNamePrefix = "gen-"
)

// DefaultBigAttachmentBytes is the attachment size of a KindBigAttachment
// message that Kinds asks for while BigAttachmentBytes is not positive.
const DefaultBigAttachmentBytes = 1 << 20

// kindBuilders maps every kind to the method that builds it, in the order of
// Kinds().
func kindBuilders() []struct {
	kind  string
	build func(*gen) Message
} {
	return []struct {
		kind  string
		build func(*gen) Message
	}{
		{KindPlain, (*gen).plain}, {KindHTML, (*gen).html}, {KindRelated, (*gen).related},
		{KindAttachment, (*gen).attachment}, {KindTNEF, (*gen).tnef}, {KindEightBit, (*gen).eightBit},
		{KindSMTPUTF8, (*gen).smtpUTF8}, {KindMultiRcpt, (*gen).multiRcpt}, {KindRecallRequest, (*gen).recallRequest},
		{KindTNEFRecall, (*gen).tnefRecall}, {KindRecallReport, (*gen).recallReport}, {KindCalendar, (*gen).calendar},
		{KindBigAttachment, (*gen).bigAttachment},
	}
}

// Kinds returns every kind Generate knows, in the order it generates them
// by default.
func Kinds() []string {
	bs := kindBuilders()
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.kind
	}
	return out
}

// Generate returns realistic messages as Exchange Online sends them through
// an outbound connector with CloudServicesMailEnabled (see "What makes
// returning mail internal" in this repository's docs/exchange-online.md):
// each has a full header block with X-MS-Exchange-CrossPremises-* fields
// (the set, spelling and folding vary), X-OrganizationHeadersPreserved,
// X-MS-Exchange-CrossTenant-* fields, X-OriginatorOrg, an Exchange
// Message-ID, Thread-Index, Thread-Topic, X-MS-Has-Attach,
// X-MS-TNEF-Correlator and long folded antispam fields.
//
// By default there is one message of every kind (see Kinds; the big
// attachment only when asked for), named "gen-NN-kind"; GenerateOptions
// chooses kinds, count, names, senders and recipients. Unless Senders and
// Recipients say otherwise, the sender and the recipients are in OrgDomain,
// except for one external recipient of the multi-recipient message. Within
// one call every message has its own name, Subject and Message-ID.
//
// Generate panics if opts is invalid (see GenerateMessages, which returns
// the error instead); options that set only Seed, OrgDomain and
// BigAttachmentBytes are always valid.
func Generate(opts GenerateOptions) []Message {
	msgs, err := GenerateMessages(opts)
	if err != nil {
		panic(err)
	}
	return msgs
}

// GenerateMessages is Generate returning an error for invalid options: an
// unknown kind, a negative Count, an unparsable or duplicate address in
// Senders or Recipients, or a NamePrefix with blanks or control
// characters.
func GenerateMessages(opts GenerateOptions) ([]Message, error) {
	p, err := newGenPlan(opts)
	if err != nil {
		return nil, fmt.Errorf("relaytest: generate: %w", err)
	}
	builders := make(map[string]func(*gen) Message)
	for _, b := range kindBuilders() {
		builders[b.kind] = b.build
	}
	width := max(2, len(fmt.Sprint(p.count)))
	seen := make(map[string]int) // occurrences of each kind so far
	out := make([]Message, 0, p.count)
	for i := 0; i < p.count; i++ {
		kind := p.kinds[i%len(p.kinds)]
		g := newGen(p, i)
		g.name = fmt.Sprintf("%s%0*d-%s", p.opts.NamePrefix, width, i+1, kind)
		g.repeat = seen[kind]
		seen[kind]++
		m := builders[kind](g)
		m.Name = g.name
		out = append(out, m)
	}
	return out, nil
}

// genPlan is what every message of one GenerateMessages call shares.
type genPlan struct {
	opts     GenerateOptions // normalized: OrgDomain and NamePrefix set
	kinds    []string
	count    int
	subjects []string // per-call order of subjectPool
	senders  []person
	rcpts    []person
	tenantID string // X-MS-Exchange-CrossTenant-Id: one per seed
}

func newGenPlan(opts GenerateOptions) (*genPlan, error) {
	if opts.OrgDomain == "" {
		opts.OrgDomain = defaultOrgDomain
	}
	if opts.NamePrefix == "" {
		opts.NamePrefix = defaultNamePrefix
	}
	for i := 0; i < len(opts.NamePrefix); i++ {
		if c := opts.NamePrefix[i]; c <= ' ' || c > '~' {
			return nil, fmt.Errorf("name prefix %q: only printable ASCII without blanks", opts.NamePrefix)
		}
	}
	p := &genPlan{opts: opts, kinds: opts.Kinds, count: opts.Count}
	if len(p.kinds) == 0 {
		p.kinds = Kinds()
		if opts.BigAttachmentBytes <= 0 {
			p.kinds = p.kinds[:len(p.kinds)-1]
		}
	} else {
		known := make(map[string]bool)
		for _, k := range Kinds() {
			known[k] = true
		}
		for _, k := range p.kinds {
			if !known[k] {
				return nil, fmt.Errorf("unknown kind %q (known: %s)", k, strings.Join(Kinds(), ", "))
			}
		}
		if p.opts.BigAttachmentBytes <= 0 {
			p.opts.BigAttachmentBytes = DefaultBigAttachmentBytes
		}
	}
	switch {
	case p.count < 0:
		return nil, fmt.Errorf("negative count %d", p.count)
	case p.count == 0:
		p.count = len(p.kinds)
	}
	var err error
	if p.senders, err = parsePeople("sender", opts.Senders); err != nil {
		return nil, err
	}
	if p.rcpts, err = parsePeople("recipient", opts.Recipients); err != nil {
		return nil, err
	}
	p.subjects = subjectPool()
	sr := rand.New(rand.NewPCG(uint64(opts.Seed), 0x5AB1EC7))
	sr.Shuffle(len(p.subjects), func(i, j int) { p.subjects[i], p.subjects[j] = p.subjects[j], p.subjects[i] })
	p.tenantID = guid(rand.New(rand.NewPCG(uint64(opts.Seed), 0x7E4A47)))
	return p, nil
}

// parsePeople parses the Senders or Recipients option.
func parsePeople(what string, list []string) ([]person, error) {
	var out []person
	seen := make(map[string]bool)
	for _, entry := range list {
		entry = strings.TrimSpace(entry)
		a, err := addrParser().Parse(entry)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, entry, err)
		}
		at := strings.LastIndexByte(a.Address, '@')
		if at <= 0 || at == len(a.Address)-1 {
			return nil, fmt.Errorf("%s %q: no domain", what, entry)
		}
		key := strings.ToLower(a.Address)
		if seen[key] {
			return nil, fmt.Errorf("duplicate %s %q", what, entry)
		}
		seen[key] = true
		p := person{name: a.Name, local: a.Address[:at], domain: a.Address[at+1:], display: entry}
		if p.name == "" {
			p.name = p.local
		}
		out = append(out, p)
	}
	return out, nil
}

// gen generates one message; every message has its own random stream so
// that adding a kind does not change the others.
type gen struct {
	plan *genPlan
	rng  *rand.Rand
	idx  int

	name   string // Message.Name
	repeat int    // how many messages of this kind the call generated before

	date      time.Time
	mailbox   string // server the sender's mailbox lives on, e.g. DM6PR11MB4316
	mbxFQDN   string
	transport string // server that stamped the CrossTenant headers
	trFQDN    string
	msgID     string
}

// generatorEpoch anchors generated dates.
func generatorEpoch() time.Time { return time.Date(2025, time.March, 3, 8, 0, 0, 0, time.UTC) }

func newGen(p *genPlan, idx int) *gen {
	g := &gen{plan: p, idx: idx, rng: rand.New(rand.NewPCG(uint64(p.opts.Seed), uint64(idx)+0x9E3779B97F4A7C15))}
	g.date = generatorEpoch().Add(time.Duration(g.rng.IntN(60*24*20))*time.Minute + time.Duration(idx)*time.Hour +
		time.Duration(g.rng.IntN(60))*time.Second).Add(time.Duration(g.rng.IntN(10000)) * 100 * time.Microsecond)
	g.mailbox, g.mbxFQDN = g.server()
	g.transport, g.trFQDN = g.server()
	g.msgID = "<" + g.mailbox + g.hex(25, true) + "@" + g.mbxFQDN + ">"
	return g
}

func (g *gen) pick(list ...string) string { return list[g.rng.IntN(len(list))] }

func (g *gen) hex(n int, upper bool) string {
	const lo, up = "0123456789abcdef", "0123456789ABCDEF"
	digits := lo
	if upper {
		digits = up
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[g.rng.IntN(16)]
	}
	return string(b)
}

func (g *gen) bytes(n int) []byte {
	b := make([]byte, 0, n+8)
	for len(b) < n {
		b = binary.LittleEndian.AppendUint64(b, g.rng.Uint64())
	}
	return b[:n]
}

func guid(r *rand.Rand) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 36)
	for i := 0; i < 32; i++ {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b = append(b, '-')
		}
		b = append(b, digits[r.IntN(16)])
	}
	return string(b)
}

// server returns an Exchange Online server name and its FQDN.
func (g *gen) server() (string, string) {
	prefix := g.pick("DM6PR", "SN7PR", "BY5PR", "CO1PR", "PH7PR", "MW4PR", "AM6PR", "DB9PR", "VI1PR", "PAXPR", "AS8PR", "SJ0PR", "LV8PR")
	n := g.rng.IntN(20) + 1
	name := fmt.Sprintf("%s%02dMB%04d", prefix, n, 1000+g.rng.IntN(9000))
	var region string
	switch prefix[:2] {
	case "AM", "DB", "VI", "PA", "AS":
		region = fmt.Sprintf("eurprd%02d", n)
	default:
		region = fmt.Sprintf("namprd%02d", n)
	}
	return name, name + "." + region + ".prod.outlook.com"
}

// person is a sender or recipient.
type person struct {
	name    string // display name, also used in the text
	local   string // local part of the address
	domain  string // domain of the address; OrgDomain when empty
	display string // the From/To form given in GenerateOptions; name <address> when empty
}

// people returns n people: the sender first, then the recipients. They are
// picked from a fixed staff list, then replaced by GenerateOptions.Senders
// and Recipients when those are given (the random stream is used the same
// way either way).
func (g *gen) people(n int) []person {
	all := []person{
		{name: "Adele Vance", local: "AdeleV"}, {name: "Alex Wilber", local: "AlexW"}, {name: "Megan Bowen", local: "MeganB"},
		{name: "Lee Gu", local: "LeeG"}, {name: "Nestor Wilke", local: "NestorW"}, {name: "Isaiah Langer", local: "IsaiahL"},
		{name: "Diego Siciliani", local: "DiegoS"}, {name: "Grady Archie", local: "GradyA"}, {name: "Lynne Robbins", local: "LynneR"},
		{name: "Johanna Lorenz", local: "JohannaL"}, {name: "Pradeep Gupta", local: "PradeepG"}, {name: "Miriam Graham", local: "MiriamG"},
	}
	g.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return g.override(all[:n])
}

// override replaces ps[0] by the configured sender and ps[1:] by the
// configured recipients of this message, where configured. With fewer
// recipients configured than needed, they repeat; build drops the repeats.
func (g *gen) override(ps []person) []person {
	if s := g.plan.senders; len(s) > 0 && len(ps) > 0 {
		ps[0] = s[g.idx%len(s)]
	}
	if r := g.plan.rcpts; len(r) > 0 {
		for j := 1; j < len(ps); j++ {
			ps[j] = r[(g.idx+j-1)%len(r)]
		}
	}
	return ps
}

func (g *gen) addr(p person) string {
	if p.domain != "" {
		return p.local + "@" + p.domain
	}
	return p.local + "@" + g.plan.opts.OrgDomain
}

func (g *gen) nameAddr(p person) string {
	if p.display != "" {
		return p.display
	}
	return p.name + " <" + g.addr(p) + ">"
}

// subjectPool lists the subjects of ordinary messages; it is longer than
// the list of kinds, so that one Generate call with the default kinds never
// repeats a subject.
func subjectPool() []string {
	return []string{
		"Q3 planning review",
		"Updated travel policy",
		"Contract draft for Fabrikam",
		"Team offsite agenda",
		"Budget sign-off needed by Friday",
		"RE: Customer escalation - ticket 48213",
		"Quarterly numbers, the revised forecast and the open questions from Tuesday's steering committee meeting",
		"Onboarding checklist for new hires",
		"Minutes of the architecture board",
		"RE: Invoice 2025-0117 payment status",
		"Security awareness training reminder",
		"Draft press release for review",
		"Lab equipment order",
		"FW: Supplier audit findings",
		"Holiday schedule and on-call rota",
		"Migration cut-over plan",
	}
}

// subject returns the subject of this message: an entry of the pool that no
// other message of the call has, numbered once the pool is used up.
func (g *gen) subject() string {
	s := g.plan.subjects
	subj := s[g.idx%len(s)]
	if n := g.idx / len(s); n > 0 {
		subj += fmt.Sprintf(" (%d)", n+1)
	}
	return subj
}

// again numbers a fixed subject when the kind repeats within a call.
func (g *gen) again(subject string) string {
	if g.repeat > 0 {
		return fmt.Sprintf("%s (%d)", subject, g.repeat+1)
	}
	return subject
}

func (g *gen) paragraphs(n int) []string {
	pool := []string{
		"Please find the latest figures below; the forecast moved by two points after the regional review.",
		"Could you take a look before Thursday? I would like to send the final version to the steering committee.",
		"The vendor confirmed the delivery window, but the contract still needs legal's approval.",
		"As discussed in the meeting, we will keep the current process until the migration has finished.",
		"Let me know if anything is unclear. Happy to walk through it in a quick call.",
		"This line is intentionally long so that quoted-printable encoding has to insert soft line breaks somewhere in the middle of it, as Exchange does.",
		"Totals: 1+1=2, 50% done, a=b; nothing here should be mangled.",
	}
	out := make([]string, n)
	for i := range out {
		out[i] = pool[g.rng.IntN(len(pool))]
	}
	return out
}

// header assembles an Exchange Online header block.
type header struct {
	lines []string // raw fields, each ending in CRLF
}

func (h *header) add(name, value string) { h.lines = append(h.lines, name+": "+value+"\r\n") }

// addFolded adds a field folded at 78 columns, as Exchange folds long fields.
func (h *header) addFolded(name, value string) {
	h.lines = append(h.lines, string(refold([]byte(name+": "+value+"\r\n"), 78)))
}

func (h *header) raw(field string) { h.lines = append(h.lines, field) }

func (h *header) String() string { return strings.Join(h.lines, "") }

// msgSpec is what varies between kinds.
type msgSpec struct {
	kind        string
	from        person
	fromHeader  string // overrides the From field value
	envFrom     string // overrides the envelope sender
	to, cc      []string
	subject     string
	contentType string // full Content-Type field value(s), raw, ending in CRLF
	hasAttach   bool
	tnef        bool
	ttdSuffix   string   // x-ms-traffictypediagnostic ending, e.g. "EE_MessageRecallEmail"
	authSource  string   // CrossTenant-AuthSource override
	extra       []string // extra raw fields placed after the Exchange block
	lowerMS     bool     // Outlook/MAPI style lower-case x-ms-* block
	body        string
	utf8        bool
}

func (g *gen) build(s msgSpec) Message {
	var h header
	date := g.date.Format("Mon, 2 Jan 2006 15:04:05 -0700")
	h.addFolded("Received", fmt.Sprintf("from %s (%s) by %s (%s) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.%d.%03d; %s",
		g.mbxFQDN, g.ipv6(), g.trFQDN, g.ipv6(), 8000+g.rng.IntN(900), g.rng.IntN(40), date))
	if g.rng.IntN(2) == 0 {
		h.addFolded("DKIM-Signature", fmt.Sprintf("v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=selector%d; h=From:Date:Subject:Message-ID:Content-Type:MIME-Version:X-MS-Exchange-SenderADCheck; bh=%s; b=%s",
			g.plan.opts.OrgDomain, 1+g.rng.IntN(2), base64.StdEncoding.EncodeToString(g.bytes(32)), base64.StdEncoding.EncodeToString(g.bytes(128))))
	}
	h.addFolded("Received", fmt.Sprintf("from %s ([fe80::%s:%s:%s:%s]) by %s ([fe80::%s:%s:%s:%s%%%d]) with mapi id 15.20.%d.%03d; %s",
		g.mbxFQDN, g.hex(4, false), g.hex(4, false), g.hex(4, false), g.hex(3, false),
		g.mbxFQDN, g.hex(4, false), g.hex(4, false), g.hex(4, false), g.hex(3, false), 1+g.rng.IntN(6),
		8000+g.rng.IntN(900), g.rng.IntN(40), date))
	if s.fromHeader != "" {
		h.add("From", s.fromHeader)
	} else {
		h.add("From", g.nameAddr(s.from))
	}
	// Configured recipients may repeat (fewer than the kind has): each
	// address is written and sent to once.
	seen := make(map[string]bool)
	once := func(list []string) []string {
		var out []string
		for _, a := range list {
			if k := strings.ToLower(angleAddr(a)); !seen[k] {
				seen[k] = true
				out = append(out, a)
			}
		}
		return out
	}
	s.to, s.cc = once(s.to), once(s.cc)
	h.addFolded("To", strings.Join(s.to, ", "))
	if len(s.cc) > 0 {
		h.addFolded("CC", strings.Join(s.cc, ", "))
	}
	h.addFolded("Subject", s.subject)
	topic := s.subject
	for _, p := range []string{"RE: ", "FW: ", "Recall: "} {
		topic = strings.TrimPrefix(topic, p)
	}
	h.addFolded("Thread-Topic", topic)
	h.add("Thread-Index", g.threadIndex())
	h.add("Date", date)
	if g.rng.IntN(2) == 0 {
		h.raw("Message-ID:\r\n " + g.msgID + "\r\n")
	} else {
		h.add("Message-ID", g.msgID)
	}
	h.add("Accept-Language", "en-US")
	h.add("Content-Language", "en-US")
	if s.hasAttach {
		h.add("X-MS-Has-Attach", "yes")
	} else {
		h.raw("X-MS-Has-Attach:\r\n")
	}
	if s.tnef {
		h.raw("X-MS-TNEF-Correlator:\r\n " + g.msgID + "\r\n")
	} else {
		h.raw("X-MS-TNEF-Correlator:\r\n")
	}
	ms := func(name string) string {
		if s.lowerMS {
			return strings.ToLower(name)
		}
		return name
	}
	ttd := g.mailbox + ":EE_|" + g.transport + ":EE_"
	if s.ttdSuffix != "" {
		ttd = g.mailbox + ":" + s.ttdSuffix
	}
	h.add(ms("X-MS-PublicTrafficType"), "Email")
	h.add(ms("X-MS-TrafficTypeDiagnostic"), ttd)
	netID := guid(g.rng)
	h.add(ms("X-MS-Office365-Filtering-Correlation-Id"), netID)
	h.add(ms("X-MS-Exchange-SenderADCheck"), "1")
	h.add(ms("X-MS-Exchange-AntiSpam-Relay"), "0")
	h.add(ms("X-Microsoft-Antispam"), "BCL:0;ARA:13230040|366016|1800799024|376014|38070700018;")
	h.raw(ms("X-Microsoft-Antispam-Message-Info") + ":\r\n" + g.encodedWords(12+g.rng.IntN(10)))
	h.raw(ms("X-Forefront-Antispam-Report") + ":\r\n " + fmt.Sprintf("CIP:255.255.255.255;CTRY:;LANG:en;SCL:1;SRV:;IPV:NLI;SFV:NSPM;H:%s;PTR:;CAT:NONE;SFS:(13230040)(366016)(1800799024)(376014)(38070700018);DIR:OUT;SFP:1101;", g.mbxFQDN) + "\r\n")
	h.add(ms("X-MS-Exchange-AntiSpam-MessageData-ChunkCount"), "1")
	h.raw(ms("X-MS-Exchange-AntiSpam-MessageData-0") + ":\r\n" + g.encodedWords(20+g.rng.IntN(10)))
	h.raw(s.contentType)
	h.add("MIME-Version", "1.0")
	for _, f := range s.extra {
		h.raw(f)
	}
	if g.plan.opts.TestNames {
		h.add(TestNameHeader, g.name)
	}
	g.crossTenant(&h, netID, s.authSource)
	g.crossPremises(&h)

	env := s.envFrom
	if env == "" {
		env = g.addr(s.from)
	}
	rcpts := make([]string, 0, len(s.to)+len(s.cc))
	for _, a := range append(append([]string{}, s.to...), s.cc...) {
		rcpts = append(rcpts, angleAddr(a))
	}
	data := h.String() + "\r\n" + s.body
	if !strings.HasSuffix(data, "\r\n") {
		data += "\r\n"
	}
	utf8 := s.utf8 || !isASCII(env)
	for _, r := range rcpts {
		utf8 = utf8 || !isASCII(r)
	}
	return Message{Kind: s.kind, From: env, To: rcpts, UTF8: utf8, Data: []byte(data)}
}

// angleAddr extracts the address from "Name <addr>" or returns a bare address.
func angleAddr(a string) string {
	if i := strings.LastIndexByte(a, '<'); i >= 0 {
		if j := strings.IndexByte(a[i:], '>'); j > 0 {
			return a[i+1 : i+j]
		}
	}
	return strings.TrimSpace(a)
}

func (g *gen) ipv6() string {
	return fmt.Sprintf("2603:10b6:%s:%s::%s", g.hex(3, false), g.hex(3, false), g.hex(2, false))
}

// threadIndex returns a Thread-Index value: a version byte, a 5-byte
// FILETIME fragment and a 16-byte GUID, base64 encoded.
func (g *gen) threadIndex() string {
	b := append([]byte{0x01}, g.bytes(21)...)
	return base64.StdEncoding.EncodeToString(b)
}

// encodedWords returns the continuation lines of an Exchange antispam field:
// RFC 2047 encoded words of opaque data, one per line.
func (g *gen) encodedWords(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var b strings.Builder
	cs := g.pick("us-ascii", "iso-8859-1", "utf-8")
	for i := 0; i < n; i++ {
		word := make([]byte, 58)
		for j := range word {
			word[j] = alphabet[g.rng.IntN(len(alphabet))]
		}
		fmt.Fprintf(&b, " =?%s?Q?%s?=\r\n", cs, word)
	}
	return b.String()
}

// crossTenant adds the X-OriginatorOrg and X-MS-Exchange-CrossTenant-* block.
func (g *gen) crossTenant(h *header, netID, authSource string) {
	camel := g.rng.IntN(2) == 0
	name := func(camelName string) string {
		if camel {
			return "X-MS-Exchange-CrossTenant-" + camelName
		}
		return "X-MS-Exchange-CrossTenant-" + strings.ToLower(camelName)
	}
	if authSource == "" {
		authSource = g.mbxFQDN
	}
	h.add("X-OriginatorOrg", g.plan.opts.OrgDomain)
	h.add(name("AuthAs"), "Internal")
	h.add(name("AuthSource"), authSource)
	h.add("X-MS-Exchange-CrossTenant-Network-Message-Id", netID)
	h.raw(name("OriginalArrivalTime") + ": " + g.date.Format("02 Jan 2006 15:04:05.0000") + "\r\n (UTC)\r\n")
	h.add(name("FromEntityHeader"), "Hosted")
	h.add(name("Id"), g.plan.tenantID)
	h.add(name("MailboxType"), "HOSTED")
	h.add(name("UserPrincipalName"), base64.StdEncoding.EncodeToString(g.bytes(64)))
	h.add("X-MS-Exchange-Transport-CrossTenantHeadersStamped", g.transport)
}

// crossPremises adds the X-MS-Exchange-CrossPremises-* block and
// X-OrganizationHeadersPreserved, varying the set, the spelling and the
// folding the way real messages do.
func (g *gen) crossPremises(h *header) {
	style := g.rng.IntN(3)
	name := func(camel string) string {
		switch style {
		case 1: // mixed, as observed: the first few CamelCase, the rest lower case
			switch camel {
			case "AuthAs", "AuthMechanism", "AuthSource", "TransportTrafficType", "SCL":
				return "X-MS-Exchange-CrossPremises-" + camel
			}
			return "X-MS-Exchange-CrossPremises-" + strings.ToLower(camel)
		case 2:
			return strings.ToLower("X-MS-Exchange-CrossPremises-" + camel)
		}
		return "X-MS-Exchange-CrossPremises-" + camel
	}
	ip := fmt.Sprintf("10.%d.%d.%d", g.rng.IntN(256), g.rng.IntN(256), 1+g.rng.IntN(254))
	if g.rng.IntN(2) == 0 {
		ip = fmt.Sprintf("2a01:111:%s:%s::%s", g.hex(4, false), g.hex(3, false), g.hex(3, false))
	}
	h.add(name("AuthAs"), "Internal")
	h.add(name("AuthMechanism"), g.pick("04", "14", "03"))
	h.add(name("AuthSource"), g.mbxFQDN)
	h.add(name("TransportTrafficType"), "Email")
	if g.rng.IntN(3) == 0 {
		h.add(name("TransportTrafficSubType"), "")
	}
	h.add(name("SCL"), g.pick("1", "-1"))
	h.add(name("MessageSource"), "StoreDriver")
	if g.rng.IntN(2) == 0 {
		h.raw(name("BCC") + ": \r\n") // observed with a trailing blank
	} else {
		h.raw(name("BCC") + ":\r\n")
	}
	h.add(name("OriginalClientIPAddress"), ip)
	if g.rng.IntN(2) == 0 {
		h.raw(name("Antispam-ScanContext") + ":\r\n\tDIR:Originating;SFV:NSPM;SKIP:0;\r\n")
	} else {
		h.add(name("Antispam-ScanContext"), "DIR:Originating;SFV:NSPM;SKIP:0;")
	}
	if g.rng.IntN(2) == 0 {
		h.raw(name("Mapi-Admin-Submission") + ":\r\n")
	}
	if g.rng.IntN(2) == 0 {
		h.add(name("disclaimer-hash"), g.hex(64, false))
	}
	h.add(name("Processed-By-Journaling"), "Journal Agent")
	h.add("X-OrganizationHeadersPreserved", g.trFQDN)
}

// boundary returns an Exchange-style boundary.
func (g *gen) boundary(n int) string {
	local := strings.Trim(g.msgID, "<>")
	local = strings.NewReplacer("@", "", ".", "").Replace(local)
	if len(local) > 40 {
		local = local[:40]
	}
	return fmt.Sprintf("_%03d_%s_", n, local)
}

// qp encodes text (LF or CRLF lines) as quoted-printable with CRLF.
func qp(text string) string {
	b, err := encodeTransfer("quoted-printable", ToCRLF([]byte(text)), true)
	if err != nil {
		panic(err) // cannot happen: the standard writer does not fail on a buffer
	}
	return string(b)
}

func crlf(text string) string { return string(ToCRLF([]byte(text))) }

func (g *gen) plainText(p person, paras []string) string {
	return "Hi,\n\n" + strings.Join(paras, "\n\n") + "\n.\n..a line starting with dots\n\nThanks,\n" + p.name + "\n"
}

func (g *gen) htmlDoc(p person, paras []string, extra string) string {
	var b strings.Builder
	b.WriteString(`<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" xmlns:w="urn:schemas-microsoft-com:office:word" xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" xmlns="http://www.w3.org/TR/REC-html40">` + "\n")
	b.WriteString(`<head>` + "\n" + `<meta http-equiv="Content-Type" content="text/html; charset=us-ascii">` + "\n")
	b.WriteString(`<meta name="Generator" content="Microsoft Word 15 (filtered medium)">` + "\n")
	b.WriteString("<style><!--\n/* Font Definitions */\n@font-face\n\t{font-family:Aptos;}\np.MsoNormal, li.MsoNormal, div.MsoNormal\n\t{margin:0cm;\n\tfont-size:12.0pt;\n\tfont-family:\"Aptos\",sans-serif;}\n--></style>\n</head>\n")
	b.WriteString(`<body lang="EN-US" link="#467886" vlink="#96607D" style="word-wrap:break-word">` + "\n<div class=\"WordSection1\">\n")
	b.WriteString("<p class=\"MsoNormal\">Hi,<o:p></o:p></p>\n")
	for _, para := range paras {
		b.WriteString("<p class=\"MsoNormal\">" + htmlEscape(para) + "<o:p></o:p></p>\n")
	}
	b.WriteString(extra)
	b.WriteString("<p class=\"MsoNormal\">Thanks,<br>\n" + p.name + "<o:p></o:p></p>\n</div>\n</body>\n</html>\n")
	return b.String()
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// alternative returns a multipart/alternative body (without header) with a
// plain and an HTML part, both quoted-printable.
func (g *gen) alternative(boundary string, p person, paras []string, htmlExtra string) string {
	return "--" + boundary + "\r\n" +
		"Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		qp(g.plainText(p, paras)) + "\r\n" +
		"--" + boundary + "\r\n" +
		"Content-Type: text/html; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		qp(g.htmlDoc(p, paras, htmlExtra)) + "\r\n" +
		"--" + boundary + "--\r\n"
}

func (g *gen) plain() Message {
	ps := g.people(2)
	return g.build(msgSpec{
		kind: KindPlain, from: ps[0], to: []string{g.nameAddr(ps[1])}, subject: g.subject(),
		contentType: "Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n",
		body:        qp(g.plainText(ps[0], g.paragraphs(4))),
	})
}

func (g *gen) html() Message {
	ps := g.people(2)
	b := g.boundary(0)
	return g.build(msgSpec{
		kind: KindHTML, from: ps[0], to: []string{g.nameAddr(ps[1])}, subject: g.subject(),
		contentType: "Content-Type: multipart/alternative;\r\n\tboundary=\"" + b + "\"\r\n",
		body:        "\r\n" + g.alternative(b, ps[0], g.paragraphs(3), ""),
	})
}

// smallPNG returns a tiny PNG image.
func (g *gen) smallPNG() []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 16, 16))
	base := color.NRGBA{R: uint8(g.rng.IntN(256)), G: uint8(g.rng.IntN(256)), B: uint8(g.rng.IntN(256)), A: 255}
	for y := 0; y < 16; y++ {
		for x := 0; x < 16; x++ {
			img.Set(x, y, color.NRGBA{R: base.R ^ uint8(x*16), G: base.G ^ uint8(y*16), B: base.B, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding an in-memory image into a buffer does not fail
	}
	return buf.Bytes()
}

func (g *gen) related() Message {
	ps := g.people(2)
	outer, inner := g.boundary(4), g.boundary(0)
	cid := fmt.Sprintf("image001.png@01DB%s.%s", g.hex(4, true), g.hex(8, true))
	img := g.smallPNG()
	date := g.date.Format("Mon, 02 Jan 2006 15:04:05 GMT")
	body := "--" + outer + "\r\n" +
		"Content-Type: multipart/alternative;\r\n\tboundary=\"" + inner + "\"\r\n\r\n" +
		g.alternative(inner, ps[0], g.paragraphs(2), "<p class=\"MsoNormal\"><img width=\"16\" height=\"16\" style=\"width:.1666in;height:.1666in\" id=\"Picture_x0020_1\" src=\"cid:"+cid+"\" alt=\"logo\"><o:p></o:p></p>\n") +
		"\r\n--" + outer + "\r\n" +
		"Content-Type: image/png; name=\"image001.png\"\r\n" +
		"Content-Description: image001.png\r\n" +
		fmt.Sprintf("Content-Disposition: inline; filename=\"image001.png\"; size=%d;\r\n\tcreation-date=\"%s\";\r\n\tmodification-date=\"%s\"\r\n", len(img), date, date) +
		"Content-ID: <" + cid + ">\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" +
		string(base64Lines(img)) + "\r\n" +
		"--" + outer + "--\r\n"
	return g.build(msgSpec{
		kind: KindRelated, from: ps[0], to: []string{g.nameAddr(ps[1])}, subject: g.subject(),
		contentType: "Content-Type: multipart/related;\r\n\tboundary=\"" + outer + "\";\r\n\ttype=\"multipart/alternative\"\r\n",
		body:        "\r\n" + body,
	})
}

// mixed returns a multipart/mixed body with a first part and an attachment.
func (g *gen) mixed(boundary, first, attachHeader string, attach []byte) string {
	return "--" + boundary + "\r\n" + first + "\r\n" +
		"--" + boundary + "\r\n" + attachHeader + "Content-Transfer-Encoding: base64\r\n\r\n" +
		string(base64Lines(attach)) + "\r\n" +
		"--" + boundary + "--\r\n"
}

func (g *gen) attachment() Message {
	ps := g.people(2)
	outer, inner := g.boundary(4), g.boundary(0)
	pdf := []byte("%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
	pdf = append(pdf, g.bytes(2048)...)
	first := "Content-Type: multipart/alternative;\r\n\tboundary=\"" + inner + "\"\r\n\r\n" + g.alternative(inner, ps[0], g.paragraphs(2), "")
	date := g.date.Format("Mon, 02 Jan 2006 15:04:05 GMT")
	attachHeader := "Content-Type: application/pdf; name=\"Q3-report.pdf\"\r\n" +
		"Content-Description: Q3-report.pdf\r\n" +
		fmt.Sprintf("Content-Disposition: attachment; filename=\"Q3-report.pdf\"; size=%d;\r\n\tcreation-date=\"%s\";\r\n\tmodification-date=\"%s\"\r\n", len(pdf), date, date)
	return g.build(msgSpec{
		kind: KindAttachment, from: ps[0], to: []string{g.nameAddr(ps[1])}, subject: g.subject(), hasAttach: true,
		contentType: "Content-Type: multipart/mixed;\r\n\tboundary=\"" + outer + "\"\r\n",
		body:        "\r\n" + g.mixed(outer, first, attachHeader, pdf),
	})
}

// tnefMessage builds a TNEF body message (text part + winmail.dat).
func (g *gen) tnefMessage(kind, class string, from person, to []string, subject, text string, extra []string, ttd string) Message {
	b := g.boundary(0)
	stream := tnefMessage{
		Key: uint16(1 + g.rng.IntN(0xFFFE)), MessageClass: class, Subject: subject, Body: text,
		Correlator: g.msgID, Sent: g.date,
	}.bytes()
	first := "Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp(text)
	// Field order as Exchange writes it: disposition, encoding, type.
	body := "--" + b + "\r\n" + first + "\r\n" +
		"--" + b + "\r\n" +
		"Content-Disposition: attachment; filename=\"winmail.dat\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\n\r\n" +
		string(base64Lines(stream)) + "\r\n" +
		"--" + b + "--\r\n"
	return g.build(msgSpec{
		kind: kind, from: from, to: to, subject: subject, tnef: true, lowerMS: true, extra: extra, ttdSuffix: ttd,
		contentType: "Content-Type: multipart/mixed;\r\n\tboundary=\"" + b + "\"\r\n",
		body:        "\r\n" + body,
	})
}

func (g *gen) tnef() Message {
	ps := g.people(2)
	return g.tnefMessage(KindTNEF, "IPM.Note", ps[0], []string{g.nameAddr(ps[1])}, g.subject(),
		g.plainText(ps[0], g.paragraphs(2)), nil, "")
}

func (g *gen) eightBit() Message {
	ps := g.people(2)
	text := "Hallo " + ps[1].name + ",\n\nGrüße aus München! Die Rechnung über 1.250 € ist bezahlt.\n" +
		"Café, naïve, déjà vu; 日本語のテキスト; Ελληνικά; русский текст.\n" +
		strings.Join(g.paragraphs(2), "\n\n") + "\n\nViele Grüße,\n" + ps[0].name + "\n"
	return g.build(msgSpec{
		kind: KindEightBit, from: ps[0], to: []string{g.nameAddr(ps[1])}, subject: g.again("Grüße aus München"),
		contentType: "Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n",
		body:        crlf(text),
	})
}

func (g *gen) smtpUTF8() Message {
	ps := g.override([]person{{name: "José Muñoz", local: "josé.muñoz"}, {name: "Zoë Ångström", local: "zoë.ångström"}})
	from, to := ps[0], ps[1]
	text := "Hola Zoë,\n\nla dirección de correo también es UTF-8 (RFC 6531).\n" + strings.Join(g.paragraphs(2), "\n\n") + "\n\nSaludos,\nJosé\n"
	return g.build(msgSpec{
		kind: KindSMTPUTF8, from: from, to: []string{g.nameAddr(to)}, subject: g.again("Reunión del jueves – agenda"),
		contentType: "Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n",
		body:        crlf(text), utf8: true,
	})
}

func (g *gen) multiRcpt() Message {
	ps := g.people(4)
	// One recipient is outside the organization, unless the recipients are
	// configured.
	to, cc := []string{g.nameAddr(ps[1]), "Kari Hensien <kari.hensien@fabrikam.com>"}, []string{g.nameAddr(ps[2])}
	if len(g.plan.rcpts) > 0 {
		to, cc = []string{g.nameAddr(ps[1]), g.nameAddr(ps[2])}, []string{g.nameAddr(ps[3])}
	}
	return g.build(msgSpec{
		kind: KindMultiRcpt, from: ps[0], to: to, cc: cc,
		subject:     g.subject(),
		contentType: "Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n",
		body:        qp(g.plainText(ps[0], g.paragraphs(3))),
	})
}

// recallText is the body Exchange writes into a recall request.
func recallText(sender, subject string) string {
	return sender + " would like to recall the message, \"" + subject + "\"."
}

func (g *gen) recallRequest() Message {
	ps := g.people(2)
	orig := g.subject()
	return g.build(msgSpec{
		kind: KindRecallRequest, from: ps[0], to: []string{g.addr(ps[1])}, subject: "Recall: " + orig,
		contentType: "Content-Type: text/plain; charset=utf-8\r\n",
		ttdSuffix:   "EE_MessageRecallEmail",
		authSource:  "HttpSubmission-" + g.mailbox,
		extra: []string{
			"X-MS-Exchange-RecallReportGenerated: true\r\n",
			"X-MS-Exchange-RecallReportCfmGenerated: true\r\n",
		},
		body: crlf(recallText(g.addr(ps[0]), orig) + "\n"),
	})
}

func (g *gen) tnefRecall() Message {
	ps := g.people(2)
	orig := g.subject()
	return g.tnefMessage(KindTNEFRecall, "IPM.Outlook.Recall", ps[0], []string{g.nameAddr(ps[1])}, "Recall: "+orig,
		recallText(ps[0].name, orig)+"\n",
		[]string{
			"x-ms-exchange-recallreportgenerated: true\r\n",
			"x-ms-exchange-recallreportcfmgenerated: true\r\n",
		}, "EE_LegacyOutlookRecall")
}

func (g *gen) recallReport() Message {
	ps := g.people(2)
	orig := g.subject()
	b := g.boundary(0)
	from := "Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@" + g.plan.opts.OrgDomain + ">"
	text := "Your message\n\n To: " + ps[1].name + "\n Subject: " + orig + "\n Sent: " + g.date.Format("Monday, January 2, 2006 3:04:05 PM (UTC)") +
		"\n\nwas recalled successfully from the mailbox of " + ps[1].name + ".\n"
	doc := "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=us-ascii\">\n</head>\n<body>\n" +
		"<p>Your message</p>\n<table><tr><td>To:</td><td>" + htmlEscape(ps[1].name) + "</td></tr>\n<tr><td>Subject:</td><td>" + htmlEscape(orig) +
		"</td></tr></table>\n<p>was recalled successfully from the mailbox of " + htmlEscape(ps[1].name) + ".</p>\n</body>\n</html>\n"
	body := "--" + b + "\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp(text) +
		"\r\n--" + b + "\r\nContent-Type: text/html; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp(doc) +
		"\r\n--" + b + "--\r\n"
	return g.build(msgSpec{
		kind: KindRecallReport, from: ps[0], fromHeader: from,
		envFrom: "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@" + g.plan.opts.OrgDomain,
		to:      []string{g.nameAddr(ps[0])}, subject: "Message Recall Report for message: " + orig,
		contentType: "Content-Type: multipart/alternative;\r\n\tboundary=\"" + b + "\"\r\n",
		extra: []string{
			"Auto-Submitted: auto-generated\r\n",
			"X-MS-Exchange-Generated-Message-Source: Transport Message Recall Routing Agent\r\n",
		},
		body: "\r\n" + body,
	})
}

// icsFold folds an iCalendar content line at 75 octets (RFC 5545 3.1).
func icsFold(line string) string {
	var b strings.Builder
	for len(line) > 75 {
		cut := 75
		for cut > 0 && line[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		b.WriteString(line[:cut] + "\r\n ")
		line = line[cut:]
	}
	b.WriteString(line + "\r\n")
	return b.String()
}

func (g *gen) calendar() Message {
	ps := g.people(3)
	b := g.boundary(0)
	start := g.date.Add(72 * time.Hour).Truncate(time.Hour)
	uid := "040000008200E00074C5B7101A82E00800000000" + g.hex(16, true) + "010000000000000010000000" + g.hex(32, true)
	summary := "Project sync - " + g.subject()
	optional := "ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=" + ps[2].name + ":mailto:" + g.addr(ps[2])
	var ics strings.Builder
	for _, l := range []string{
		"BEGIN:VCALENDAR", "METHOD:REQUEST", "PRODID:Microsoft Exchange Server 2010", "VERSION:2.0",
		"BEGIN:VEVENT",
		"ORGANIZER;CN=" + ps[0].name + ":mailto:" + g.addr(ps[0]),
		"ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=" + ps[1].name + ":mailto:" + g.addr(ps[1]),
		optional,
		"DESCRIPTION;LANGUAGE=en-US:Agenda: status\\, risks and next steps. Join from the meeting room or online.\\n",
		"UID:" + uid,
		"SUMMARY;LANGUAGE=en-US:" + summary,
		"DTSTART:" + start.Format("20060102T150405Z"),
		"DTEND:" + start.Add(30*time.Minute).Format("20060102T150405Z"),
		"CLASS:PUBLIC", "PRIORITY:5",
		"DTSTAMP:" + g.date.Format("20060102T150405Z"),
		"TRANSP:OPAQUE", "STATUS:CONFIRMED", "SEQUENCE:0",
		"LOCATION;LANGUAGE=en-US:Building 4 / Room 1201",
		"X-MICROSOFT-CDO-APPT-SEQUENCE:0", "X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE", "X-MICROSOFT-CDO-INTENDEDSTATUS:BUSY",
		"BEGIN:VALARM", "DESCRIPTION:REMINDER", "TRIGGER;RELATED=START:-PT15M", "ACTION:DISPLAY", "END:VALARM",
		"END:VEVENT", "END:VCALENDAR",
	} {
		if l == optional && strings.EqualFold(g.addr(ps[1]), g.addr(ps[2])) {
			continue // configured recipients repeat: one attendee only
		}
		ics.WriteString(icsFold(l))
	}
	text := "Agenda: status, risks and next steps.\n\nJoin from the meeting room or online.\n"
	body := "--" + b + "\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp(text) +
		"\r\n--" + b + "\r\nContent-Type: text/calendar; charset=\"utf-8\"; method=REQUEST\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		string(base64Lines([]byte(ics.String()))) +
		"\r\n--" + b + "--\r\n"
	return g.build(msgSpec{
		kind: KindCalendar, from: ps[0], to: []string{g.nameAddr(ps[1])}, cc: []string{g.nameAddr(ps[2])},
		subject:     summary,
		contentType: "Content-Type: multipart/alternative;\r\n\tboundary=\"" + b + "\"\r\n",
		extra: []string{
			"X-MS-Exchange-Calendar-Series-Instance-Id: BAAAAIIA4AB0xbcQGoLgCAAAAAA" + g.hex(16, true) + "AAAAAAAAAAAQAAAA\r\n",
		},
		body: "\r\n" + body,
	})
}

func (g *gen) bigAttachment() Message {
	ps := g.people(2)
	b := g.boundary(4)
	// A ChaCha8 stream is far faster than the PCG generator for megabytes.
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], g.rng.Uint64())
	payload := make([]byte, g.plan.opts.BigAttachmentBytes)
	_, _ = rand.NewChaCha8(seed).Read(payload)
	first := "Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		qp(g.plainText(ps[0], g.paragraphs(1)))
	attachHeader := "Content-Type: application/octet-stream; name=\"dataset.bin\"\r\n" +
		"Content-Description: dataset.bin\r\n" +
		fmt.Sprintf("Content-Disposition: attachment; filename=\"dataset.bin\"; size=%d\r\n", len(payload))
	return g.build(msgSpec{
		kind: KindBigAttachment, from: ps[0], to: []string{g.nameAddr(ps[1])}, subject: g.again("Full data set (" + fmt.Sprint(len(payload)) + " bytes)"),
		hasAttach:   true,
		contentType: "Content-Type: multipart/mixed;\r\n\tboundary=\"" + b + "\"\r\n",
		body:        "\r\n" + g.mixed(b, first, attachHeader, payload),
	})
}
