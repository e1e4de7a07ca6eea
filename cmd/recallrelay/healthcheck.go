package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// defaultHealthURL is the admin listener's liveness endpoint at its
// default address (admin.DefaultListen).
const defaultHealthURL = "http://127.0.0.1:9025/healthz"

// healthBodyLimit bounds how much of a failing answer's body goes into the
// reason: /readyz says why in one short line.
const healthBodyLimit = 512

// cmdHealthcheck asks the admin listener whether the relay is healthy, for
// container health checks and exec probes in images that have no curl
// (distroless, scratch). It sends one GET to --url, with the bearer token of
// --token-file when given, and succeeds (exit 0) on 200 only; anything else
// (another status, a refused connection, a timeout, a redirect) is a
// failure (exit 1) with the reason: for a 503 from /readyz, the relay's own.
func cmdHealthcheck(args []string, stdout io.Writer) error {
	fs := newFlags("healthcheck")
	rawURL := fs.String("url", defaultHealthURL, "admin endpoint to GET: /healthz (alive) or /readyz (ready for mail; needs the token when admin.token_file is set)")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on the whole request")
	tokenFile := fs.String("token-file", "", "file holding the admin bearer token (admin.token_file), sent as Authorization: Bearer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	u, err := url.Parse(*rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Errorf("--url %q: want an http:// or https:// URL with a host", *rawURL)}
	}
	if *timeout <= 0 {
		return usageError{fmt.Errorf("--timeout %s: must be positive", *timeout)}
	}
	token := ""
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		// Read as the relay reads admin.token_file: surrounding blanks and
		// line breaks are not part of the token.
		token = strings.TrimSpace(string(b))
		if token == "" {
			return fmt.Errorf("--token-file: %s is empty", *tokenFile)
		}
	}
	status, reason, err := healthGet(u.String(), token, *timeout)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u.Redacted(), reason)
	}
	_, err = fmt.Fprintf(stdout, "GET %s: %s\n", u.Redacted(), reason)
	return err
}

// healthGet sends one GET and returns the status code and its description
// ("200 OK: ok", "503 Service Unavailable: not ready: …"). It never uses a
// proxy (a probe checks this host, not a path through a proxy) and never
// follows a redirect (a health endpoint answers itself).
func healthGet(target, token string, timeout time.Duration) (int, string, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("User-Agent", "recallrelay-healthcheck")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, "", fmt.Errorf("GET %s: no answer within %s", target, timeout)
		}
		// *url.Error already names the method and the URL.
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, healthBodyLimit))
	if err != nil && resp.StatusCode == http.StatusOK {
		return 0, "", fmt.Errorf("GET %s: reading the answer: %w", target, err)
	}
	reason := resp.Status
	if text := strings.Join(strings.Fields(string(body)), " "); text != "" {
		reason += ": " + text
	}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
		reason += " (redirect to " + loc + " not followed)"
	}
	return resp.StatusCode, reason, nil
}
