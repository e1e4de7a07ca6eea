package relaytest

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	a := Generate(GenerateOptions{Seed: 42, BigAttachmentBytes: 4096})
	b := Generate(GenerateOptions{Seed: 42, BigAttachmentBytes: 4096})
	c := Generate(GenerateOptions{Seed: 43, BigAttachmentBytes: 4096})
	if len(a) != len(b) || len(a) != len(c) {
		t.Fatalf("lengths %d %d %d", len(a), len(b), len(c))
	}
	for i := range a {
		if !bytes.Equal(a[i].Data, b[i].Data) || a[i].From != b[i].From || fmt.Sprint(a[i].To) != fmt.Sprint(b[i].To) {
			t.Errorf("%s differs between two runs with the same seed", a[i].Name)
		}
		if bytes.Equal(a[i].Data, c[i].Data) {
			t.Errorf("%s is the same for seeds 42 and 43", a[i].Name)
		}
	}
	// The big attachment does not shift the other messages.
	d := Generate(GenerateOptions{Seed: 42})
	if len(d) != len(a)-1 {
		t.Fatalf("without the big attachment: %d messages, want %d", len(d), len(a)-1)
	}
	for i := range d {
		if !bytes.Equal(d[i].Data, a[i].Data) {
			t.Errorf("%s changed when the big attachment was added", d[i].Name)
		}
	}
}

func TestGenerateKinds(t *testing.T) {
	t.Parallel()
	const big = 300 << 10
	msgs := Generate(GenerateOptions{Seed: 9, OrgDomain: "fabrikam.example", BigAttachmentBytes: big})
	kinds := []string{KindPlain, KindHTML, KindRelated, KindAttachment, KindTNEF, KindEightBit, KindSMTPUTF8,
		KindMultiRcpt, KindRecallRequest, KindTNEFRecall, KindRecallReport, KindCalendar, KindBigAttachment}
	if len(msgs) != len(kinds) {
		t.Fatalf("%d messages, want %d", len(msgs), len(kinds))
	}
	for i, m := range msgs {
		if m.Kind != kinds[i] || m.Name != fmt.Sprintf("gen-%02d-%s", i+1, kinds[i]) {
			t.Errorf("message %d: name %q kind %q", i, m.Name, m.Kind)
		}
	}
	byKind := map[string]Message{}
	for _, m := range msgs {
		byKind[m.Kind] = m
	}
	part := func(m Message, mediaType string) leaf {
		t.Helper()
		for _, l := range leaves(t, m.Data) {
			if l.mediaType == mediaType {
				return l
			}
		}
		t.Fatalf("%s: no %s part", m.Name, mediaType)
		return leaf{}
	}
	field := func(m Message, name string) string {
		t.Helper()
		for _, f := range exactFields(m.Data) {
			if strings.EqualFold(f.Name, name) {
				_, v, _ := strings.Cut(string(unfold(f.Raw)), ":")
				return strings.TrimSpace(v)
			}
		}
		return ""
	}

	if l := part(byKind[KindRelated], "image/png"); !bytes.HasPrefix(l.content, []byte("\x89PNG")) {
		t.Error("related: inline image is not a PNG")
	}
	if !strings.Contains(string(part(byKind[KindRelated], "text/html").content), "cid:image001.png@") {
		t.Error("related: HTML does not reference the image")
	}
	if l := part(byKind[KindAttachment], "application/pdf"); !l.attachment || field(byKind[KindAttachment], "X-MS-Has-Attach") != "yes" {
		t.Error("attachment: no PDF attachment or X-MS-Has-Attach")
	}
	if l := part(byKind[KindEightBit], "text/plain"); l.encoding != "8bit" || !bytes.Contains(l.content, []byte("Grüße")) {
		t.Errorf("8bit: encoding %q", l.encoding)
	}
	for _, m := range msgs {
		if m.UTF8 != (m.Kind == KindSMTPUTF8) {
			t.Errorf("%s: UTF8 = %v", m.Name, m.UTF8)
		}
	}
	if u := byKind[KindSMTPUTF8]; isASCII(u.From) || isASCII(u.To[0]) || !strings.Contains(field(u, "From"), u.From) {
		t.Errorf("smtputf8: envelope %q %q", u.From, u.To)
	}
	if mr := byKind[KindMultiRcpt]; len(mr.To) != 3 || field(mr, "CC") == "" {
		t.Errorf("multi-rcpt: recipients %q", mr.To)
	}

	rr := byKind[KindRecallRequest]
	subj := field(rr, "Subject")
	orig, ok := strings.CutPrefix(subj, "Recall: ")
	if !ok || field(rr, "X-MS-Exchange-RecallReportGenerated") != "true" || field(rr, "X-MS-Exchange-RecallReportCfmGenerated") != "true" ||
		!strings.HasSuffix(field(rr, "X-MS-TrafficTypeDiagnostic"), "EE_MessageRecallEmail") {
		t.Errorf("recall request header: subject %q", subj)
	}
	if got, want := string(bytes.TrimSpace(bodyOf(rr.Data))), fmt.Sprintf("%s would like to recall the message, %q.", rr.From, orig); got != want {
		t.Errorf("recall request body %q, want %q", got, want)
	}
	if !strings.HasSuffix(field(byKind[KindTNEFRecall], "x-ms-traffictypediagnostic"), "EE_LegacyOutlookRecall") {
		t.Error("legacy recall: traffic type diagnostic")
	}
	if got := field(byKind[KindRecallReport], "X-MS-Exchange-Generated-Message-Source"); got != "Transport Message Recall Routing Agent" {
		t.Errorf("recall report source %q", got)
	}
	if l := part(byKind[KindCalendar], "text/calendar"); l.params["method"] != "REQUEST" || !bytes.Contains(l.content, []byte("\r\nMETHOD:REQUEST\r\n")) || !bytes.Contains(l.content, []byte("BEGIN:VEVENT")) {
		t.Errorf("calendar: %v", l.params)
	}
	if l := part(byKind[KindBigAttachment], "application/octet-stream"); len(l.content) != big || l.encoding != "base64" {
		t.Errorf("big attachment: %d bytes, %s", len(l.content), l.encoding)
	}

	for kind, class := range map[string]string{KindTNEF: "IPM.Note", KindTNEFRecall: "IPM.Outlook.Recall"} {
		m := byKind[kind]
		tn := readTNEF(t, part(m, "application/ms-tnef").content)
		if tn.class != class {
			t.Errorf("%s: attMessageClass %q, want %q", kind, tn.class, class)
		}
		if corr := field(m, "X-MS-TNEF-Correlator"); corr == "" || tn.correlation != corr+"\x00" {
			t.Errorf("%s: correlation key %q, X-MS-TNEF-Correlator %q", kind, tn.correlation, corr)
		}
		if tn.mapiClass != class {
			t.Errorf("%s: PR_MESSAGE_CLASS %q", kind, tn.mapiClass)
		}
	}
}

var prodOutlookID = regexp.MustCompile(`^<[A-Z0-9]+@[A-Z0-9]+\.[a-z]+prd[0-9]+\.prod\.outlook\.com>$`)

func TestGeneratedMessagesLookLikeExchange(t *testing.T) {
	t.Parallel()
	spellings := map[string]bool{}
	for _, seed := range []int64{1, 2, 3} {
		for _, m := range Generate(GenerateOptions{Seed: seed, BigAttachmentBytes: 1000}) {
			t.Run(fmt.Sprintf("%d/%s", seed, m.Name), func(t *testing.T) {
				assertParses(t, m.Data)
				if i := bytes.IndexAny(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), "\r\n"); i >= 0 {
					t.Errorf("bare CR or LF at %d", i)
				}
				if !bytes.HasSuffix(m.Data, []byte("\r\n")) {
					t.Error("does not end with CRLF")
				}
				for _, line := range bytes.Split(m.Data, []byte("\r\n")) {
					if len(line) > 998 {
						t.Errorf("line of %d bytes", len(line))
					}
				}
				count := map[string]int{}
				folded := 0
				for _, f := range exactFields(m.Data) {
					name := strings.ToLower(f.Name)
					count[name]++
					if bytes.Count(f.Raw, []byte("\r\n")) > 1 {
						folded++
					}
					if strings.HasPrefix(name, "x-ms-exchange-crosspremises-") {
						count["crosspremises"]++
						if name == "x-ms-exchange-crosspremises-authas" {
							spellings[f.Name] = true
							if !bytes.HasSuffix(f.Raw, []byte(": Internal\r\n")) {
								t.Errorf("%q", f.Raw)
							}
						}
					}
					if strings.HasPrefix(name, "x-ms-exchange-crosstenant-") {
						count["crosstenant"]++
					}
					if strings.HasPrefix(name, "x-ms-exchange-organization-") {
						t.Errorf("outgoing message carries %s", f.Name)
					}
				}
				for _, name := range []string{"message-id", "x-organizationheaderspreserved", "x-originatororg", "thread-index",
					"thread-topic", "x-ms-has-attach", "x-ms-tnef-correlator", "x-ms-exchange-crosspremises-authas", "date", "from", "to"} {
					if count[name] != 1 {
						t.Errorf("%d %s fields", count[name], name)
					}
				}
				if count["crosspremises"] < 8 || count["crosstenant"] < 6 || folded < 3 {
					t.Errorf("%d CrossPremises, %d CrossTenant, %d folded fields", count["crosspremises"], count["crosstenant"], folded)
				}
				var id, ti string
				for _, f := range exactFields(m.Data) {
					_, v, _ := strings.Cut(string(unfold(f.Raw)), ":")
					switch strings.ToLower(f.Name) {
					case "message-id":
						id = strings.TrimSpace(v)
					case "thread-index":
						ti = strings.TrimSpace(v)
					}
				}
				if !prodOutlookID.MatchString(id) {
					t.Errorf("Message-ID %q", id)
				}
				if b, err := base64.StdEncoding.DecodeString(ti); err != nil || len(b) != 22 || b[0] != 1 {
					t.Errorf("Thread-Index %q", ti)
				}
			})
		}
	}
	if len(spellings) < 2 {
		t.Errorf("CrossPremises-AuthAs always spelt the same: %v", spellings)
	}
}

// parsedTNEF is what readTNEF extracts.
type parsedTNEF struct {
	class       string // attMessageClass without NUL
	mapiClass   string // PR_MESSAGE_CLASS_W
	correlation string // PR_TNEF_CORRELATION_KEY, NUL included
}

// readTNEF parses a TNEF stream strictly: signature, attribute checksums,
// and the MAPI properties the writer puts into attMsgProps.
func readTNEF(t *testing.T, b []byte) parsedTNEF {
	t.Helper()
	out, err := parseTNEF(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func parseTNEF(b []byte) (parsedTNEF, error) {
	var out parsedTNEF
	le := binary.LittleEndian
	if len(b) < 6 || le.Uint32(b) != tnefSignature || le.Uint16(b[4:]) == 0 {
		return out, errors.New("bad signature or key")
	}
	for off := 6; off < len(b); {
		if off+9 > len(b) {
			return out, errors.New("truncated attribute header")
		}
		level, id, n := b[off], le.Uint32(b[off+1:]), int(le.Uint32(b[off+5:]))
		if level != tnefLevelMessage || off+9+n+2 > len(b) {
			return out, fmt.Errorf("bad attribute at %d", off)
		}
		data := b[off+9 : off+9+n]
		if le.Uint16(b[off+9+n:]) != tnefChecksum(data) {
			return out, fmt.Errorf("attribute %#x: bad checksum", id)
		}
		switch id {
		case attMessageClass:
			out.class = strings.TrimSuffix(string(data), "\x00")
		case attMsgProps:
			if err := parseProps(data, &out); err != nil {
				return out, err
			}
		}
		off += 9 + n + 2
	}
	return out, nil
}

func parseProps(b []byte, out *parsedTNEF) error {
	le := binary.LittleEndian
	short := errors.New("truncated property list")
	if len(b) < 4 {
		return short
	}
	count := int(le.Uint32(b))
	off := 4
	for i := 0; i < count; i++ {
		if off+8 > len(b) {
			return short
		}
		tag := le.Uint32(b[off:])
		off += 4
		switch tag & 0xFFFF {
		case ptLong, ptBoolean:
			off += 4
		case ptBinary, ptUnicode:
			n := int(le.Uint32(b[off+4:]))
			if off+8+(n+3)/4*4 > len(b) || n < 0 {
				return short
			}
			v := b[off+8 : off+8+n]
			off += 8 + (n+3)/4*4
			switch tag {
			case prTNEFCorrelationKey:
				out.correlation = string(v)
			case prMessageClassW:
				u := make([]uint16, 0, len(v)/2)
				for j := 0; j+1 < len(v); j += 2 {
					u = append(u, le.Uint16(v[j:]))
				}
				out.mapiClass = strings.TrimSuffix(string(utf16.Decode(u)), "\x00")
			}
		default:
			return fmt.Errorf("unexpected property type %#x", tag&0xFFFF)
		}
	}
	if off != len(b) {
		return fmt.Errorf("%d bytes after the properties", len(b)-off)
	}
	return nil
}

func TestTNEFWriterChecksums(t *testing.T) {
	t.Parallel()
	b := tnefMessage{Key: 0x1234, MessageClass: "IPM.Note", Subject: "s", Body: "b", Correlator: "<x@y>"}.bytes()
	if _, err := parseTNEF(b); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("IPM.Note"))
	b[i+4] ^= 0x20 // "IPM.note"
	if _, err := parseTNEF(b); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("a corrupted stream parses: %v", err)
	}
}

// subjectOf returns the decoded Subject of a message.
func subjectOf(t *testing.T, data []byte) string {
	t.Helper()
	h, err := ParseHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	s, err := h.Subject()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGenerateNamesSubjectsAndIDsAreUnique(t *testing.T) {
	t.Parallel()
	type call struct {
		name string
		opts GenerateOptions
	}
	var calls []call
	for seed := int64(1); seed <= 8; seed++ {
		calls = append(calls, call{fmt.Sprintf("seed %d", seed), GenerateOptions{Seed: seed, BigAttachmentBytes: 100, TestNames: true}})
	}
	calls = append(calls,
		call{"count 45", GenerateOptions{Seed: 3, Count: 45, BigAttachmentBytes: 100, TestNames: true}},
		call{"one kind 20 times", GenerateOptions{Seed: 4, Kinds: []string{KindEightBit}, Count: 20, TestNames: true}},
		call{"plain and attachment", GenerateOptions{Seed: 3, Kinds: []string{KindPlain, KindAttachment}, Count: 40, TestNames: true}})
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			msgs, err := GenerateMessages(c.opts)
			if err != nil {
				t.Fatal(err)
			}
			names, subjects, ids := map[string]string{}, map[string]string{}, map[string]string{}
			for _, m := range msgs {
				if prev, dup := names[m.Name]; dup {
					t.Errorf("name %q twice (%s)", m.Name, prev)
				}
				names[m.Name] = m.Name
				tn := HeaderValues(m.Data, TestNameHeader)
				if len(tn) != 1 || tn[0] != m.Name {
					t.Errorf("%s: %s fields %q", m.Name, TestNameHeader, tn)
				}
				s := subjectOf(t, m.Data)
				if prev, dup := subjects[s]; dup {
					t.Errorf("%s and %s share the subject %q", prev, m.Name, s)
				}
				subjects[s] = m.Name
				id := HeaderValues(m.Data, "Message-ID")[0]
				if prev, dup := ids[id]; dup {
					t.Errorf("%s and %s share the Message-ID %s", prev, m.Name, id)
				}
				ids[id] = m.Name
			}
		})
	}
}

func TestGenerateTestNamesOnlyAddTheField(t *testing.T) {
	t.Parallel()
	plain := Generate(GenerateOptions{Seed: 12, BigAttachmentBytes: 2000})
	named := Generate(GenerateOptions{Seed: 12, BigAttachmentBytes: 2000, TestNames: true})
	if len(plain) != len(named) {
		t.Fatalf("%d and %d messages", len(plain), len(named))
	}
	for i, m := range named {
		if got := RawFields(plain[i].Data, TestNameHeader); got != nil {
			t.Errorf("%s: %s without TestNames: %q", plain[i].Name, TestNameHeader, got)
		}
		raw := RawFields(m.Data, TestNameHeader)
		if len(raw) != 1 || raw[0] != TestNameHeader+": "+m.Name+"\r\n" {
			t.Fatalf("%s: %q", m.Name, raw)
		}
		// The field is the only difference, so the test name cannot change
		// what the message is.
		if without := bytes.Replace(m.Data, []byte(raw[0]), nil, 1); !bytes.Equal(without, plain[i].Data) {
			t.Errorf("%s: TestNames changed more than the %s field", m.Name, TestNameHeader)
		}
		if m.Name != plain[i].Name || m.From != plain[i].From || fmt.Sprint(m.To) != fmt.Sprint(plain[i].To) {
			t.Errorf("%s: envelope or name changed", m.Name)
		}
		// It is not an identity field: a service may drop it or rewrite it.
		if r := CompareIdentity(m.Data, plain[i].Data); !r.Intact || r.NoIdentity {
			t.Errorf("%s: dropping the test name: %v", m.Name, r)
		}
		rewritten := bytes.Replace(m.Data, []byte(raw[0]), []byte(TestNameHeader+": other\r\n"), 1)
		if r := CompareIdentity(m.Data, rewritten); !r.Intact {
			t.Errorf("%s: rewriting the test name: %v", m.Name, r)
		}
	}
}

func TestGenerateKindsCountAndNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opts  GenerateOptions
		names []string
	}{
		{GenerateOptions{Kinds: []string{KindTNEF, KindPlain}, Count: 5},
			[]string{"gen-01-tnef", "gen-02-plain", "gen-03-tnef", "gen-04-plain", "gen-05-tnef"}},
		{GenerateOptions{Kinds: []string{KindCalendar}, NamePrefix: "run7-"}, []string{"run7-01-calendar"}},
		{GenerateOptions{Kinds: []string{KindRecallRequest, KindRecallRequest}}, []string{"gen-01-recall-request", "gen-02-recall-request"}},
		{GenerateOptions{Count: 2}, []string{"gen-01-plain", "gen-02-html"}},
		{GenerateOptions{Count: 100, Kinds: []string{KindPlain}}, nil}, // checked below
	}
	for _, tc := range tests {
		msgs, err := GenerateMessages(tc.opts)
		if err != nil {
			t.Fatalf("%+v: %v", tc.opts, err)
		}
		if tc.names == nil {
			if len(msgs) != 100 || msgs[0].Name != "gen-001-plain" || msgs[99].Name != "gen-100-plain" {
				t.Errorf("count 100: %d messages, %s ... %s", len(msgs), msgs[0].Name, msgs[len(msgs)-1].Name)
			}
			continue
		}
		var names []string
		for _, m := range msgs {
			names = append(names, m.Name)
			if !strings.HasSuffix(m.Name, "-"+m.Kind) {
				t.Errorf("%s has kind %s", m.Name, m.Kind)
			}
		}
		if fmt.Sprint(names) != fmt.Sprint(tc.names) {
			t.Errorf("%+v: names %v, want %v", tc.opts, names, tc.names)
		}
	}
	// A message is the same whether it was asked for by kind or by count,
	// as long as it has the same position.
	all := Generate(GenerateOptions{Seed: 8})
	some := Generate(GenerateOptions{Seed: 8, Count: 3})
	for i := range some {
		if !bytes.Equal(some[i].Data, all[i].Data) {
			t.Errorf("%s differs between Count 3 and the default", some[i].Name)
		}
	}
	// Asked for by kind, the big attachment has a default size.
	big := Generate(GenerateOptions{Seed: 8, Kinds: []string{KindBigAttachment}})
	if len(big) != 1 || len(big[0].Data) < DefaultBigAttachmentBytes {
		t.Errorf("big attachment of %d bytes", len(big[0].Data))
	}
	if got := Kinds(); len(got) != 13 || got[0] != KindPlain || got[12] != KindBigAttachment {
		t.Errorf("Kinds() = %v", got)
	}
}

func TestGenerateMessagesRejectsBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts GenerateOptions
		want string
	}{
		{"unknown kind", GenerateOptions{Kinds: []string{KindPlain, "postcard"}}, `unknown kind "postcard"`},
		{"negative count", GenerateOptions{Count: -1}, "negative count"},
		{"sender without domain", GenerateOptions{Senders: []string{"alice"}}, `sender "alice"`},
		{"sender not an address", GenerateOptions{Senders: []string{"Alice <>"}}, `sender "Alice <>"`},
		{"duplicate recipient", GenerateOptions{Recipients: []string{"a@x.example", "A <A@X.example>"}}, "duplicate recipient"},
		{"prefix with a blank", GenerateOptions{NamePrefix: "my run-"}, "name prefix"},
		{"prefix with a line break", GenerateOptions{NamePrefix: "x\r\nBcc: y-"}, "name prefix"},
	}
	for _, tc := range tests {
		msgs, err := GenerateMessages(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) || msgs != nil {
			t.Errorf("%s: %v, %d messages; want an error with %q", tc.name, err, len(msgs), tc.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Generate did not panic on an unknown kind")
		}
	}()
	Generate(GenerateOptions{Kinds: []string{"postcard"}})
}

func TestGenerateSendersAndRecipients(t *testing.T) {
	t.Parallel()
	senders := []string{"Rita Sender <rita@sales.example>", "ops@sales.example"}
	rcpts := []string{"Una <una@tenant.example>", "vic@tenant.example", "Wes West <wes@tenant.example>"}
	msgs := Generate(GenerateOptions{Seed: 6, Senders: senders, Recipients: rcpts, BigAttachmentBytes: 100})
	allowed := map[string]bool{"una@tenant.example": true, "vic@tenant.example": true, "wes@tenant.example": true}
	for i, m := range msgs {
		sender := []string{"rita@sales.example", "ops@sales.example"}[i%2]
		from := HeaderValues(m.Data, "From")
		switch m.Kind {
		case KindRecallReport:
			// Exchange sends the report to the user who recalled.
			if len(m.To) != 1 || m.To[0] != sender || !strings.HasPrefix(m.From, "MicrosoftExchange") {
				t.Errorf("%s: envelope %s -> %v", m.Name, m.From, m.To)
			}
			continue
		case KindMultiRcpt:
			if len(m.To) != 3 {
				t.Errorf("%s: recipients %v", m.Name, m.To)
			}
		}
		if m.From != sender || len(from) != 1 || from[0] != senders[i%2] {
			t.Errorf("%s: from %s, From field %q; want %s", m.Name, m.From, from, senders[i%2])
		}
		if m.UTF8 != (m.Kind == KindSMTPUTF8) {
			t.Errorf("%s: UTF8 %v", m.Name, m.UTF8)
		}
		if first := []string{"una@tenant.example", "vic@tenant.example", "wes@tenant.example"}[i%3]; m.To[0] != first {
			t.Errorf("%s: first recipient %s, want %s", m.Name, m.To[0], first)
		}
		for _, r := range m.To {
			if !allowed[r] {
				t.Errorf("%s: recipient %s is not configured", m.Name, r)
			}
		}
		if bytes.Contains(m.Data, []byte("fabrikam.com")) && m.Kind == KindMultiRcpt {
			t.Errorf("%s: the external recipient is still there", m.Name)
		}
	}

	// One recipient for kinds that have several: each address once.
	for _, m := range Generate(GenerateOptions{Seed: 6, Recipients: []string{"only@tenant.example"}, Senders: []string{"José <josé@tenant.example>"}, Kinds: []string{KindMultiRcpt, KindCalendar, KindPlain}}) {
		if fmt.Sprint(m.To) != "[only@tenant.example]" || !m.UTF8 {
			t.Errorf("%s: recipients %v, UTF8 %v", m.Name, m.To, m.UTF8)
		}
		if cc := HeaderValues(m.Data, "Cc"); cc != nil {
			t.Errorf("%s: Cc %q repeats the recipient", m.Name, cc)
		}
		if m.Kind == KindCalendar {
			for _, p := range mustParts(t, m.Data) {
				if p.ContentType == "text/calendar" && bytes.Count(p.Body, []byte("ATTENDEE;")) != 1 {
					t.Errorf("calendar attendees:\n%s", p.Body)
				}
			}
		}
	}
}
