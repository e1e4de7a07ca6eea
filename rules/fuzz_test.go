package rules

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/recallrelay/recallrelay/headers"
)

// FuzzParse checks that Parse never panics, that its errors are *Error
// with at least one problem, and that whatever it accepts compiles (or
// fails with an *Error) and decides without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(exampleFile))
	f.Add([]byte("default_route: []\n"))
	f.Add([]byte(rule1(`    when: {header_matches: {header: Subject, patterns: ["[a"]}}`, `    actions: {bypass: true}`)))
	f.Add([]byte("default_route: [a]\nrules:\n  - &r {name: x, actions: {bypass: true}}\n  - *r\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte(rule1(`    actions: {remove_header: ["X-MS-Exchange-*", message-id, X-A], set_header: [{name: "X-OrganizationHeaders*", value: x}, {name: X-B, value: y}]}`)))
	f.Add([]byte(rule1(`    actions: {remove_header: [x-loop, X-RecallRelay-Ref, x-originatororg]}`)))
	f.Add([]byte("defaults: {scan_incomplete: reject}\ndefault_route: [signature]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || len(pe.Problems) == 0 {
				t.Fatalf("error %T %v is not an *Error with problems", err, err)
			}
			return
		}
		e, err := s.Compile(CompileOptions{Vendors: []string{"signature", "scanner"}, LoopMarker: "X-Loop"})
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || len(pe.Problems) == 0 {
				t.Fatalf("Compile error %T %v is not an *Error with problems", err, err)
			}
			return
		}
		h, _, err := headers.ReadHeader(bytes.NewReader([]byte("Subject: hi\r\nX-Foo: urgent\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")), 1<<10)
		if err != nil {
			t.Fatal(err)
		}
		m := &Message{From: "a@contoso.com", Rcpts: []string{"b@x.com"}, Size: 100, Header: h,
			Body: &BodyInfo{Attachments: []Attachment{{"a.pdf", "application/pdf"}}, TNEFClass: "IPM.Note"}}
		for _, incomplete := range []bool{false, true} {
			m.Body.Incomplete, m.Body.IncompleteReason = incomplete, "fuzz"
			d := e.Decide(m)
			if x := e.Explain(m); x.Decision.String() != d.String() {
				t.Fatalf("Explain decided %s, Decide %s", x.Decision, d)
			}
			// No header action survives on a protected field.
			for _, f := range d.SetHeaders {
				if Protected(f.Name, "X-Loop", "") {
					t.Fatalf("decision %s sets protected %s", d, f.Name)
				}
			}
			for _, n := range d.RemoveHeaders {
				if Protected(n, "X-Loop", "") {
					t.Fatalf("decision %s removes protected %s", d, n)
				}
			}
		}
		e.DecideEnvelope("", nil)
		e.NeedsBodyFor(h)
	})
}

// FuzzScanBody checks that ScanBody never panics, always returns a
// BodyInfo and stays within its limits.
func FuzzScanBody(f *testing.F) {
	f.Add("multipart/mixed; boundary=b", []byte("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"))
	f.Add("multipart/mixed; boundary=\"_000_TNEF_\"", func() []byte { _, b := tnefMessage(f, "IPM.Outlook.Recall"); return b }())
	f.Add("application/ms-tnef", tnefStream("IPM.Note"))
	f.Add("multipart/signed; boundary=x; protocol=\"application/pkcs7-signature\"", []byte("--x\r\n\r\n--x\r\nContent-Type: application/pkcs7-signature\r\n\r\nAA\r\n--x--\r\n"))
	f.Add("multipart/alternative; boundary=a", []byte("--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\n"))
	if names, err := filepath.Glob(filepath.Join(corpusDir, "0[12]*.eml")); err == nil {
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				continue
			}
			data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
			h, body, err := headers.ReadHeader(bytes.NewReader(data), 1<<20)
			if err != nil {
				continue
			}
			var rest bytes.Buffer
			rest.ReadFrom(body)
			f.Add(h.Get("Content-Type"), rest.Bytes())
		}
	}
	lim := ScanLimits{MaxDepth: 8, MaxParts: 50, MaxHeaderBytes: 4096}
	e, err := Default("signature").Compile(CompileOptions{Vendors: []string{"signature"}, LoopMarker: "X-Loop"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		var hb bytes.Buffer
		hb.WriteString("Content-Type: ")
		for _, c := range []byte(ct) {
			if c >= 0x20 && c < 0x7f {
				hb.WriteByte(c)
			}
		}
		hb.WriteString("\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		h, _, err := headers.ReadHeader(&hb, 1<<10)
		if err != nil {
			return
		}
		info, err := ScanBody(h, bytes.NewReader(body), lim)
		if info == nil {
			t.Fatal("nil BodyInfo")
		}
		if info.Incomplete != (info.IncompleteReason != "") || info.Incomplete && err == nil {
			t.Fatalf("Incomplete %v, reason %q, error %v", info.Incomplete, info.IncompleteReason, err)
		}
		// The recall-safe defaults never send a message they could not
		// fully scan to a vendor.
		d := e.Decide(&Message{From: "a@contoso.com", Rcpts: []string{"b@fabrikam.com"}, Header: h, Body: info})
		if info.Incomplete && d.Action == Route {
			t.Fatalf("incomplete scan (%s) routed: %s", info.IncompleteReason, d)
		}
		if len(info.ContentTypes) > lim.MaxParts || len(info.Attachments) > lim.MaxParts {
			t.Fatalf("%d content types, %d attachments beyond MaxParts %d", len(info.ContentTypes), len(info.Attachments), lim.MaxParts)
		}
	})
}
