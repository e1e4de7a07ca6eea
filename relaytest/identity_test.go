package relaytest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// replaceField replaces the first field whose raw bytes match re with repl
// (the whole raw field, CRLF included).
func replaceField(t *testing.T, data []byte, re string, repl string) []byte {
	t.Helper()
	for _, f := range exactFields(data) {
		if regexp.MustCompile(re).Match(f.Raw) {
			return bytes.Replace(data, f.Raw, []byte(repl), 1)
		}
	}
	t.Fatalf("no field matches %s", re)
	return nil
}

func rawField(t *testing.T, data []byte, re string) string {
	t.Helper()
	for _, f := range exactFields(data) {
		if regexp.MustCompile(re).Match(f.Raw) {
			return string(f.Raw)
		}
	}
	t.Fatalf("no field matches %s", re)
	return ""
}

// tnefBase64 returns the base64 body of the message's winmail.dat part.
func tnefBase64(t *testing.T, data []byte) []byte {
	t.Helper()
	i := bytes.Index(data, []byte("Content-Type: application/ms-tnef"))
	if i < 0 {
		t.Fatal("no TNEF part")
	}
	start := i + bytes.Index(data[i:], []byte("\r\n\r\n")) + 4
	end := start + bytes.Index(data[start:], []byte("\r\n--"))
	return data[start:end]
}

func TestCompareIdentity(t *testing.T) {
	t.Parallel()
	tnef := genKind(t, KindTNEF)
	report := genKind(t, KindRecallReport)
	cp := `(?i)^x-ms-exchange-crosspremises-authas:`
	tests := []struct {
		name      string
		sent      []byte
		delivered func(t *testing.T, d []byte) []byte
		missing   string
		changed   string
		added     string
		lost      bool
		tnefChg   bool
	}{
		{name: "identical", sent: tnef.Data, delivered: func(_ *testing.T, d []byte) []byte { return d }},
		{name: "other fields changed", sent: tnef.Data, delivered: func(t *testing.T, d []byte) []byte {
			d = replaceField(t, d, `^Subject:`, "Subject: [EXT] changed\r\n")
			d = replaceField(t, d, `(?i)^X-MS-Exchange-CrossTenant-Network-Message-Id:`, "X-MS-Exchange-CrossTenant-Network-Message-Id: new\r\n")
			return append([]byte("X-CodeTwoProcessed: true\r\n"), d...)
		}},
		{name: "identity fields reordered", sent: tnef.Data, delivered: func(t *testing.T, d []byte) []byte {
			f := rawField(t, d, cp)
			d = bytes.Replace(d, []byte(f), nil, 1)
			return append([]byte(f), d...)
		}},
		{name: "Message-ID value", sent: tnef.Data, changed: "[message-id]", delivered: func(t *testing.T, d []byte) []byte {
			return replaceField(t, d, `(?i)^Message-ID:`, "Message-ID: <other@vendor.example>\r\n")
		}},
		{name: "Message-ID folding", sent: tnef.Data, changed: "[message-id]", delivered: func(t *testing.T, d []byte) []byte {
			f := rawField(t, d, `(?i)^Message-ID:`)
			name, value, _ := strings.Cut(string(unfold([]byte(f))), ":")
			folded := name + ":\r\n " + strings.TrimLeft(value, " ") + "\r\n"
			if folded == f {
				folded = name + ": " + strings.TrimLeft(value, " ") + "\r\n"
			}
			return bytes.Replace(d, []byte(f), []byte(folded), 1)
		}},
		{name: "CrossPremises field dropped", sent: tnef.Data, missing: "[x-ms-exchange-crosspremises-authas]", delivered: func(t *testing.T, d []byte) []byte {
			return replaceField(t, d, cp, "")
		}},
		{name: "CrossPremises name case", sent: tnef.Data, changed: "[x-ms-exchange-crosspremises-authas]", delivered: func(t *testing.T, d []byte) []byte {
			return replaceField(t, d, cp, "X-MS-EXCHANGE-CROSSPREMISES-AUTHAS: Internal\r\n")
		}},
		{name: "CRLF became LF", sent: tnef.Data, changed: "[x-organizationheaderspreserved]", delivered: func(t *testing.T, d []byte) []byte {
			f := rawField(t, d, `^X-OrganizationHeadersPreserved:`)
			return bytes.Replace(d, []byte(f), []byte(strings.TrimSuffix(f, "\r\n")+"\n"), 1)
		}},
		{name: "field duplicated", sent: tnef.Data, changed: "[x-organizationheaderspreserved]", delivered: func(t *testing.T, d []byte) []byte {
			return append([]byte(rawField(t, d, `^X-OrganizationHeadersPreserved:`)), d...)
		}},
		{name: "forged field added", sent: tnef.Data, added: "[x-ms-exchange-crosspremises-forged]", delivered: func(_ *testing.T, d []byte) []byte {
			return append([]byte("X-MS-Exchange-CrossPremises-Forged: yes\r\n"), d...)
		}},
		{name: "recall marker added", sent: tnef.Data, added: "[x-ms-exchange-recallreportgenerated]", delivered: func(_ *testing.T, d []byte) []byte {
			return append([]byte("X-MS-Exchange-RecallReportGenerated: true\r\n"), d...)
		}},
		{name: "generated-message-source dropped", sent: report.Data, missing: "[x-ms-exchange-generated-message-source]", delivered: func(t *testing.T, d []byte) []byte {
			return replaceField(t, d, `^X-MS-Exchange-Generated-Message-Source:`, "")
		}},
		{name: "TNEF correlator emptied", sent: tnef.Data, changed: "[x-ms-tnef-correlator]", delivered: func(t *testing.T, d []byte) []byte {
			return replaceField(t, d, `^X-MS-TNEF-Correlator:`, "X-MS-TNEF-Correlator:\r\n")
		}},
		{name: "TNEF part removed", sent: tnef.Data, lost: true, delivered: func(t *testing.T, d []byte) []byte {
			return transform(t, "flatten-tnef", d)
		}},
		{name: "TNEF content changed", sent: tnef.Data, tnefChg: true, delivered: func(t *testing.T, d []byte) []byte {
			b64 := tnefBase64(t, d)
			raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b64), "\r\n", ""))
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)/2] ^= 0x01
			return bytes.Replace(d, b64, bytes.TrimSuffix(base64Lines(raw), []byte("\r\n")), 1)
		}},
		{name: "TNEF re-encoded identically decoded", sent: tnef.Data, delivered: func(t *testing.T, d []byte) []byte {
			b64 := tnefBase64(t, d)
			one := strings.ReplaceAll(string(b64), "\r\n", "")
			var lines []string
			for len(one) > 60 {
				lines, one = append(lines, one[:60]), one[60:]
			}
			lines = append(lines, one)
			return bytes.Replace(d, b64, []byte(strings.Join(lines, "\r\n")), 1)
		}},
		{name: "TNEF part added", sent: genKind(t, KindPlain).Data, tnefChg: true, added: "[x-ms-tnef-correlator]", delivered: func(_ *testing.T, _ []byte) []byte {
			return tnef.Data
		}},
		{name: "garbage delivered", sent: tnef.Data, lost: true,
			missing:   "", // checked separately: everything is missing
			delivered: func(_ *testing.T, _ []byte) []byte { return []byte("not a message") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.delivered(t, append([]byte(nil), tc.sent...))
			r := CompareIdentity(tc.sent, d)
			assertChangesCarryBytes(t, r, tc.sent, d)
			if tc.name == "garbage delivered" {
				if r.Intact || len(r.Missing) < 5 || !r.TNEFLost {
					t.Errorf("%v", r)
				}
				return
			}
			if tc.name == "TNEF part added" {
				if r.Intact || !r.TNEFChanged || r.TNEFLost {
					t.Errorf("%v", r)
				}
				return
			}
			if got := fmt.Sprint(r.Missing); r.Missing != nil && got != tc.missing || r.Missing == nil && tc.missing != "" {
				t.Errorf("Missing = %v, want %s", r.Missing, tc.missing)
			}
			if got := fmt.Sprint(r.Changed); r.Changed != nil && got != tc.changed || r.Changed == nil && tc.changed != "" {
				t.Errorf("Changed = %v, want %s", r.Changed, tc.changed)
			}
			if got := fmt.Sprint(r.Added); r.Added != nil && got != tc.added || r.Added == nil && tc.added != "" {
				t.Errorf("Added = %v, want %s", r.Added, tc.added)
			}
			if r.TNEFLost != tc.lost || r.TNEFChanged != tc.tnefChg {
				t.Errorf("TNEFLost=%v TNEFChanged=%v, want %v %v", r.TNEFLost, r.TNEFChanged, tc.lost, tc.tnefChg)
			}
			wantIntact := tc.missing == "" && tc.changed == "" && tc.added == "" && !tc.lost && !tc.tnefChg
			if r.Intact != wantIntact {
				t.Errorf("Intact = %v, want %v (%v)", r.Intact, wantIntact, r)
			}
			if wantIntact && r.String() != "intact" {
				t.Errorf("String() = %q", r.String())
			}
			if !wantIntact {
				s := r.String()
				for _, want := range []string{tc.missing, tc.changed, tc.added} {
					if want != "" && !strings.Contains(s, strings.Trim(want, "[]")) {
						t.Errorf("String() = %q lacks %s", s, want)
					}
				}
			}
		})
	}
}

// TestCompareIdentityTNEFByName checks that CompareIdentity counts a
// winmail.dat part by its name as Part.IsTNEF does, and reports one whose
// TNEF media type was replaced as relabeled.
func TestCompareIdentityTNEFByName(t *testing.T) {
	t.Parallel()
	tnef := genKind(t, KindTNEF).Data
	relabel := func(d []byte) []byte {
		out := bytes.Replace(d, []byte("Content-Type: application/ms-tnef"), []byte("Content-Type: application/octet-stream"), 1)
		if bytes.Equal(out, d) {
			t.Fatal("no TNEF part to relabel")
		}
		return out
	}
	asOctet := relabel(tnef)
	if !HasTNEF(asOctet) {
		t.Fatal("HasTNEF misses winmail.dat sent as application/octet-stream")
	}

	r := CompareIdentity(tnef, asOctet)
	if r.Intact || r.TNEFLost || !r.TNEFChanged || r.TNEFParts != 1 || len(r.TNEF) != 1 {
		t.Fatalf("relabeled: %v %+v", r, r.TNEF)
	}
	if c := r.TNEF[0]; c.Kind != FieldChanged || !c.Relabeled || c.FirstDiff != -1 || c.SentBytes <= 0 || c.SentBytes != c.DeliveredBytes {
		t.Errorf("relabeled: %+v", c)
	}
	if e := r.Explain(); !strings.Contains(e, "TNEF part 1 relabeled: ") {
		t.Errorf("relabeled: Explain() = %q", e)
	}

	if r := CompareIdentity(asOctet, asOctet); !r.Intact || r.TNEFParts != 1 {
		t.Errorf("winmail.dat as application/octet-stream, unchanged: %v, %d TNEF parts", r, r.TNEFParts)
	}

	b64 := tnefBase64(t, tnef)
	raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b64), "\r\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	raw[0] ^= 0x01
	changed := relabel(bytes.Replace(tnef, b64, bytes.TrimSuffix(base64Lines(raw), []byte("\r\n")), 1))
	r = CompareIdentity(asOctet, changed)
	if r.Intact || !r.TNEFChanged || len(r.TNEF) != 1 || r.TNEF[0].Relabeled || r.TNEF[0].FirstDiff != 0 {
		t.Errorf("winmail.dat as application/octet-stream, content changed: %v %+v", r, r.TNEF)
	}
}

func TestCompareIdentityCorpusSelf(t *testing.T) {
	t.Parallel()
	for _, m := range loadCorpus(t) {
		if r := CompareIdentity(m.Data, append([]byte(nil), m.Data...)); !r.Intact {
			t.Errorf("%s: %v", m.Name, r)
		}
		// Stripping X-MS-* must be noticed wherever identity fields exist.
		stripped := transform(t, "strip-ms-headers", m.Data)
		if len(identityFields(m.Data)) > 1 { // more than the Message-ID
			if r := CompareIdentity(m.Data, stripped); r.Intact {
				t.Errorf("%s: stripping X-MS-* reported intact", m.Name)
			}
		}
	}
}

// assertChangesCarryBytes checks that r.Changes agrees with Missing, Changed
// and Added and carries exactly the raw fields of both messages, and that
// Explain quotes them.
func assertChangesCarryBytes(t *testing.T, r IdentityResult, sent, delivered []byte) {
	t.Helper()
	byKind := map[ChangeKind][]string{}
	explain := r.Explain()
	for _, c := range r.Changes {
		byKind[c.Kind] = append(byKind[c.Kind], c.Name)
		if fmt.Sprintf("%q", c.Sent) != fmt.Sprintf("%q", RawFields(sent, c.Name)) ||
			fmt.Sprintf("%q", c.Delivered) != fmt.Sprintf("%q", RawFields(delivered, c.Name)) {
			t.Errorf("%s: change carries %q -> %q", c.Name, c.Sent, c.Delivered)
		}
		for _, raw := range append(append([]string{}, c.Sent...), c.Delivered...) {
			if !strings.Contains(explain, fmt.Sprintf("%q", raw)) {
				t.Errorf("Explain() lacks %q:\n%s", raw, explain)
			}
		}
	}
	for kind, names := range map[ChangeKind][]string{FieldMissing: r.Missing, FieldChanged: r.Changed, FieldAdded: r.Added} {
		if fmt.Sprint(byKind[kind]) != fmt.Sprint(names) {
			t.Errorf("Changes of kind %s name %v, the list %v", kind, byKind[kind], names)
		}
	}
	if r.Intact != (len(r.Changes) == 0 && len(r.TNEF) == 0) {
		t.Errorf("Intact %v with %d field and %d TNEF changes", r.Intact, len(r.Changes), len(r.TNEF))
	}
	if !strings.HasSuffix(explain, "\n") {
		t.Errorf("Explain() does not end with a line ending: %q", explain)
	}
}

func TestCompareIdentityExplains(t *testing.T) {
	t.Parallel()
	tnef := genKind(t, KindTNEF)
	sentID := RawFields(tnef.Data, "Message-ID")[0]
	fixture := []byte("From: a@example.com\r\nTo: b@example.com\r\nSubject: no identity\r\n\r\nbody\r\n")
	flipped := func(t *testing.T) []byte {
		b64 := tnefBase64(t, tnef.Data)
		raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b64), "\r\n", ""))
		if err != nil {
			t.Fatal(err)
		}
		raw[100] ^= 0x01
		return bytes.Replace(tnef.Data, b64, bytes.TrimSuffix(base64Lines(raw), []byte("\r\n")), 1)
	}
	tests := []struct {
		name            string
		sent, delivered func(t *testing.T) []byte
		intact, noIdent bool
		str             string   // String()
		explain         []string // Explain() contains each
		check           func(t *testing.T, r IdentityResult)
	}{
		{name: "no identity fields", intact: true, noIdent: true, str: "no identity fields",
			sent: func(*testing.T) []byte { return fixture }, delivered: func(*testing.T) []byte { return fixture },
			explain: []string{"no identity fields", "nothing was compared"}},
		{name: "garbage both ways", intact: true, noIdent: true, str: "no identity fields",
			sent: func(*testing.T) []byte { return []byte("not a message") }, delivered: func(*testing.T) []byte { return []byte("\x00\xff") },
			explain: []string{"no identity fields"}},
		{name: "identity added to a fixture", noIdent: true, str: "added [message-id]",
			sent: func(*testing.T) []byte { return fixture },
			delivered: func(*testing.T) []byte {
				return append([]byte("Message-ID: <new@vendor.example>\r\n"), fixture...)
			},
			explain: []string{"added message-id:", `sent:      (none)`, `delivered: "Message-ID: <new@vendor.example>\r\n"`, "had no identity field"}},
		{name: "intact", intact: true, str: "intact",
			sent: func(*testing.T) []byte { return tnef.Data }, delivered: func(*testing.T) []byte { return tnef.Data },
			explain: []string{"intact: ", " identity fields and 1 TNEF part delivered as sent"},
			check: func(t *testing.T, r IdentityResult) {
				if r.Fields < 15 || r.TNEFParts != 1 {
					t.Errorf("Fields %d, TNEFParts %d", r.Fields, r.TNEFParts)
				}
			}},
		{name: "changed Message-ID", str: "changed [message-id]",
			sent: func(*testing.T) []byte { return tnef.Data },
			delivered: func(t *testing.T) []byte {
				return replaceField(t, tnef.Data, `(?i)^Message-ID:`, "Message-ID: <other@vendor.example>\r\n")
			},
			explain: []string{"identity broken: 1 field changed (", "changed message-id:", fmt.Sprintf("sent:      %q", sentID), `delivered: "Message-ID: <other@vendor.example>\r\n"`},
			check: func(t *testing.T, r IdentityResult) {
				want := FieldChange{Name: "message-id", Kind: FieldChanged, Sent: []string{sentID}, Delivered: []string{"Message-ID: <other@vendor.example>\r\n"}}
				if len(r.Changes) != 1 || fmt.Sprintf("%#v", r.Changes[0]) != fmt.Sprintf("%#v", want) {
					t.Errorf("Changes = %#v", r.Changes)
				}
			}},
		{name: "line ending", str: "changed [message-id]",
			sent: func(*testing.T) []byte { return tnef.Data },
			delivered: func(t *testing.T) []byte {
				return bytes.Replace(tnef.Data, []byte(sentID), []byte(strings.TrimSuffix(sentID, "\r\n")+"\n"), 1)
			},
			explain: []string{fmt.Sprintf("%q", strings.TrimSuffix(sentID, "\r\n")+"\n")}},
		{name: "garbage delivered", str: "missing [",
			sent: func(*testing.T) []byte { return tnef.Data }, delivered: func(*testing.T) []byte { return []byte("not a message") },
			explain: []string{"fields missing, TNEF part lost (", "missing message-id:", fmt.Sprintf("sent:      %q", sentID), "delivered: (none)", "TNEF part 1 lost ("},
			check: func(t *testing.T, r IdentityResult) {
				if r.NoIdentity || len(r.Missing) != r.Fields-countDuplicates(r) || len(r.TNEF) != 1 || r.TNEF[0].Kind != FieldMissing ||
					r.TNEF[0].SentBytes <= 0 || r.TNEF[0].DeliveredBytes != -1 {
					t.Errorf("%+v", r)
				}
			}},
		{name: "TNEF content", str: "TNEF part changed",
			sent: func(*testing.T) []byte { return tnef.Data }, delivered: flipped,
			explain: []string{"TNEF part 1 changed: ", "first difference at byte 100"},
			check: func(t *testing.T, r IdentityResult) {
				if len(r.TNEF) != 1 || r.TNEF[0].Kind != FieldChanged || r.TNEF[0].FirstDiff != 100 || r.TNEF[0].SentBytes != r.TNEF[0].DeliveredBytes {
					t.Errorf("TNEF = %+v", r.TNEF)
				}
			}},
		{name: "TNEF added", str: "TNEF part changed",
			sent:      func(t *testing.T) []byte { return transform(t, "flatten-tnef", tnef.Data) },
			delivered: func(*testing.T) []byte { return tnef.Data },
			explain:   []string{"TNEF part 1 added ("}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sent, delivered := tc.sent(t), tc.delivered(t)
			r := CompareIdentity(sent, delivered)
			assertChangesCarryBytes(t, r, sent, delivered)
			if r.Intact != tc.intact || r.NoIdentity != tc.noIdent || !strings.HasPrefix(r.String(), tc.str) {
				t.Errorf("Intact %v, NoIdentity %v, String() %q; want %v, %v, %q", r.Intact, r.NoIdentity, r.String(), tc.intact, tc.noIdent, tc.str)
			}
			explain := r.Explain()
			for _, want := range tc.explain {
				if !strings.Contains(explain, want) {
					t.Errorf("Explain() lacks %q:\n%s", want, explain)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			if t.Failed() {
				t.Logf("Explain():\n%s", explain)
			}
		})
	}
}

// countDuplicates returns how many sent identity fields share a name with
// an earlier one.
func countDuplicates(r IdentityResult) int {
	n := 0
	for _, c := range r.Changes {
		if len(c.Sent) > 1 {
			n += len(c.Sent) - 1
		}
	}
	return n
}
