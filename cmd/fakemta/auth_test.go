package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/relaytest"
)

func TestCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in         string
		ok         bool
		user, pass string
	}{
		{"alice:secret", true, "alice", "secret"},
		{"alice:se:cr:et", true, "alice", "se:cr:et"},
		{"alice", false, "", ""},
		{":secret", false, "", ""},
		{"alice:", false, "", ""},
	} {
		var c credentials
		err := c.Set(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("Set(%q): %v", tc.in, err)
			continue
		}
		if !tc.ok {
			continue
		}
		check, _, err := (&serverAuth{creds: c}).config()
		if err != nil {
			t.Fatal(err)
		}
		if check(tc.user, tc.pass) != nil || check(tc.user, tc.pass+"x") == nil || check(tc.user+"x", tc.pass) == nil || check("", "") == nil {
			t.Errorf("%q: check accepts the wrong credentials or refuses the right ones", tc.in)
		}
		if s := c.String(); s != tc.user+":***" {
			t.Errorf("String() = %q", s)
		}
	}
}

// tenant --auth refuses mail before a login and a wrong password; send
// --auth-user/--auth-pass logs in with PLAIN or LOGIN, and the tenant shows
// the user on the delivery line and records user and HELO in the sidecar.
func TestTenantAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tn := startServer(t, "tenant", "--auth", "sigco:s3:cret", "--save-dir", dir)
	ctx := testContext(t, 60*time.Second)
	send := func(args ...string) (int, string) {
		t.Helper()
		code, out, stderr := runApp(t, ctx, append([]string{"send", "--to", tn.addr, "--generate", "--kind", "plain", "--attempts", "1"}, args...)...)
		return code, out + stderr
	}

	for _, tc := range []struct {
		args  []string
		code  int
		reply string
	}{
		{nil, exitFailure, "SMTP error 530: Authentication required"},
		{[]string{"--auth-user", "sigco", "--auth-pass", "wrong"}, exitFailure, "SMTP error 535: Authentication failed"},
		{[]string{"--auth-user", "sigco", "--auth-pass", "s3:cret", "--helo", "plain.sigco.example"}, exitOK, "250 "},
		{[]string{"--auth-user", "sigco", "--auth-pass", "s3:cret", "--auth-mech", "login", "--helo", "login.sigco.example"}, exitOK, "250 "},
	} {
		if code, out := send(tc.args...); code != tc.code || !strings.Contains(out, tc.reply) {
			t.Errorf("send %q: exit %d, want %d and %q:\n%s", tc.args, code, tc.code, tc.reply, out)
		}
	}
	if got := strings.Count(tn.out.String(), " user=sigco saved="); got != 2 {
		t.Errorf("%d deliveries with user=sigco, want 2:\n%s", got, tn.out.String())
	}
	for i, helo := range []string{"plain.sigco.example", "login.sigco.example"} {
		matches, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("%04d-*.json", i+1)))
		if len(matches) != 1 {
			t.Fatalf("sidecar %d: %v", i+1, matches)
		}
		js, err := os.ReadFile(matches[0])
		if err != nil {
			t.Fatal(err)
		}
		var rec envelopeRecord
		if err := json.Unmarshal(js, &rec); err != nil || rec.User != "sigco" || rec.Helo != helo {
			t.Errorf("sidecar %d: %s (%v); want user sigco, helo %s", i+1, js, err, helo)
		}
	}
}

// tenant --auth-optional takes mail with and without a login; only the
// login shows as user=.
func TestTenantAuthOptional(t *testing.T) {
	t.Parallel()
	tn := startServer(t, "tenant", "--auth", "sigco:pw", "--auth-optional")
	ctx := testContext(t, 60*time.Second)
	for _, extra := range [][]string{nil, {"--auth-user", "sigco", "--auth-pass", "pw"}} {
		args := append([]string{"send", "--to", tn.addr, "--generate", "--kind", "plain", "--attempts", "1"}, extra...)
		if code, _, stderr := runApp(t, ctx, args...); code != exitOK {
			t.Fatalf("send %q: exit %d: %s", extra, code, stderr)
		}
	}
	out := tn.out.String()
	if strings.Count(out, "delivery from=") != 2 || strings.Count(out, " user=sigco\n") != 1 {
		t.Errorf("tenant output:\n%s", out)
	}
}

// vendor --auth takes mail only after a login; --return-auth-user and
// --return-auth-pass make it log in to the tenant when sending back.
func TestVendorAuth(t *testing.T) {
	t.Parallel()
	tn := relaytest.StartTenant(t, relaytest.TenantConfig{Auth: relaytest.PasswordAuth("vendor-out", "pw2"), RequireAuth: true})
	v := startServer(t, "vendor", "--return", tn.Addr(), "--auth", "relay-in:pw1", "--helo", "sig.vendor.example",
		"--return-auth-user", "vendor-out", "--return-auth-pass", "pw2", "--return-auth-mech", "PLAIN")
	ctx := testContext(t, 60*time.Second)
	if code, out, _ := runApp(t, ctx, "send", "--to", v.addr, "--generate", "--kind", "plain", "--attempts", "1"); code != exitFailure || !strings.Contains(out, "SMTP error 530: Authentication required") {
		t.Errorf("without a login: exit %d\n%s", code, out)
	}
	runOK(t, ctx, "send", "--to", v.addr, "--generate", "--kind", "plain", "--test-names",
		"--auth-user", "relay-in", "--auth-pass", "pw1")
	d, err := tn.WaitFor(ctx, relaytest.MatchTestName("gen-01-plain"))
	if err != nil {
		t.Fatal(err)
	}
	if d.AuthUser != "vendor-out" || d.Helo != "sig.vendor.example" {
		t.Errorf("the tenant got the message from user %q, HELO %q", d.AuthUser, d.Helo)
	}
	v.waitOutput(t, "returned from=")
	if out := v.out.String(); !strings.Contains(out, " user=relay-in\n") {
		t.Errorf("vendor output:\n%s", out)
	}
}
