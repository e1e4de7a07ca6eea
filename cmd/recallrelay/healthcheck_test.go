package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recallrelay/recallrelay/admin"
)

// TestHealthcheck runs the healthcheck command against a real HTTP server
// that answers as the admin listener does: /healthz without a token,
// /readyz with the bearer token, 503 with the reason when not ready.
func TestHealthcheck(t *testing.T) {
	const token = "s3cret-token"
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /draining", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/healthz", http.StatusFound)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("GET /seen", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Header.Get("User-Agent") + "\n"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release) // before srv.Close, so that /slow's handler returns

	// An address where nothing listens: a server closed at once.
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongToken := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrongToken, []byte("not-the-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyToken := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyToken, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // substring expected on standard output
		stderr string // substring expected on standard error
	}{
		{name: "healthz 200", args: []string{"--url", srv.URL + "/healthz"}, code: 0, stdout: "200 OK: ok"},
		{name: "readyz with token", args: []string{"--url", srv.URL + "/readyz", "--token-file", tokenFile}, code: 0, stdout: "200 OK: ok"},
		{name: "readyz without token", args: []string{"--url", srv.URL + "/readyz"}, code: 1, stderr: "401 Unauthorized: unauthorized"},
		{name: "readyz wrong token", args: []string{"--url", srv.URL + "/readyz", "--token-file", wrongToken}, code: 1, stderr: "401 Unauthorized"},
		{name: "503 gives the relay's reason", args: []string{"--url", srv.URL + "/draining"}, code: 1,
			stderr: "recallrelay healthcheck: GET " + srv.URL + "/draining: 503 Service Unavailable: not ready: shutting down"},
		{name: "404", args: []string{"--url", srv.URL + "/nothing"}, code: 1, stderr: "404 Not Found"},
		{name: "redirect not followed", args: []string{"--url", srv.URL + "/moved"}, code: 1, stderr: "302 Found"},
		{name: "timeout", args: []string{"--url", srv.URL + "/slow", "--timeout", "200ms"}, code: 1, stderr: "no answer within 200ms"},
		{name: "connection refused", args: []string{"--url", goneURL + "/healthz", "--timeout", "2s"}, code: 1, stderr: "connection refused"},
		{name: "user agent", args: []string{"--url", srv.URL + "/seen"}, code: 0, stdout: "recallrelay-healthcheck"},
		{name: "missing token file", args: []string{"--url", srv.URL + "/readyz", "--token-file", filepath.Join(dir, "absent")}, code: 1, stderr: "--token-file:"},
		{name: "empty token file", args: []string{"--url", srv.URL + "/readyz", "--token-file", emptyToken}, code: 1, stderr: "is empty"},
		{name: "not an http URL", args: []string{"--url", "ftp://127.0.0.1/healthz"}, code: 2, stderr: "want an http:// or https:// URL"},
		{name: "URL without host", args: []string{"--url", "/healthz"}, code: 2, stderr: "want an http:// or https:// URL"},
		{name: "zero timeout", args: []string{"--timeout", "0s"}, code: 2, stderr: "must be positive"},
		{name: "argument", args: []string{"extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{name: "help", args: []string{"--help"}, code: 0, stdout: "Usage of recallrelay healthcheck"},
		{name: "bad flag", args: []string{"--no-such-flag"}, code: 2, stderr: "-token-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			start := time.Now()
			code := run(append([]string{"healthcheck"}, tc.args...), &out, &errOut)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errOut.String())
			}
			if tc.stdout != "" && !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.stdout)
			}
			if tc.stderr != "" && !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.stderr)
			}
			if tc.code == 0 && errOut.Len() > 0 {
				t.Errorf("success wrote to stderr: %s", errOut.String())
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

// The default URL is the admin listener's default address.
func TestHealthcheckDefaultURL(t *testing.T) {
	if want := "http://" + admin.DefaultListen + "/healthz"; defaultHealthURL != want {
		t.Errorf("defaultHealthURL = %s, want %s (admin.DefaultListen)", defaultHealthURL, want)
	}
	var out, errOut bytes.Buffer
	run([]string{"healthcheck", "--help"}, &out, &errOut)
	if !strings.Contains(out.String(), defaultHealthURL) {
		t.Errorf("--help does not show the default URL:\n%s", out.String())
	}
}

// Against the relay's own admin listener: /healthz without the token,
// /readyz with it, and the relay's reason when it is not ready.
func TestHealthcheckAdminListener(t *testing.T) {
	const token = "admin-token-for-probes"
	var ready atomic.Bool
	ready.Store(true)
	srv, err := admin.New(admin.Config{Listen: "127.0.0.1:0", Token: token, Ready: func(context.Context) error {
		if ready.Load() {
			return nil
		}
		return errors.New("store: connection refused")
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr()
	check := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(append([]string{"healthcheck"}, args...), &out, &errOut); code != wantCode || !strings.Contains(errOut.String(), wantErr) {
			t.Errorf("%v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", args, code, wantCode, wantErr, out.String(), errOut.String())
		}
	}
	check(0, "", "--url", base+"/healthz")
	check(1, "401 Unauthorized", "--url", base+"/readyz")
	check(0, "", "--url", base+"/readyz", "--token-file", tokenFile)
	ready.Store(false)
	check(1, "503 Service Unavailable: not ready: store: connection refused", "--url", base+"/readyz", "--token-file", tokenFile)
	check(0, "", "--url", base+"/healthz")
}
