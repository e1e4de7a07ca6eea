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
