package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relaytest"
)

// send --kind sends the generated messages of the kinds listed, in the
// order listed (relaytest's GenerateOptions.Kinds).
func TestSendKind(t *testing.T) {
	t.Parallel()
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
	ctx := testContext(t, 30*time.Second)
	out := runOK(t, ctx, "send", "--to", tn.Addr(), "--generate", "--seed", "3",
		"--kind", "calendar, tnef,big-attachment", "--big-bytes", "2000")
	want := relaytest.Generate(relaytest.GenerateOptions{Seed: 3, BigAttachmentBytes: 2000,
		Kinds: []string{relaytest.KindCalendar, relaytest.KindTNEF, relaytest.KindBigAttachment}})
	ds := tn.Deliveries()
	if len(ds) != len(want) || len(want) != 3 {
		t.Fatalf("%d deliveries, want %d:\n%s", len(ds), len(want), out)
	}
	for i, d := range ds {
		if !bytes.Equal(d.Data, want[i].Data) || !strings.Contains(out, want[i].Name) {
			t.Errorf("delivery %d is not %s", i, want[i].Name)
		}
	}
	if want[0].Name != "gen-01-calendar" || want[2].Kind != relaytest.KindBigAttachment {
		t.Errorf("generated %s ... %s", want[0].Name, want[2].Kind)
	}
}

// send --generate passes --count, --senders, --recipients and --test-names
// to Generate: the tenant gets exactly GenerateMessages' bytes, each
// findable by its test name.
func TestSendGenerateOptions(t *testing.T) {
	t.Parallel()
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
	ctx := testContext(t, 30*time.Second)
	out := runOK(t, ctx, "send", "--to", tn.Addr(), "--generate", "--seed", "7",
		"--kind", "plain,multi-rcpt", "--count", "5", "--senders", "Adele Vance <adele@fabrikam.com>, megan@fabrikam.com",
		"--recipients", "x@fabrikam.com,y@fabrikam.com,z@fabrikam.com", "--test-names")
	want, err := relaytest.GenerateMessages(relaytest.GenerateOptions{Seed: 7, Kinds: []string{"plain", "multi-rcpt"}, Count: 5,
		Senders:    []string{"Adele Vance <adele@fabrikam.com>", "megan@fabrikam.com"},
		Recipients: []string{"x@fabrikam.com", "y@fabrikam.com", "z@fabrikam.com"}, TestNames: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 5 {
		t.Fatalf("%d messages generated", len(want))
	}
	for i, m := range want {
		d, err := tn.WaitFor(ctx, relaytest.MatchTestName(m.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d.Data, m.Data) || !strings.Contains(out, m.Name) {
			t.Errorf("%s: delivered other bytes", m.Name)
		}
		if wantFrom := []string{"adele@fabrikam.com", "megan@fabrikam.com"}[i%2]; d.MailFrom != wantFrom {
			t.Errorf("%s: from %s, want %s", m.Name, d.MailFrom, wantFrom)
		}
		for _, r := range d.Rcpts {
			if !strings.HasSuffix(r, "@fabrikam.com") {
				t.Errorf("%s: recipient %s", m.Name, r)
			}
		}
	}
	if err := tn.ExpectNoMore(ctx, len(want), 0); err != nil {
		t.Error(err)
	}
}

// generate --count --test-names writes that many files, each stamped with
// its name.
func TestGenerateCountTestNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := runOK(t, context.Background(), "generate", "--out", dir, "--kind", "tnef", "--count", "3", "--test-names")
	loaded, err := relaytest.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 3 {
		t.Fatalf("%d files:\n%s", len(loaded), out)
	}
	for i, m := range loaded {
		want := fmt.Sprintf("gen-%02d-tnef", i+1)
		if m.Name != want || relaytest.TestName(m.Data) != want || !strings.Contains(out, want+".eml\ttnef\n") {
			t.Errorf("file %d: %s, test name %q", i, m.Name, relaytest.TestName(m.Data))
		}
	}
}

// generate writes Generate's messages, one NAME.eml each, byte for byte.
func TestGenerate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new")
	out := runOK(t, context.Background(), "generate", "--out", dir, "--seed", "9", "--org-domain", "fabrikam.com")
	gen := relaytest.Generate(relaytest.GenerateOptions{Seed: 9, OrgDomain: "fabrikam.com"})
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(gen) {
		t.Fatalf("%d files for %d messages", len(entries), len(gen))
	}
	loaded, err := relaytest.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range gen {
		if loaded[i].Name != m.Name || !bytes.Equal(loaded[i].Data, m.Data) || !strings.Contains(out, m.Name+".eml\t"+m.Kind+"\n") {
			t.Errorf("file %d: %s, want %s", i, loaded[i].Name, m.Name)
		}
	}
}

// send --backoff and --attempts reach the Sender: a tenant refusing the
// first data gets a second attempt.
func TestSendRetries(t *testing.T) {
	t.Parallel()
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{})
	ctx := testContext(t, 30*time.Second)
	tempfail := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
	tn.RejectNextData(1, tempfail)
	code, out, stderr := runApp(t, ctx, "send", "--to", tn.Addr(), "--generate", "--kind", "plain", "--attempts", "2", "--backoff", "1ms")
	if code != exitOK || !regexpMatch(`gen-01-plain\s+accepted\s+2\s+250 `, out) {
		t.Fatalf("exit %d:\n%s%s", code, out, stderr)
	}
	tn.RejectNextData(2, tempfail)
	code, out, _ = runApp(t, ctx, "send", "--to", tn.Addr(), "--generate", "--kind", "plain", "--attempts", "2", "--backoff", "1ms")
	if code != exitFailure || !regexpMatch(`gen-01-plain\s+FAILED\s+2\s`, out) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
