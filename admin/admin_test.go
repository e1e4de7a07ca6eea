package admin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/recallrelay/recallrelay/admin"
	"github.com/recallrelay/recallrelay/internal/looptest"
	"github.com/recallrelay/recallrelay/metrics"
	"github.com/recallrelay/recallrelay/relay"
	"github.com/recallrelay/recallrelay/store"
	"github.com/recallrelay/recallrelay/store/storetest"
)

const token = "s3cret-token"

// start starts an admin server from cfg on a free loopback port; it shuts
// down when the test ends.
func start(t *testing.T, cfg admin.Config) *admin.Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	s, err := admin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

// get requests url with method, with the bearer token when bearer is set
// (bearer "Basic …" is sent as it is), and returns the status and the body.
func get(t *testing.T, c *http.Client, method, url, bearer string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(bearer, "Basic "):
		req.Header.Set("Authorization", bearer)
	case bearer != "":
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// With a token every route but /healthz needs it; without one, none does.
func TestAuth(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := metrics.New(reg, metrics.Options{}); err != nil {
		t.Fatal(err)
	}
	ready := func(context.Context) error { return nil }
	page := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "status page") })
	withToken := start(t, admin.Config{Token: token, Gatherer: reg, Ready: ready, Status: page, Pprof: true})
	open := start(t, admin.Config{Gatherer: reg, Ready: ready, Status: page})
	basic := func(user, password string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	}

	tests := []struct {
		name   string
		srv    *admin.Server
		method string
		path   string
		bearer string
		want   int
	}{
		{"healthz without token", withToken, "GET", "/healthz", "", 200},
		{"readyz without token", withToken, "GET", "/readyz", "", 401},
		{"metrics without token", withToken, "GET", "/metrics", "", 401},
		{"metrics with a wrong token", withToken, "GET", "/metrics", "s3cret-tokem", 401},
		{"metrics with a prefix of the token", withToken, "GET", "/metrics", "s3cret", 401},
		{"metrics with the token", withToken, "GET", "/metrics", token, 200},
		{"readyz with the token", withToken, "GET", "/readyz", token, 200},
		{"HEAD metrics with the token", withToken, "HEAD", "/metrics", token, 200},
		{"POST metrics", withToken, "POST", "/metrics", token, 405},
		{"unknown path", withToken, "GET", "/debug/vars", token, 404},
		{"status page without token", withToken, "GET", "/", "", 401},
		{"status page with the token", withToken, "GET", "/", token, 200},
		{"status page, basic auth with the token as password", withToken, "GET", "/", basic("admin", token), 200},
		{"metrics, basic auth, any user name", withToken, "GET", "/metrics", basic("", token), 200},
		{"status page, basic auth with a wrong password", withToken, "GET", "/", basic("admin", "s3cret"), 401},
		{"status page, basic auth with the token as user name", withToken, "GET", "/", basic(token, ""), 401},
		{"no token configured: status page", open, "GET", "/", "", 200},
		{"pprof without token", withToken, "GET", "/debug/pprof/", "", 401},
		{"pprof with the token", withToken, "GET", "/debug/pprof/", token, 200},
		{"pprof not enabled", open, "GET", "/debug/pprof/", "", 404},
		{"status page is only /", open, "GET", "/index.html", "", 404},
		{"no token configured: metrics", open, "GET", "/metrics", "", 200},
		{"no token configured: readyz", open, "GET", "/readyz", "", 200},
		{"no token configured: healthz", open, "GET", "/healthz", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, httpClient, tt.method, "http://"+tt.srv.Addr()+tt.path, tt.bearer)
			if code != tt.want {
				t.Errorf("%s %s: %d %q, want %d", tt.method, tt.path, code, body, tt.want)
			}
			if tt.path == "/healthz" && strings.TrimSpace(body) != "ok" {
				t.Errorf("healthz body %q", body)
			}
			if tt.path == "/" && code == 200 && body != "status page" {
				t.Errorf("/ body %q, want the status page", body)
			}
		})
	}
}

// A listener other hosts can reach needs a token, or InsecureOpen.
func TestNewRefusesOpenListener(t *testing.T) {
	tests := []struct {
		listen  string
		token   string
		open    bool
		wantErr bool
	}{
		{"127.0.0.1:0", "", false, false},
		{"[::1]:9025", "", false, false},
		{"localhost:9025", "", false, false},
		{"", "", false, false}, // DefaultListen
		{"0.0.0.0:9025", "", false, true},
		{":9025", "", false, true},
		{"192.0.2.1:9025", "", false, true},
		{"0.0.0.0:9025", token, false, false},
		{"0.0.0.0:9025", "", true, false},
		{"127.0.0.1:0", "two words", false, true},
		{"no-port", "", false, true},
	}
	for _, tt := range tests {
		_, err := admin.New(admin.Config{Listen: tt.listen, Token: tt.token, InsecureOpen: tt.open})
		if (err != nil) != tt.wantErr {
			t.Errorf("New(listen %q, token %q, insecure_open %v): %v, want error %v", tt.listen, tt.token, tt.open, err, tt.wantErr)
		}
	}
}

// /readyz follows the relay: 503 with the reason while its Redis is down,
// 200 again once Redis is back, 503 once the relay shuts down. /healthz
// stays 200 throughout.
func TestReadyzFollowsTheStore(t *testing.T) {
	srv := storetest.StartRedisServer(t)
	rcfg, err := store.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rcfg.KeyPrefix = "admintest"
	rs, err := store.NewRedis(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	vendor, tenant := looptest.Recorder(t, nil), looptest.Recorder(t, nil)
	cfg := looptest.Config(t, tenant.Addr(), looptest.Hop("vendor", vendor.Addr()))
	cfg.Store = rs
	r := looptest.Start(t, cfg)
	a := start(t, admin.Config{Ready: r.Ready, ReadyTimeout: time.Second})
	base := "http://" + a.Addr()

	expect := func(path string, want int, wantBody string) {
		t.Helper()
		code, body := get(t, httpClient, "GET", base+path, "")
		if code != want || !strings.Contains(body, wantBody) {
			t.Fatalf("%s: %d %q, want %d with %q", path, code, body, want, wantBody)
		}
	}
	expect("/readyz", 200, "ok")

	srv.Stop()
	expect("/readyz", 503, "store")
	expect("/healthz", 200, "ok")

	srv.Start()
	// go-redis dials again on the next command: the first checks after
	// the restart may still fail.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, httpClient, "GET", base+"/readyz", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after Redis came back: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	expect("/readyz", 503, "shutting down")
	expect("/healthz", 200, "ok")
}

// /metrics serves the relay's metrics: after one message, its count.
func TestMetricsAfterMessage(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	var r *relay.Relay
	m, err := metrics.New(reg, metrics.Options{Sessions: func() map[string]int { return r.Sessions() }})
	if err != nil {
		t.Fatal(err)
	}
	vendor, tenant := looptest.Recorder(t, nil), looptest.Recorder(t, nil)
	cfg := looptest.Config(t, tenant.Addr(), looptest.Hop("vendor", vendor.Addr()))
	cfg.Observers = []relay.Observer{m}
	r = looptest.Start(t, cfg)
	a := start(t, admin.Config{Token: token, Gatherer: reg, Ready: r.Ready})

	sendMessage(t, r.TenantAddr())

	code, body := get(t, httpClient, "GET", "http://"+a.Addr()+"/metrics", token)
	if code != 200 {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	for _, want := range []string{
		`recallrelay_messages_total{code_class="2xx",leg="tenant",matched_by="n/a",result="delivered"} 1`,
		`recallrelay_message_duration_seconds_count{leg="tenant"} 1`,
		`recallrelay_sessions_open{leg="return"} 0`,
		`recallrelay_build_info{`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "@") {
		t.Error("/metrics shows an address")
	}
}

// With a TLS configuration the server speaks HTTPS.
func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	a := start(t, admin.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, Token: token})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
	}}
	if code, body := get(t, c, "GET", "https://"+a.Addr()+"/readyz", token); code != 200 {
		t.Fatalf("https /readyz: %d %q", code, body)
	}
	if code, _ := get(t, c, "GET", "https://"+a.Addr()+"/readyz", ""); code != 401 {
		t.Fatalf("https /readyz without token: %d", code)
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "admin.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// sendMessage sends one message through the tenant leg and expects 250.
func sendMessage(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c := textproto.NewConn(conn)
	step := func(want int, line string) {
		t.Helper()
		if line != "" {
			if err := c.PrintfLine("%s", line); err != nil {
				t.Fatal(err)
			}
		}
		if code, msg, _ := c.ReadResponse(0); code != want {
			t.Fatalf("%q: %d %s, want %d", line, code, msg, want)
		}
	}
	step(220, "")
	step(250, "EHLO client.test")
	step(250, "MAIL FROM:<ann@contoso.com>")
	step(250, "RCPT TO:<bob@fabrikam.example>")
	step(354, "DATA")
	step(250, "From: ann@contoso.com\r\nTo: bob@fabrikam.example\r\nSubject: test\r\nMessage-ID: <m1@contoso.com>\r\n\r\nHello.\r\n.")
	step(221, "QUIT")
}
