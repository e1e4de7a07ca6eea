package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/relaytest"
)

// server is a fakemta server command running in-process.
type server struct {
	addr     string
	out, err *syncBuffer
	done     chan int // the exit code, once it has returned
	cancel   context.CancelFunc
}

// startServer runs "fakemta args..." until it returns or the test ends and
// waits for it to listen.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	return startServerWith(t, nil, args...)
}

// startServerWith is startServer with a behaviour registry (nil: the
// built-in one).
func startServerWith(t *testing.T, reg *relaytest.Registry, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{out: &syncBuffer{}, err: &syncBuffer{}, done: make(chan int, 1), cancel: cancel}
	addrs := make(chan string, 1)
	a := &app{stdout: s.out, stderr: s.err, ready: func(_, addr string) { addrs <- addr }, registry: reg}
	go func() { s.done <- a.run(ctx, args) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			t.Errorf("fakemta %v did not stop", args)
		}
	})
	select {
	case s.addr = <-addrs:
	case code := <-s.done:
		s.done <- code
		t.Fatalf("fakemta %v exited with %d before listening: %s", args, code, s.err.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("fakemta %v did not start", args)
	}
	return s
}

// wait waits for the command to exit by itself and returns its exit code.
func (s *server) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-s.done:
		s.done <- code // for the cleanup
		return code
	case <-time.After(60 * time.Second):
		t.Fatalf("the server did not exit; output:\n%s\n%s", s.out.String(), s.err.String())
		return -1
	}
}

// waitOutput waits until the command's standard output contains want.
func (s *server) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q:\n%s\nstderr:\n%s", want, s.out.String(), s.err.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sendOne(t *testing.T, addr string, m relaytest.Message) relaytest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := relaytest.Sender{Addr: addr, Timeout: 10 * time.Second, MaxAttempts: 1}
	return s.Send(ctx, m)
}

// --save-dir writes one .eml file and one .json sidecar per delivery,
// numbered after the files already there and named after X-Relaytest-Name,
// else Message-ID; --expect N makes the tenant exit 0 after N deliveries,
// after every client has had its reply.
func TestTenantSaveDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "saved")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0007-earlier-run.eml"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tn := startServer(t, "tenant", "--save-dir", dir, "--expect", "3", "--expect-timeout", "60s")

	msgs := []relaytest.Message{
		{Name: "named", From: "a@contoso.com", To: []string{"b@contoso.com", "c@contoso.com"},
			Data: []byte(testNameHeader + ": TestFoo/sub case #1\r\nMessage-ID: <n1@contoso.com>\r\nSubject: x\r\n\r\nbody\r\n")},
		{Name: "id", From: "a@contoso.com", To: []string{"b@contoso.com"},
			Data: []byte("Message-ID: <abc/def@contoso.com>\r\nSubject: y\r\n\r\nbody\r\n")},
		{Name: "bare", From: "", To: []string{"b@contoso.com"}, Data: []byte("Subject: z\r\n\r\nbody\r\n")},
	}
	wantFiles := []string{"0008-TestFoo_sub_case__1", "0009-abc_def@contoso.com", "0010-message"}
	for _, m := range msgs {
		if res := sendOne(t, tn.addr, m); !res.Accepted {
			t.Fatalf("%s: %v", m.Name, res.Err)
		}
	}
	if code := tn.wait(t); code != exitOK {
		t.Fatalf("exit %d: %s", code, tn.err.String())
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"0007-earlier-run.eml"}
	for _, f := range wantFiles {
		want = append(want, f+".eml", f+".json")
	}
	sort.Strings(want)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("files %v, want %v", names, want)
	}
	for i, m := range msgs {
		data, err := os.ReadFile(filepath.Join(dir, wantFiles[i]+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, m.Data) {
			t.Errorf("%s: saved %q, sent %q", wantFiles[i], data, m.Data)
		}
		js, err := os.ReadFile(filepath.Join(dir, wantFiles[i]+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var rec envelopeRecord
		if err := json.Unmarshal(js, &rec); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		if rec.Seq != 8+i || rec.File != wantFiles[i]+".eml" || rec.MailFrom != m.From ||
			strings.Join(rec.RcptTo, ",") != strings.Join(m.To, ",") || rec.Size != len(m.Data) ||
			!strings.HasPrefix(rec.Remote, "127.0.0.1:") || rec.Received.IsZero() || rec.TLS {
			t.Errorf("sidecar %s", js)
		}
		if !strings.Contains(tn.out.String(), " saved="+wantFiles[i]+".eml\n") {
			t.Errorf("output lacks %s:\n%s", wantFiles[i], tn.out.String())
		}
	}
	var rec envelopeRecord
	js, _ := os.ReadFile(filepath.Join(dir, wantFiles[0]+".json"))
	if err := json.Unmarshal(js, &rec); err != nil || rec.TestName != "TestFoo/sub case #1" || rec.MessageID != "<n1@contoso.com>" ||
		!bytes.Contains(js, []byte(`"message_id": "<n1@contoso.com>"`)) || rec.Helo != relaytest.DefaultHelo || rec.User != "" {
		t.Errorf("sidecar %s (%v)", js, err)
	}
}

// A message the tenant cannot save is refused with a 4xx, not lost.
func TestTenantSaveFailureRefuses(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "saved")
	tn := startServer(t, "tenant", "--save-dir", dir)
	// The directory becomes a file: nothing can be written in it.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := sendOne(t, tn.addr, relaytest.Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: x\r\n\r\nbody\r\n")})
	if res.Accepted || len(res.Replies) != 1 || !strings.HasPrefix(res.Replies[0], "451 4.3.0") {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(tn.err.String(), "refusing a message from <a@contoso.com>") || strings.Contains(tn.out.String(), "delivery from=") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", tn.out.String(), tn.err.String())
	}
}

// --compare-dir prints CompareIdentity's result for every delivery that
// matches a sent file, by X-Relaytest-Name before Message-ID, and explains
// every result not intact with the sent and delivered bytes; a sent message
// without identity fields is reported as such, not as intact. --expect all
// ends the tenant once every sent message has arrived, with status 1 when
// one lost part of its identity.
func TestTenantCompareDir(t *testing.T) {
	t.Parallel()
	sent := t.TempDir()
	if code, out, stderr := runApp(t, context.Background(), "generate", "--out", sent, "--kind", "plain,tnef,multi-rcpt", "--test-names"); code != exitOK {
		t.Fatalf("generate: exit %d: %s", code, stderr)
	} else if strings.Count(out, ".eml") != 3 {
		t.Fatalf("generate output:\n%s", out)
	}
	extra := map[string]string{
		// Found by Message-ID only.
		"id-only.eml": "From: a@contoso.com\r\nTo: b@contoso.com\r\nMessage-ID: <id-only@contoso.com>\r\nSubject: i\r\n\r\nbody\r\n",
		// Found by test name; nothing recall could find it by.
		"bare.eml": "From: a@contoso.com\r\nTo: b@contoso.com\r\n" + testNameHeader + ": bare-test\r\nSubject: b\r\n\r\nbody\r\n",
	}
	for name, data := range extra {
		if err := os.WriteFile(filepath.Join(sent, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plain, err := os.ReadFile(filepath.Join(sent, "gen-01-plain.eml"))
	if err != nil {
		t.Fatal(err)
	}
	// explained is how the tenant explains what behavior did to the plain
	// message.
	explained := func(behavior string) string {
		out, err := relaytest.MustParseBehaviors(behavior)[0].(relaytest.Transformer).Transform(plain)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, l := range strings.Split(strings.TrimSuffix(relaytest.CompareIdentity(plain, out).Explain(), "\n"), "\n") {
			b.WriteString("    " + l + "\n")
		}
		return b.String()
	}
	sentID := relaytest.RawFields(plain, "Message-ID")
	if len(sentID) != 1 {
		t.Fatalf("gen-01-plain has %d Message-ID fields", len(sentID))
	}

	tests := []struct {
		name      string
		behaviors string // of a vendor between sender and tenant; "" for none
		expect    string
		code      int
		want      []string
	}{
		{"direct", "", "all", exitOK, []string{
			"identity gen-01-plain (by test name): intact\n",
			"identity gen-02-tnef (by test name): intact\n",
			"identity gen-03-multi-rcpt (by test name): intact\n",
			"identity id-only (by message-id): intact\n",
			"identity bare (by test name): no identity fields\n",
			"identity summary: 5 deliveries compared, 4 intact, 0 not intact, 1 with no identity fields, 0 matched no sent message; 5 of 5 sent messages delivered\n",
		}},
		{"strip", "strip-ms-headers", "all", exitFailure, []string{
			"identity gen-02-tnef (by test name): missing [x-ms-exchange-crosspremises-",
			"identity gen-01-plain (by test name): missing [x-ms-exchange-crosspremises-",
			explained("strip-ms-headers"),
			"    missing x-ms-has-attach:\n      sent:      \"X-MS-Has-Attach:\\r\\n\"\n      delivered: (none)\n",
			"      delivered: (none)\n",
			"identity id-only (by message-id): intact\n",
			"identity bare (by test name): no identity fields\n",
			"identity summary: 5 deliveries compared, 1 intact, 3 not intact, 1 with no identity fields, 0 matched no sent message; 5 of 5 sent messages delivered\n",
			"  not intact: gen-01-plain: missing [",
		}},
		// The generated messages are still found by their test names; the
		// one known only by its Message-ID is not.
		{"rewrite", "rewrite-message-id", "5", exitFailure, []string{
			"identity gen-01-plain (by test name): changed [message-id]\n" + explained("rewrite-message-id"),
			"    changed message-id:\n      sent:      " + fmt.Sprintf("%q", sentID[0]) + "\n      delivered: \"Message-ID: <",
			"@vendor.relaytest.invalid>\\r\\n\"\n",
			"  identity: no sent message with this X-Relaytest-Name or Message-ID\n",
			"identity bare (by test name): added [message-id]\n",
			"    the sent message had no identity field and no TNEF part\n",
			"identity summary: 4 deliveries compared, 0 intact, 4 not intact, 0 with no identity fields, 1 matched no sent message; 4 of 5 sent messages delivered\n",
			"  not delivered: id-only\n",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := startServer(t, "tenant", "--compare-dir", sent, "--expect", tc.expect, "--expect-timeout", "60s")
			to := tn.addr
			if tc.behaviors != "" {
				to = startServer(t, "vendor", "--return", tn.addr, "--behaviors", tc.behaviors).addr
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if code, _, stderr := runApp(t, ctx, "send", "--to", to, "--dir", sent); code != exitOK {
				t.Fatalf("send: exit %d: %s", code, stderr)
			}
			if code := tn.wait(t); code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, tn.err.String())
			}
			out := tn.out.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if n := strings.Count(out, "identity broken:"); tc.code == exitOK && n != 0 {
				t.Errorf("%d explanations for intact deliveries:\n%s", n, out)
			}
			if tc.code != exitOK && !strings.Contains(tn.err.String(), "compared deliveries lost part of their identity") {
				t.Errorf("stderr:\n%s", tn.err.String())
			}
		})
	}
}

// --expect gives up after --expect-timeout with status 1 and says what is
// missing.
func TestTenantExpectTimeout(t *testing.T) {
	t.Parallel()
	sent := t.TempDir()
	if code, _, stderr := runApp(t, context.Background(), "generate", "--out", sent, "--kind", "tnef,calendar"); code != exitOK {
		t.Fatalf("generate: %s", stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--expect", "2"}, "timed out after 50ms: 0 of 2 deliveries"},
		{[]string{"--expect", "all", "--compare-dir", sent}, "timed out after 50ms: 0 of 2 sent messages delivered; not delivered: gen-01-tnef, gen-02-calendar"},
	} {
		tn := startServer(t, append([]string{"tenant", "--expect-timeout", "50ms"}, tc.args...)...)
		if code := tn.wait(t); code != exitFailure || !strings.Contains(tn.err.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, code, tn.err.String(), tc.want)
		}
	}
}

// A tenant interrupted before the mail of --expect has arrived exits with
// status 1 and says how far it got; one interrupted after it has arrived
// (while it lingers) exits with status 0.
func TestTenantExpectInterrupted(t *testing.T) {
	t.Parallel()
	m := relaytest.Message{From: "a@contoso.com", To: []string{"b@contoso.com"}, Data: []byte("Subject: x\r\n\r\nbody\r\n")}

	tn := startServer(t, "tenant", "--expect", "2")
	if res := sendOne(t, tn.addr, m); !res.Accepted {
		t.Fatal(res.Err)
	}
	tn.cancel()
	if code := tn.wait(t); code != exitFailure || !strings.Contains(tn.err.String(), "fakemta tenant: interrupted: 1 of 2 deliveries") {
		t.Errorf("unmet: exit %d, stderr %q", code, tn.err.String())
	}

	tn = startServer(t, "tenant", "--expect", "1", "--linger", "1h")
	if res := sendOne(t, tn.addr, m); !res.Accepted {
		t.Fatal(res.Err)
	}
	tn.cancel()
	if code := tn.wait(t); code != exitOK || tn.err.String() != "" {
		t.Errorf("met: exit %d, stderr %q", code, tn.err.String())
	}
}

func TestSanitizeName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"<ABC.123@host.example>", "ABC.123@host.example"},
		{"TestX/sub test", "TestX_sub_test"},
		{"../../etc/passwd", "_._.._etc_passwd"},
		{".hidden", "_hidden"},
		{"", "message"},
		{"<>", "message"},
		{"zoë", "zo__"},
		{strings.Repeat("a", 200), strings.Repeat("a", maxNameLen)},
	} {
		if got := sanitizeName(tc.in); got != tc.want {
			t.Errorf("sanitizeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
