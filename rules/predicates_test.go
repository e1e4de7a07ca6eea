package rules

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/recallrelay/recallrelay/headers"
)

// defaultEngine is the engine of a relay without a rules file.
func defaultEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := Default("signature").Compile(testVendors)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// holds evaluates one predicate on a complete message.
func holds(t testing.TB, e *Engine, p predicate, h *headers.Header, body *BodyInfo) (bool, string) {
	t.Helper()
	c := e.fullCtx(&Message{From: "a@contoso.com", Rcpts: []string{"b@fabrikam.com"}, Header: h, Body: body})
	res, why := p.eval(c)
	if res == unknown {
		t.Fatalf("%s unknown on a complete message: %s", p, why)
	}
	return res == yes, why
}

// scanCorpus reads and scans a corpus message.
func scanCorpus(t testing.TB, name string) (*headers.Header, *BodyInfo) {
	t.Helper()
	h, body := corpusMessage(t, name)
	info, err := ScanBody(h, bytes.NewReader(body), ScanLimits{})
	if err != nil {
		t.Fatalf("%s: ScanBody: %v", name, err)
	}
	return h, info
}

// indexedRecalls returns the corpus files INDEX.md marks as RECALL.
func indexedRecalls(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir, "INDEX.md"))
	if err != nil {
		t.Skipf("corpus index not available: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `") || !strings.Contains(line, "RECALL[") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		out = append(out, name)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// recallSignals is what the recall-request predicate detects each corpus
// recall by (the first signal found, in the predicate's order). The six
// legacy Outlook recalls without any recall field (005-009, 012) are found
// by the X-CallingTelephoneNumber artefact only.
var recallSignals = map[string]string{
	"001-recall-nxp-messagerecallemail-http.eml":      "X-MS-Exchange-RecallReportGenerated present",
	"002-recall-unist-messagerecallemail.eml":         "X-MS-Exchange-RecallReportGenerated present",
	"003-recall-siemens-legacyoutlookrecall.eml":      "X-MS-Exchange-RecallReportGenerated present",
	"004-recall-siemens-recall-of-reply.eml":          "X-MS-Exchange-RecallReportGenerated present",
	"005-recall-amd-legacy-ipmnote-headers.eml":       "legacy Outlook recall artefact X-CallingTelephoneNumber: IPM.Note",
	"006-recall-intel-2022.eml":                       "legacy Outlook recall artefact X-CallingTelephoneNumber: IPM.Note",
	"007-recall-digi-2021-base64.eml":                 "legacy Outlook recall artefact X-CallingTelephoneNumber: IPM.Note",
	"008-recall-dell-chinese-gb2312-subject.eml":      "legacy Outlook recall artefact X-CallingTelephoneNumber: IPM.Note",
	"009-recall-nuvoton-iso2022jp-2019.eml":           "legacy Outlook recall artefact X-CallingTelephoneNumber: IPM.Note",
	"010-recall-tcs-openbmc.eml":                      "X-MS-Exchange-RecallReportGenerated present",
	"011-recall-intel-mailman-prefix.eml":             "X-MS-Exchange-RecallReportGenerated present",
	"012-recall-intel-2021.eml":                       "legacy Outlook recall artefact X-CallingTelephoneNumber: IPM.Note",
	"013-recall-intel-2023.eml":                       "X-MS-Exchange-RecallReportGenerated present",
	"014-recall-nvent-two-hop-messagerecallemail.eml": "X-MS-Exchange-RecallReportGenerated present",
	"015-recall-kneron-iso2022jp-subject.eml":         "X-MS-Exchange-RecallReportGenerated present",
}

func TestRecallRequestCorpus(t *testing.T) {
	recalls := indexedRecalls(t)
	want := make([]string, 0, len(recallSignals))
	for name := range recallSignals {
		want = append(want, name)
	}
	slices.Sort(want)
	if !slices.Equal(recalls, want) {
		t.Fatalf("INDEX.md lists recalls %q, the documented set is %q", recalls, want)
	}
	e := defaultEngine(t)
	for _, name := range recalls {
		h, info := scanCorpus(t, name)
		ok, why := holds(t, e, predRecallRequest, h, info)
		if !ok || why != recallSignals[name] {
			t.Errorf("%s: recall-request = %v (%s), want true by %q", name, ok, why, recallSignals[name])
		}
		// The header block alone decides: no body scan is needed.
		if e.NeedsBodyFor(h) {
			t.Errorf("%s: NeedsBodyFor = true for a recall known by its header", name)
		}
		d, _ := e.DecideEnvelope("a@contoso.com", []string{"b@fabrikam.com"})
		if d.Final {
			t.Errorf("%s: the envelope alone cannot know a recall", name)
		}
		if d := e.Decide(&Message{From: "a@contoso.com", Rcpts: []string{"b@fabrikam.com"}, Header: h}); d.Action != Bypass || !d.Final ||
			!slices.Equal(d.Matched, []string{"builtin:recall-bypass"}) {
			t.Errorf("%s: decision %s, want the recall bypass", name, d)
		}
	}
}

// TestRecallSignalsSeparately checks each header signal on its own, with
// the others removed from real recalls.
func TestRecallSignalsSeparately(t *testing.T) {
	corpusFiles(t, "00*.eml")
	e := defaultEngine(t)
	strip := func(h *headers.Header, names ...string) {
		h.Remove(headers.MustMatcher(names...))
	}
	// 001: cloud recall; without the RecallReport fields the traffic
	// diagnostic still tells.
	h, _ := corpusMessage(t, "001-recall-nxp-messagerecallemail-http.eml")
	strip(h, "X-MS-Exchange-RecallReport*")
	if ok, why := holds(t, e, predRecallRequest, h, nil); !ok || why != "X-MS-TrafficTypeDiagnostic ends in EE_MessageRecallEmail" {
		t.Errorf("001 without RecallReport fields: %v, %s", ok, why)
	}
	// 014: folded, two-hop diagnostic.
	h, _ = corpusMessage(t, "014-recall-nvent-two-hop-messagerecallemail.eml")
	strip(h, "X-MS-Exchange-RecallReport*")
	if ok, why := holds(t, e, predRecallRequest, h, nil); !ok || why != "X-MS-TrafficTypeDiagnostic ends in EE_MessageRecallEmail" {
		t.Errorf("014 without RecallReport fields: %v, %s", ok, why)
	}
	// 003: classic Outlook, lowercase field names.
	h, _ = corpusMessage(t, "003-recall-siemens-legacyoutlookrecall.eml")
	strip(h, "X-MS-Exchange-RecallReport*", "X-CallingTelephoneNumber")
	if ok, why := holds(t, e, predRecallRequest, h, nil); !ok || why != "X-MS-TrafficTypeDiagnostic ends in EE_LegacyOutlookRecall" {
		t.Errorf("003 without RecallReport fields and artefact: %v, %s", ok, why)
	}
	// 005 without its artefact: nothing else in its header block tells it
	// from an ordinary message (its Subject "Recall: ..." is not used).
	for _, name := range []string{"X-VoiceMessageDuration", "X-FaxNumberOfPages", "X-CallingTelephoneNumber"} {
		hh, _ := corpusMessage(t, "005-recall-amd-legacy-ipmnote-headers.eml")
		strip(hh, name)
		if ok, why := holds(t, e, predRecallRequest, hh, nil); ok {
			t.Errorf("005 without %s: still a recall request (%s); the artefact needs all three fields", name, why)
		}
	}
	// A voice-mail message carries a telephone number there, not a class.
	h = hdr(t, "X-CallingTelephoneNumber: +49 30 1234567", "X-VoiceMessageDuration: 17", "X-FaxNumberOfPages: 0")
	if ok, why := holds(t, e, predRecallRequest, h, nil); ok {
		t.Errorf("voice mail is a recall request: %s", why)
	}
	// A person writing "Recall:" is not recalling anything.
	h = hdr(t, "Subject: Recall: the figures for Q3", "Thread-Topic: the figures for Q3", "Thread-Index: AQHbw+SZ08R+QfrLvEmvDYKJHJlZqw==")
	if ok, why := holds(t, e, predRecallRequest, h, nil); ok {
		t.Errorf("a subject starting with Recall: is a recall request: %s", why)
	}
}

// ordinaryCorpus lists the corpus messages that are neither recalls,
// calendar items, signed, nor processed by a vendor.
func ordinaryCorpus(t testing.TB) []string {
	var out []string
	for _, n := range corpusFiles(t, "*.eml") {
		switch {
		case recallSignals[n] != "",
			strings.HasPrefix(n, "020-"), strings.HasPrefix(n, "021-"),
			strings.HasPrefix(n, "057-"), strings.HasPrefix(n, "058-"), strings.HasPrefix(n, "059-"),
			strings.HasPrefix(n, "033-"):
			continue
		}
		out = append(out, n)
	}
	return out
}

func TestOrdinaryCorpus(t *testing.T) {
	e := defaultEngine(t)
	names := ordinaryCorpus(t)
	if len(names) != 58 {
		t.Fatalf("%d ordinary corpus messages, want 58", len(names))
	}
	for _, name := range names {
		h, info := scanCorpus(t, name)
		for _, p := range []predicate{predRecallRequest, predRecallReport, predCalendar, predEncryptedOrSigned, predAutoGenerated, predAlreadyProcessed} {
			if ok, why := holds(t, e, p, h, info); ok {
				t.Errorf("%s: %s holds: %s", name, p, why)
			}
		}
		if d := e.Decide(&Message{From: "a@contoso.com", Rcpts: []string{"b@fabrikam.com"}, Header: h, Body: info}); d.String() != "route signature" {
			t.Errorf("%s: decision %s, want route signature", name, d)
		}
	}
}

// TestVendorProcessedCorpus: 033 went through CodeTwo's signature service
// and carries X-CodeTwoProcessed: true; sent out again it would loop.
func TestVendorProcessedCorpus(t *testing.T) {
	corpusFiles(t, "033-*.eml")
	e := defaultEngine(t)
	h, info := scanCorpus(t, "033-stripped-topic-nl-plain.eml")
	if ok, why := holds(t, e, predAlreadyProcessed, h, info); !ok || why != "X-CodeTwoProcessed present" {
		t.Errorf("033: already-processed = %v (%s)", ok, why)
	}
	if d := e.Decide(&Message{From: "a@topic.nl", Rcpts: []string{"b@x.org"}, Header: h, Body: info}); d.Action != Bypass ||
		!slices.Equal(d.Matched, []string{"builtin:loop-protection"}) {
		t.Errorf("033: decision %s, want the loop protection", d)
	}
}

func TestCalendarCorpus(t *testing.T) {
	e := defaultEngine(t)
	for _, name := range corpusFiles(t, "02[01]-calendar-*.eml") {
		h, info := scanCorpus(t, name)
		if !e.NeedsBodyFor(h) {
			t.Errorf("%s: NeedsBodyFor = false for a multipart message", name)
		}
		// Without the scan the calendar part is not seen.
		if ok, _ := holds(t, e, predCalendar, h, nil); ok {
			t.Errorf("%s: calendar found in the header block alone", name)
		}
		ok, why := holds(t, e, predCalendar, h, info)
		if !ok || why != "a part is text/calendar" {
			t.Errorf("%s: calendar = %v (%s)", name, ok, why)
		}
		if d := e.Decide(&Message{From: "a@microsoft.com", Rcpts: []string{"b@x.org"}, Header: h, Body: info}); d.Action != Bypass ||
			!slices.Equal(d.Matched, []string{"builtin:calendar-bypass"}) {
			t.Errorf("%s: decision %s, want the calendar bypass", name, d)
		}
	}
}

func TestSignedCorpus(t *testing.T) {
	e := defaultEngine(t)
	want := map[string]string{
		"057-mitll-smime-signed-mailman3.eml": "a part is multipart/signed",
		"058-nvidia-pgp-signed.eml":           "the message is multipart/signed",
		"059-hpe-smime-signed.eml":            "the message is multipart/signed",
	}
	for _, name := range corpusFiles(t, "05[789]-*.eml") {
		h, info := scanCorpus(t, name)
		if !info.Signed || info.Encrypted {
			t.Errorf("%s: Signed %v, Encrypted %v", name, info.Signed, info.Encrypted)
		}
		if ok, why := holds(t, e, predEncryptedOrSigned, h, info); !ok || why != want[name] {
			t.Errorf("%s: encrypted-or-signed = %v (%s), want %q", name, ok, why, want[name])
		}
	}
}

func TestTNEFCorpus(t *testing.T) {
	e := defaultEngine(t)
	for _, name := range corpusFiles(t, "01[6-9]-tnef-*.eml") {
		h, info := scanCorpus(t, name)
		if info.TNEFClass != "IPM.Note" {
			t.Errorf("%s: TNEF class %q, want IPM.Note", name, info.TNEFClass)
		}
		want := Attachment{Filename: "winmail.dat", ContentType: "application/ms-tnef"}
		if !slices.Contains(info.Attachments, want) {
			t.Errorf("%s: attachments %v lack %v", name, info.Attachments, want)
		}
		if !e.NeedsBodyFor(h) {
			t.Errorf("%s: NeedsBodyFor = false for a TNEF message", name)
		}
		if ok, why := holds(t, e, predRecallRequest, h, info); ok {
			t.Errorf("%s: an IPM.Note is a recall request: %s", name, why)
		}
	}
}

// tnefStream builds a minimal TNEF stream whose only attribute is a
// message-level attMessageClass holding class.
func tnefStream(class string) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, 0x223E9F78))
	b.Write(le.AppendUint16(nil, 0x0001))
	data := append([]byte(class), 0)
	b.WriteByte(0x01)                                // level: message
	b.Write(le.AppendUint32(nil, 0x00078008))        // attMessageClass
	b.Write(le.AppendUint32(nil, uint32(len(data)))) // length
	b.Write(data)
	var sum uint16
	for _, c := range data {
		sum += uint16(c)
	}
	b.Write(le.AppendUint16(nil, sum))
	return b.Bytes()
}

// base64Lines encodes data in 76-character lines.
func base64Lines(data []byte) string {
	s := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s + "\r\n")
	return b.String()
}

// tnefMessage wraps a TNEF stream with class into multipart/mixed, as
// Exchange sends winmail.dat.
func tnefMessage(t testing.TB, class string) (*headers.Header, []byte) {
	h := hdr(t, "From: a@contoso.com", "Subject: Recall: figures", "MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="_000_TNEF_"`)
	body := "--_000_TNEF_\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nAlice would like to recall the message.\r\n" +
		"--_000_TNEF_\r\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"winmail.dat\"\r\n\r\n" + base64Lines(tnefStream(class)) +
		"--_000_TNEF_--\r\n"
	return h, []byte(body)
}

func TestSyntheticTNEF(t *testing.T) {
	e := defaultEngine(t)
	tests := []struct {
		class   string
		builtin string // "" for none
	}{
		{"IPM.Outlook.Recall", "builtin:recall-bypass"},
		{"ipm.outlook.recall", "builtin:recall-bypass"},
		{"IPM.Recall.Report.Success", "builtin:recall-bypass"},
		{"IPM.Schedule.Meeting.Request", "builtin:calendar-bypass"},
		{"IPM.Appointment", "builtin:calendar-bypass"},
		{"IPM.Microsoft Mail.Note", ""},
		{"IPM.Outlook.Recall.Extra", ""},
	}
	for _, tt := range tests {
		h, body := tnefMessage(t, tt.class)
		if !e.NeedsBodyFor(h) {
			t.Errorf("%s: NeedsBodyFor = false", tt.class)
		}
		info, err := ScanBody(h, bytes.NewReader(body), ScanLimits{})
		if err != nil {
			t.Fatalf("%s: ScanBody: %v", tt.class, err)
		}
		if info.TNEFClass != tt.class {
			t.Errorf("TNEF class %q, want %q", info.TNEFClass, tt.class)
		}
		m := &Message{From: "a@contoso.com", Rcpts: []string{"b@contoso.com"}, Header: h, Body: info}
		d := e.Decide(m)
		if tt.builtin == "" {
			if d.Action != Route {
				t.Errorf("%s: decision %s, want route", tt.class, d)
			}
			continue
		}
		if d.Action != Bypass || !slices.Equal(d.Matched, []string{tt.builtin}) {
			t.Errorf("%s: decision %s, want bypass by %s", tt.class, d, tt.builtin)
		}
		// Without the scan the class is not known, and the guess is wrong.
		m.Body = nil
		if d := e.Decide(m); d.Action != Route {
			t.Errorf("%s: decision without the body scan %s", tt.class, d)
		}
	}

	// A single-part TNEF message (Content-Type application/ms-tnef at the top).
	h := hdr(t, "Content-Type: application/ms-tnef", "Content-Transfer-Encoding: base64")
	info, err := ScanBody(h, strings.NewReader(base64Lines(tnefStream("IPM.Outlook.Recall"))), ScanLimits{})
	if err != nil || info.TNEFClass != "IPM.Outlook.Recall" {
		t.Fatalf("top-level TNEF: class %q, %v", info.TNEFClass, err)
	}
	if !e.NeedsBodyFor(h) {
		t.Error("NeedsBodyFor = false for a top-level TNEF message")
	}
	if d := e.Decide(&Message{From: "a@contoso.com", Rcpts: []string{"b@contoso.com"}, Header: h, Body: info}); !d.Final {
		t.Errorf("top-level TNEF recall: decision %s", d)
	}
}
