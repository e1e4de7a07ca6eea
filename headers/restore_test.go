package headers

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
)

// origin is what the tenant sent (header block only).
const origin = "Received: from tenant\n" +
	"From: a@contoso.com\n" +
	"Message-ID: <orig@contoso.prod.outlook.com>\n" +
	"Thread-Topic: hello\n" +
	"X-MS-Has-Attach: \n" +
	"X-MS-Exchange-CrossPremises-AuthAs: Internal\n" +
	"X-MS-Exchange-CrossPremises-Antispam-ScanContext:\n\tDIR:Originating;SFV:NSPM;SKIP:0;\n" +
	"x-ms-exchange-crosspremises-transporttraffictype: Email\n" +
	"X-OrganizationHeadersPreserved: AM0PR01MB1234.eurprd01.prod.outlook.com\n" +
	"X-MS-Exchange-CrossTenant-Id: 72f988bf-0000\n" +
	"Subject: hi\n"

func record(t *testing.T) *Record {
	t.Helper()
	h, _, err := ReadHeader(strings.NewReader(crlf(origin+"\n")), 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	return &Record{Ref: NewRef(), Fields: h.Capture(MustMatcher(DefaultCapture...))}
}

func restore(t *testing.T, vendor string, rec *Record) (string, RestoreReport) {
	t.Helper()
	return restoreWith(t, NewRestorer(MustMatcher(DefaultRestore...)), vendor, rec)
}

func restoreWith(t *testing.T, r *Restorer, vendor string, rec *Record) (string, RestoreReport) {
	t.Helper()
	h, body, err := ReadHeader(strings.NewReader(crlf(vendor+"\nbody\n")), 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	rep := r.Restore(h, rec)
	var out bytes.Buffer
	h.WriteTo(&out)
	rest, _ := io.ReadAll(body)
	if string(rest) != "body\r\n" {
		t.Fatalf("body changed: %q", rest)
	}
	return strings.ReplaceAll(strings.TrimSuffix(out.String(), "\r\n"), "\r\n", "\n"), rep
}

// guardedFields returns the raw fields of the restore set or firewall, as a
// sorted-by-position string: what Exchange will see.
func guardedFields(t *testing.T, hdr string) []string {
	t.Helper()
	h, _, err := ReadHeader(strings.NewReader(crlf(hdr+"\n")), 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	m := MustMatcher(append(append([]string{}, DefaultRestore...), Firewall...)...)
	var out []string
	for _, f := range h.Fields() {
		if m.Match(f.Name) {
			out = append(out, string(f.Raw))
		}
	}
	return out
}

func TestRestore(t *testing.T) {
	rec := record(t)
	want := guardedFields(t, origin)

	tests := []struct {
		name         string
		vendor       string
		wantRestored []string
		wantRemoved  []string
		// keep lists non-guarded lines that must survive unchanged.
		keep []string
	}{
		{
			name:        "untouched",
			vendor:      origin,
			wantRemoved: []string{"x-ms-exchange-crosstenant-id"},
			keep:        []string{"Received: from tenant", "Subject: hi"},
		},
		{
			name:   "vendor stripped every X-MS header and rewrote Message-ID",
			vendor: "Received: from vendor\nReceived: from tenant\nFrom: a@contoso.com\nMessage-ID: <new@vendor.example>\nThread-Topic: hello\nSubject: hi\nX-CodeTwoProcessed: true\n",
			wantRestored: []string{
				"message-id", "x-ms-exchange-crosspremises-antispam-scancontext", "x-ms-exchange-crosspremises-authas",
				"x-ms-exchange-crosspremises-transporttraffictype", "x-ms-has-attach", "x-organizationheaderspreserved",
			},
			keep: []string{"Received: from vendor", "X-CodeTwoProcessed: true", "Subject: hi"},
		},
		{
			name:         "vendor re-folded a field",
			vendor:       strings.Replace(origin, "Antispam-ScanContext:\n\tDIR", "Antispam-ScanContext: DIR", 1),
			wantRestored: []string{"x-ms-exchange-crosspremises-antispam-scancontext"},
			wantRemoved:  []string{"x-ms-exchange-crosstenant-id"},
		},
		{
			name:         "vendor forges organization headers",
			vendor:       origin + "X-MS-Exchange-Organization-AuthAs: Internal\nX-MS-Exchange-CrossPremises-SCL: -1\nX-MS-Exchange-Organization-SCL: -1\n",
			wantRemoved:  []string{"x-ms-exchange-crosspremises-scl", "x-ms-exchange-crosstenant-id", "x-ms-exchange-organization-authas", "x-ms-exchange-organization-scl"},
			keep:         []string{"Subject: hi"},
			wantRestored: nil,
		},
		{
			name:         "vendor duplicated a recorded field",
			vendor:       origin + "X-MS-Exchange-CrossPremises-AuthAs: Internal\n",
			wantRestored: []string{"x-ms-exchange-crosspremises-authas"},
			wantRemoved:  []string{"x-ms-exchange-crosstenant-id"},
		},
		{
			name:         "vendor changed case of a name",
			vendor:       strings.Replace(origin, "X-MS-Has-Attach", "x-ms-has-attach", 1),
			wantRestored: []string{"x-ms-has-attach"},
			wantRemoved:  []string{"x-ms-exchange-crosstenant-id"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, rep := restore(t, tt.vendor, rec)
			if got := guardedFields(t, out); !reflect.DeepEqual(sortedCopy(got), sortedCopy(want)) {
				t.Errorf("guarded fields after restore:\n%q\nwant (any order):\n%q", got, want)
			}
			if !reflect.DeepEqual(rep.Restored, tt.wantRestored) {
				t.Errorf("Restored = %q, want %q", rep.Restored, tt.wantRestored)
			}
			if !reflect.DeepEqual(rep.Removed, tt.wantRemoved) {
				t.Errorf("Removed = %q, want %q", rep.Removed, tt.wantRemoved)
			}
			for _, k := range tt.keep {
				if !strings.Contains(out, k+"\n") {
					t.Errorf("lost %q:\n%s", k, out)
				}
			}
			if strings.Contains(out, "CrossTenant") {
				t.Errorf("re-stamped field restored or passed on:\n%s", out)
			}
		})
	}
}

// Restored fields keep the recorded order relative to each other.
func TestRestoreOrder(t *testing.T) {
	rec := record(t)
	out, _ := restore(t, "Subject: hi\n", rec)
	got := guardedFields(t, out)
	want := guardedFields(t, origin)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order:\n%q\nwant\n%q", got, want)
	}
	if !strings.HasSuffix(out, "Subject: hi\n") {
		t.Errorf("restored fields not at the top:\n%s", out)
	}
}

func TestRestoreWithoutRecordStripsOnly(t *testing.T) {
	out, rep := restore(t, origin, nil)
	if got := guardedFields(t, out); len(got) != 3 { // Message-ID, Thread-Topic, X-MS-Has-Attach stay; firewall gone
		t.Errorf("fields left: %q", got)
	}
	for _, bad := range []string{"CrossPremises", "crosspremises", "X-OrganizationHeadersPreserved"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s survived without a record:\n%s", bad, out)
		}
	}
	if len(rep.Removed) == 0 {
		t.Error("report says nothing was removed")
	}
}

// A record whose stored bytes were tampered with (for example edited in
// Redis) never writes anything that could split the header block.
func TestRestoreSkipsInvalidRecordedFields(t *testing.T) {
	rec := &Record{Fields: []Field{
		{Name: "Message-ID", Raw: []byte("Message-ID: <a@b>\r\nBcc: victim@example.com\r\n")},
		{Name: "Thread-Topic", Raw: []byte("Thread-Topic: ok\r\n")},
	}}
	out, _ := restore(t, "Subject: x\n", rec)
	if strings.Contains(out, "Bcc") {
		t.Fatalf("injected field written:\n%s", out)
	}
	if !strings.Contains(out, "Thread-Topic: ok\n") {
		t.Fatalf("valid field not restored:\n%s", out)
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
	return c
}

// The fields Exchange strips and re-stamps on re-entry are removed from
// whatever the vendor presents, forged or genuine, and never written back
// from the record, even when the restore list names them.
func TestRestoreStripsRestamped(t *testing.T) {
	rec := record(t)
	rec.Fields = append(rec.Fields,
		Field{Name: "X-OriginatorOrg", Raw: []byte("X-OriginatorOrg: contoso.com\r\n")},
		Field{Name: "X-MS-Exchange-Transport-CrossTenantHeadersStamped", Raw: []byte("X-MS-Exchange-Transport-CrossTenantHeadersStamped: AM0PR01MB1234\r\n")},
	)
	forged := "X-MS-Exchange-CrossTenant-AuthAs: Internal\nX-OriginatorOrg: contoso.com\nX-MS-Exchange-Transport-CrossTenantHeadersStamped: VENDOR01\n"
	everything := append(append([]string{}, DefaultRestore...), Restamped...)
	tests := []struct {
		name        string
		restore     []string
		vendor      string
		rec         *Record
		wantRemoved []string
	}{
		{
			name:    "forged tenant attribution",
			restore: DefaultRestore,
			vendor:  "Subject: hi\n" + forged,
			rec:     rec,
			wantRemoved: []string{"x-ms-exchange-crosstenant-authas", "x-ms-exchange-transport-crosstenantheadersstamped",
				"x-originatororg"},
		},
		{
			name:        "the recorded fields, byte for byte",
			restore:     DefaultRestore,
			vendor:      origin + "X-OriginatorOrg: contoso.com\n",
			rec:         rec,
			wantRemoved: []string{"x-ms-exchange-crosstenant-id", "x-originatororg"},
		},
		{
			name:    "a restore list that names them",
			restore: everything,
			vendor:  "Subject: hi\n" + forged,
			rec:     rec,
			wantRemoved: []string{"x-ms-exchange-crosstenant-authas", "x-ms-exchange-transport-crosstenantheadersstamped",
				"x-originatororg"},
		},
		{
			name:    "no record",
			restore: everything,
			vendor:  "Subject: hi\n" + forged,
			wantRemoved: []string{"x-ms-exchange-crosstenant-authas", "x-ms-exchange-transport-crosstenantheadersstamped",
				"x-originatororg"},
		},
	}
	restamped := MustMatcher(Restamped...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, rep := restoreWith(t, NewRestorer(MustMatcher(tt.restore...)), tt.vendor, tt.rec)
			h, _, err := ReadHeader(strings.NewReader(crlf(out+"\n")), 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.Capture(restamped); len(got) > 0 {
				t.Errorf("re-stamped fields reach the tenant: %q", got)
			}
			if !reflect.DeepEqual(rep.Removed, tt.wantRemoved) {
				t.Errorf("Removed = %q, want %q", rep.Removed, tt.wantRemoved)
			}
			for _, k := range append(rep.Restored, rep.Intact...) {
				if restamped.Match(k) {
					t.Errorf("%s reported restored or intact: %+v", k, rep)
				}
			}
			if !strings.Contains(out, "Subject: hi\n") {
				t.Errorf("other fields lost:\n%s", out)
			}
		})
	}
}
