package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/relaytest"
)

// send --kind sends only the generated messages of the kinds listed.
func TestSendKind(t *testing.T) {
	t.Parallel()
	tn, err := relaytest.NewTenant(relaytest.TenantConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(); err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, out, stderr := runApp(t, ctx, "send", "--to", tn.Addr(), "--generate", "--seed", "3",
		"--kind", "calendar, tnef,big-attachment", "--big-bytes", "2000")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var want []relaytest.Message
	for _, m := range relaytest.Generate(relaytest.GenerateOptions{Seed: 3, BigAttachmentBytes: 2000}) {
		switch m.Kind {
		case relaytest.KindTNEF, relaytest.KindCalendar, relaytest.KindBigAttachment:
			want = append(want, m)
		}
	}
	ds := tn.Deliveries()
	if len(ds) != len(want) || len(want) != 3 {
		t.Fatalf("%d deliveries, want %d:\n%s", len(ds), len(want), out)
	}
	for i, d := range ds {
		if !bytes.Equal(d.Data, want[i].Data) || !strings.Contains(out, want[i].Name) {
			t.Errorf("delivery %d is not %s", i, want[i].Name)
		}
	}
}

// generate writes Generate's messages, one NAME.eml each, byte for byte.
func TestGenerate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new")
	code, out, stderr := runApp(t, context.Background(), "generate", "--out", dir, "--seed", "9", "--org-domain", "fabrikam.com")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
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
	tn, err := relaytest.NewTenant(relaytest.TenantConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Start(); err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
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
