package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
)

// Every command's -h prints its usage line, what it does and every flag on
// standard output and exits 0; the top-level help lists every command.
func TestHelpListsFlags(t *testing.T) {
	t.Parallel()
	clientTLS := []string{"starttls", "tls-server-name", "ca-file", "client-cert", "client-key", "insecure-skip-verify"}
	serverTLS := []string{"tls-cert", "tls-key", "tls-self-signed"}
	serverAuth := []string{"auth", "auth-optional"}
	clientAuth := []string{"auth-user", "auth-pass", "auth-mech"}
	generate := []string{"seed", "org-domain", "big-bytes", "kind", "count", "senders", "recipients", "test-names"}
	prefixed := func(p string, names []string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = p + n
		}
		return out
	}
	tests := []struct {
		cmd      string
		synopsis string
		flags    [][]string
	}{
		{"tenant", "[--listen ADDR] [--domain NAME] [--save-dir DIR] [--compare-dir DIR] [--expect N|all] [TLS and AUTH flags]", [][]string{
			{"listen", "domain", "require-tls", "save-dir", "compare-dir", "expect", "expect-timeout", "linger"}, serverTLS, serverAuth}},
		{"vendor", "--return ADDR [--listen ADDR] [--behaviors LIST]", [][]string{
			{"listen", "return", "behaviors", "name", "helo", "attempts", "backoff", "timeout"}, serverTLS, prefixed("return-", clientTLS),
			serverAuth, prefixed("return-", clientAuth)}},
		{"send", "--to ADDR (--dir DIR | --file FILE | --generate [--kind LIST] [--count N])", [][]string{
			{"to", "dir", "file", "generate", "from-override", "rcpt-override", "helo", "attempts", "backoff", "timeout"},
			generate, clientTLS, clientAuth}},
		{"generate", "--out DIR [--seed N] [--kind LIST] [--count N]", [][]string{{"out"}, generate}},
		{"load", "(--to ADDR [--compare-direct] | --sink)", [][]string{
			{"to", "sink", "senders", "messages", "duration", "per-conn", "bdat", "size", "exchange", "json", "pid"}, clientTLS}},
		{"behaviors", "", nil},
	}
	_, top, _ := runApp(t, context.Background(), "help")
	for _, tc := range tests {
		if !regexp.MustCompile(`(?m)^  ` + tc.cmd + ` `).MatchString(top) {
			t.Errorf("fakemta help does not list %s:\n%s", tc.cmd, top)
		}
		code, out, stderr := runApp(t, context.Background(), tc.cmd, "-h")
		if code != exitOK || stderr != "" {
			t.Errorf("%s -h: exit %d, stderr %q", tc.cmd, code, stderr)
		}
		if want := "Usage: fakemta " + tc.cmd + " " + tc.synopsis; !strings.HasPrefix(out, strings.TrimSpace(want)) {
			t.Errorf("%s -h does not start with %q:\n%s", tc.cmd, want, out)
		}
		n := 0
		for _, group := range tc.flags {
			for _, f := range group {
				n++
				if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(f) + `( |$)`).MatchString(out) {
					t.Errorf("%s -h lacks --%s:\n%s", tc.cmd, f, out)
				}
			}
		}
		if n == 0 && !strings.Contains(out, "This command has no flags.") {
			t.Errorf("%s -h:\n%s", tc.cmd, out)
		}
		// Flags of the listing that the table above does not know about
		// fail too, so that the table stays the list of every flag.
		if tc.cmd == "load" {
			continue // the table names only load's main flags
		}
		for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(out, -1) {
			found := false
			for _, group := range tc.flags {
				for _, f := range group {
					found = found || f == m[1]
				}
			}
			if !found {
				t.Errorf("%s -h lists --%s, which the test does not know", tc.cmd, m[1])
			}
		}
	}
}
