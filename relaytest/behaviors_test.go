package relaytest

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
)

// leaf is a non-multipart part as go-message sees it.
type leaf struct {
	mediaType  string
	params     map[string]string
	encoding   string
	attachment bool
	content    []byte // transfer-decoded
}

// leaves parses data with go-message and returns its leaf parts in order.
func leaves(t *testing.T, data []byte) []leaf {
	t.Helper()
	e, err := message.Read(bytes.NewReader(data))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("parse: %v", err)
	}
	var out []leaf
	err = e.Walk(func(_ []int, p *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) {
			return err
		}
		if p.MultipartReader() != nil {
			return nil
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			return err
		}
		t, params, _ := p.Header.ContentType()
		disp, _, _ := p.Header.ContentDisposition()
		out = append(out, leaf{
			mediaType: t, params: params, attachment: disp == "attachment", content: b,
			encoding: strings.ToLower(p.Header.Get("Content-Transfer-Encoding")),
		})
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return out
}

func assertParses(t *testing.T, data []byte) { t.Helper(); leaves(t, data) }

func htmlPartsContain(t *testing.T, data []byte, s string) bool {
	t.Helper()
	found := false
	for _, l := range leaves(t, data) {
		if l.mediaType == "text/html" && !l.attachment {
			if !bytes.Contains(l.content, []byte(s)) {
				return false
			}
			found = true
		}
	}
	return found
}

// bodyOf returns the bytes after the header.
func bodyOf(data []byte) []byte { _, b := splitHeaderBody(data); return b }

// testMessages returns the generated messages and, when present, the corpus.
func testMessages(t *testing.T) []Message {
	msgs := Generate(GenerateOptions{Seed: 21, BigAttachmentBytes: 64 << 10})
	if _, err := LoadDir(corpusDir); err == nil {
		msgs = append(msgs, loadCorpus(t)...)
	} else {
		t.Logf("corpus not available (%v): generated messages only", err)
	}
	return msgs
}

func transform(t *testing.T, spec string, data []byte) []byte {
	t.Helper()
	bs := MustParseBehaviors(spec)
	if len(bs) != 1 {
		t.Fatalf("%q is not one behaviour", spec)
	}
	out, err := bs[0].(Transformer).Transform(data)
	if err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	return out
}

func TestPassthroughIsByteIdentical(t *testing.T) {
	t.Parallel()
	for _, m := range testMessages(t) {
		if out := transform(t, "passthrough", m.Data); !bytes.Equal(out, m.Data) {
			t.Errorf("%s changed", m.Name)
		}
	}
}

func TestHeaderTransformsKeepBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec  string
		check func(t *testing.T, m Message, in, out []exactField)
	}{
		{"strip-ms-headers", func(t *testing.T, m Message, in, out []exactField) {
			var want []exactField
			for _, f := range in {
				if !hasPrefixFold(f.Name, "x-ms-") {
					want = append(want, f)
				}
			}
			assertSameFields(t, m.Name, out, want)
		}},
		{"strip-unknown-headers", func(t *testing.T, m Message, in, out []exactField) {
			var want []exactField
			for _, f := range in {
				if isStandardField(f.Name) {
					want = append(want, f)
				}
			}
			assertSameFields(t, m.Name, out, want)
			for _, f := range out {
				if strings.HasPrefix(strings.ToLower(f.Name), "x-") || strings.HasPrefix(strings.ToLower(f.Name), "thread-") {
					t.Errorf("%s: %s kept", m.Name, f.Name)
				}
			}
		}},
		{"rewrite-message-id=signatures.example", func(t *testing.T, m Message, in, out []exactField) {
			var ids []string
			for _, f := range out {
				if strings.EqualFold(f.Name, "Message-ID") {
					ids = append(ids, string(f.Raw))
				}
			}
			if len(ids) != 1 || !strings.HasSuffix(ids[0], "@signatures.example>\r\n") {
				t.Errorf("%s: Message-ID fields %q", m.Name, ids)
			}
			var want, got []exactField
			for _, f := range in {
				if !strings.EqualFold(f.Name, "Message-ID") {
					want = append(want, f)
				}
			}
			for _, f := range out {
				if !strings.EqualFold(f.Name, "Message-ID") {
					got = append(got, f)
				}
			}
			assertSameFields(t, m.Name, got, want)
		}},
		{"stamp-marker=X-ExclaimerHostedSignatures-MessageProcessed: true", func(t *testing.T, m Message, in, out []exactField) {
			want := append([]exactField{{Name: "X-ExclaimerHostedSignatures-MessageProcessed", Raw: []byte("X-ExclaimerHostedSignatures-MessageProcessed: true\r\n")}}, in...)
			assertSameFields(t, m.Name, out, want)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			for _, m := range testMessages(t) {
				out := transform(t, tc.spec, m.Data)
				if !bytes.Equal(bodyOf(out), bodyOf(m.Data)) {
					t.Errorf("%s: body bytes changed", m.Name)
				}
				tc.check(t, m, exactFields(m.Data), exactFields(out))
			}
		})
	}
}

func assertSameFields(t *testing.T, name string, got, want []exactField) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d fields, want %d", name, len(got), len(want))
		return
	}
	for i := range got {
		if !bytes.Equal(got[i].Raw, want[i].Raw) {
			t.Errorf("%s: field %d is %q, want %q", name, i, got[i].Raw, want[i].Raw)
			return
		}
	}
}

func TestRewriteMessageIDBreaksOnlyMessageID(t *testing.T) {
	t.Parallel()
	m := genKind(t, KindTNEF)
	out := transform(t, "rewrite-message-id", m.Data)
	r := CompareIdentity(m.Data, out)
	if r.Intact || fmt.Sprint(r.Changed) != "[message-id]" || len(r.Missing)+len(r.Added) != 0 || r.TNEFLost || r.TNEFChanged {
		t.Errorf("identity after rewrite-message-id: %v", r)
	}
	// Without a Message-ID one is added.
	out = transform(t, "rewrite-message-id", []byte("Subject: x\r\n\r\nbody\r\n"))
	if !bytes.HasPrefix(out, []byte("Message-ID: <")) || !bytes.HasSuffix(out, []byte("Subject: x\r\n\r\nbody\r\n")) {
		t.Errorf("got %q", out)
	}
}

func TestFooterText(t *testing.T) {
	t.Parallel()
	for _, m := range testMessages(t) {
		out := transform(t, "footer-text", m.Data)
		in, got := leaves(t, m.Data), leaves(t, out)
		if len(in) != len(got) {
			t.Errorf("%s: %d parts became %d", m.Name, len(in), len(got))
			continue
		}
		for i := range in {
			a, b := in[i], got[i]
			if a.encoding != b.encoding || a.mediaType != b.mediaType {
				t.Errorf("%s part %d: %s/%s became %s/%s", m.Name, i, a.mediaType, a.encoding, b.mediaType, b.encoding)
			}
			if a.mediaType != "text/plain" || a.attachment {
				if !bytes.Equal(a.content, b.content) {
					t.Errorf("%s part %d (%s) changed", m.Name, i, a.mediaType)
				}
				continue
			}
			orig := bytes.TrimRight(a.content, "\r\n")
			if !bytes.HasPrefix(b.content, orig) || !bytes.Contains(b.content[len(orig):], []byte(DefaultFooterText)) {
				t.Errorf("%s part %d: footer not appended to the original text:\n%q", m.Name, i, b.content[max(0, len(b.content)-200):])
			}
		}
	}
}

func TestFooterHTML(t *testing.T) {
	t.Parallel()
	for _, m := range testMessages(t) {
		out := transform(t, "footer-html", m.Data)
		in, got := leaves(t, m.Data), leaves(t, out)
		root, _ := parseEntity(m.Data)
		if !root.multipart && root.mediaType == "text/plain" {
			// Wrapped into multipart/alternative: the text, unchanged, and HTML with the footer.
			rt, _ := parseEntity(out)
			if rt.mediaType != "multipart/alternative" || len(got) != 2 {
				t.Errorf("%s: single text part became %s with %d parts", m.Name, rt.mediaType, len(got))
				continue
			}
			if got[0].mediaType != "text/plain" || !bytes.Equal(got[0].content, in[0].content) || got[0].encoding != in[0].encoding {
				t.Errorf("%s: text part changed", m.Name)
			}
			if got[1].mediaType != "text/html" || !bytes.Contains(got[1].content, []byte(DefaultFooterHTML+"\r\n</body>")) {
				t.Errorf("%s: generated HTML part lacks the footer", m.Name)
			}
			if r := CompareIdentity(m.Data, out); !r.Intact {
				t.Errorf("%s: wrapping touched identity fields: %v", m.Name, r)
			}
			continue
		}
		if len(in) != len(got) {
			t.Errorf("%s: %d parts became %d", m.Name, len(in), len(got))
			continue
		}
		for i := range in {
			a, b := in[i], got[i]
			if a.mediaType != "text/html" || a.attachment {
				if !bytes.Equal(a.content, b.content) {
					t.Errorf("%s part %d (%s) changed", m.Name, i, a.mediaType)
				}
				continue
			}
			if b.encoding != a.encoding {
				t.Errorf("%s part %d: encoding %s became %s", m.Name, i, a.encoding, b.encoding)
			}
			if !bytes.Contains(b.content, []byte(DefaultFooterHTML)) {
				t.Errorf("%s part %d: no footer", m.Name, i)
			}
			if end := lastIndexFoldASCII(a.content, "</body>"); end >= 0 {
				if !bytes.Contains(b.content, []byte(DefaultFooterHTML+string(a.content[end:end+7]))) {
					t.Errorf("%s part %d: footer not right before </body>", m.Name, i)
				}
			}
		}
		if r := CompareIdentity(m.Data, out); !r.Intact {
			t.Errorf("%s: footer-html touched identity: %v", m.Name, r)
		}
	}
}

func TestReencode(t *testing.T) {
	t.Parallel()
	changed := 0
	for _, m := range testMessages(t) {
		out := transform(t, "reencode", m.Data)
		in, got := leaves(t, m.Data), leaves(t, out)
		if len(in) != len(got) {
			t.Errorf("%s: %d parts became %d", m.Name, len(in), len(got))
			continue
		}
		for i := range in {
			a, b := in[i], got[i]
			if !bytes.Equal(a.content, b.content) {
				t.Errorf("%s part %d (%s %s→%s): decoded content differs", m.Name, i, a.mediaType, a.encoding, b.encoding)
			}
			if strings.HasPrefix(a.mediaType, "text/") && (a.encoding == "" || a.encoding == "7bit" || a.encoding == "8bit") {
				want := "base64"
				if a.mediaType == "text/plain" {
					want = "quoted-printable"
				}
				if b.encoding != want {
					t.Errorf("%s part %d: %q became %q, want %s", m.Name, i, a.encoding, b.encoding, want)
				}
			}
		}
		// Header: same fields with the same unfolded values, folded at 78
		// columns where a blank allows.
		fin, fout := exactFields(m.Data), exactFields(out)
		var uin, uout []string
		for _, f := range fin {
			if !strings.EqualFold(f.Name, "Content-Transfer-Encoding") {
				uin = append(uin, string(unfold(f.Raw)))
			}
		}
		for _, f := range fout {
			if !strings.EqualFold(f.Name, "Content-Transfer-Encoding") {
				uout = append(uout, string(unfold(f.Raw)))
			}
			for i, line := range strings.Split(strings.TrimSuffix(string(f.Raw), "\r\n"), "\r\n") {
				if len(line) <= refoldWidth {
					continue
				}
				// A long line is only acceptable when it has no blank to
				// fold at: none but the one after the colon, or the
				// continuation's leading one.
				rest := strings.TrimLeft(line, " \t")
				if i == 0 {
					rest = strings.TrimLeft(line[strings.IndexByte(line, ':')+1:], " \t")
				}
				if strings.ContainsAny(rest, " \t") {
					t.Errorf("%s: line of %d columns could have been folded: %q", m.Name, len(line), line)
				}
			}
		}
		if strings.Join(uin, "\n") != strings.Join(uout, "\n") {
			t.Errorf("%s: header meaning changed", m.Name)
		}
		if !bytes.Equal(out, m.Data) {
			changed++
		}
	}
	if changed == 0 {
		t.Error("reencode changed nothing")
	}
}

func TestRefoldKeepsMeaning(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"Subject: short\r\n", "Subject: short\r\n"},
		{"Message-ID:\r\n <a@b>\r\n", "Message-ID: <a@b>\r\n"},
		{"X-Empty:\r\n", "X-Empty:\r\n"},
		{"X-Blank: \r\n", "X-Blank: \r\n"},
		{"X-Long: " + strings.Repeat("word ", 20) + "end\r\n",
			"X-Long: word word word word word word word word word word word word word word\r\n word word word word word word end\r\n"},
		{"X-Token: " + strings.Repeat("x", 100) + "\r\n", "X-Token: " + strings.Repeat("x", 100) + "\r\n"},
	}
	for _, tc := range tests {
		got := string(refold([]byte(tc.in), 78))
		if got != tc.want {
			t.Errorf("refold(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if string(unfold([]byte(got))) != string(unfold([]byte(tc.in))) {
			t.Errorf("refold(%q) changed the unfolded value", tc.in)
		}
	}
}

func TestFlattenTNEF(t *testing.T) {
	t.Parallel()
	for _, m := range testMessages(t) {
		out := transform(t, "flatten-tnef", m.Data)
		in, got := leaves(t, m.Data), leaves(t, out)
		var want []leaf
		for _, l := range in {
			if !isTNEFMediaType(l.mediaType) {
				want = append(want, l)
			}
		}
		if len(want) == len(in) {
			if !bytes.Equal(out, m.Data) {
				t.Errorf("%s: message without TNEF changed", m.Name)
			}
			continue
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d parts left, want %d", m.Name, len(got), len(want))
			continue
		}
		for i := range got {
			if got[i].mediaType != want[i].mediaType || !bytes.Equal(got[i].content, want[i].content) {
				t.Errorf("%s: part %d changed", m.Name, i)
			}
		}
		if r := CompareIdentity(m.Data, out); !r.TNEFLost {
			t.Errorf("%s: CompareIdentity does not see the TNEF loss: %v", m.Name, r)
		}
	}
	// The only part of a multipart is replaced by an empty text part.
	only := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64\r\n\r\neJ8+IgAA\r\n--b--\r\n"
	out := transform(t, "flatten-tnef", []byte(only))
	got := leaves(t, out)
	if len(got) != 1 || got[0].mediaType != "text/plain" || len(got[0].content) != 0 {
		t.Errorf("only-part TNEF: %q", out)
	}
}

func TestParseBehaviors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		list    string
		names   string // joined Name()s; "" with wantErr
		wantErr bool
	}{
		{"", "", false},
		{"passthrough", "passthrough", false},
		{" Footer-HTML , reencode,", "footer-html reencode", false},
		{"signature-service", "footer-html reencode strip-unknown-headers stamp-marker", false},
		{"signature-service,split-recipients", "footer-html reencode strip-unknown-headers stamp-marker split-recipients", false},
		{"delay", "delay=1s", false},
		{"delay=2s", "delay=2s", false},
		{"delay=-1s", "", true},
		{"delay=soon", "", true},
		{"delay=", "", true},
		{"stamp-marker=X-Foo: bar", "stamp-marker=X-Foo: bar", false},
		{"stamp-marker=no colon", "", true},
		{"stamp-marker=Bad Name: x", "", true},
		{"rewrite-message-id=vendor.example", "rewrite-message-id=vendor.example", false},
		{"rewrite-message-id=a@b", "", true},
		{"footer-text=Sent from the fake", "footer-text=Sent from the fake", false},
		{"exchange-second-pass", "exchange-second-pass", false},
		{"strip-ms-headers,footer-text,stamp-marker,exchange-second-pass", "strip-ms-headers footer-text stamp-marker exchange-second-pass", false},
		{"exchange-second-pass=x", "", true},
		{"passthrough=x", "", true},
		{"signature-service=x", "", true},
		{"no-such-thing", "", true},
		{"passthrough,bogus", "", true},
	}
	for _, tc := range tests {
		bs, err := ParseBehaviors(tc.list)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseBehaviors(%q) error = %v, want error %v", tc.list, err, tc.wantErr)
			continue
		}
		var names []string
		for _, b := range bs {
			names = append(names, b.Name())
		}
		if got := strings.Join(names, " "); got != tc.names {
			t.Errorf("ParseBehaviors(%q) = %q, want %q", tc.list, got, tc.names)
		}
		// Names parse back to the same behaviours.
		for _, b := range bs {
			again, err := ParseBehaviors(b.Name())
			if err != nil || len(again) != 1 || again[0].Name() != b.Name() {
				t.Errorf("%q does not parse back: %v", b.Name(), err)
			}
		}
	}
}

func TestBehaviorsListsEveryName(t *testing.T) {
	t.Parallel()
	want := []string{"passthrough", "footer-text", "footer-html", "reencode", "strip-ms-headers",
		"strip-unknown-headers", "rewrite-message-id", "split-recipients", "tempfail-first", "delay",
		"drop-mid-data", "duplicate", "flatten-tnef", "stamp-marker", "exchange-second-pass", "signature-service"}
	got := map[string]bool{}
	for _, b := range Behaviors() {
		if b.Description == "" || strings.Contains(b.Description, "\n") {
			t.Errorf("%s: description %q is not one line", b.Name, b.Description)
		}
		got[b.Name] = true
		if _, err := ParseBehaviors(b.Name); err != nil {
			t.Errorf("listed %q does not parse: %v", b.Name, err)
		}
	}
	for _, n := range want {
		if !got[n] {
			t.Errorf("%s not listed", n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("listed %d behaviours, want %d", len(got), len(want))
	}
}

func TestTempfailFirstIsPerMessage(t *testing.T) {
	t.Parallel()
	f := newTempfailFirst()
	a, b := &Delivery{Data: []byte("a")}, &Delivery{Data: []byte("b")}
	for i, tc := range []struct {
		d    *Delivery
		fail bool
	}{{a, true}, {a, false}, {b, true}, {a, false}, {b, false}} {
		err := f.Receive(tc.d)
		if (err != nil) != tc.fail {
			t.Errorf("call %d: %v", i, err)
		}
		if err != nil && (err.Code != 451 || err.EnhancedCode != [3]int{4, 7, 1}) {
			t.Errorf("call %d: reply %v", i, err)
		}
	}
}

func TestPlanners(t *testing.T) {
	t.Parallel()
	base := func() ReturnPlan {
		return ReturnPlan{Transactions: []Envelope{{From: "f@x", To: []string{"a@x", "b@x", "c@x"}}}}
	}
	tests := []struct {
		list  string
		check func(p ReturnPlan) bool
	}{
		{"split-recipients", func(p ReturnPlan) bool { return len(p.Transactions) == 3 && len(p.Transactions[2].To) == 1 }},
		{"duplicate", func(p ReturnPlan) bool { return len(p.Transactions) == 2 }},
		{"split-recipients,duplicate", func(p ReturnPlan) bool { return len(p.Transactions) == 6 }},
		{"delay=2s,delay=3s", func(p ReturnPlan) bool { return p.Delay.Seconds() == 5 }},
		{"drop-mid-data", func(p ReturnPlan) bool { return p.AbortAttempts == 1 }},
	}
	for _, tc := range tests {
		p := base()
		for _, b := range MustParseBehaviors(tc.list) {
			b.(ReturnPlanner).Plan(&p)
		}
		if !tc.check(p) {
			t.Errorf("%s: plan %+v", tc.list, p)
		}
	}
	// duplicate copies recipient lists instead of sharing them.
	p := base()
	duplicate{}.Plan(&p)
	p.Transactions[1].To[0] = "changed"
	if p.Transactions[0].To[0] != "a@x" {
		t.Error("duplicate shares the recipient slice")
	}
}
