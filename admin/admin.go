// Package admin serves the relay's operational HTTP endpoints: a status
// page for a browser, metrics for Prometheus and health checks for a load
// balancer or an orchestrator.
//
//	GET /         the status page, Config.Status (404 without one)
//	GET /metrics  the Prometheus exposition of Config.Gatherer
//	GET /debug/pprof/  Go's profiles, when Config.Pprof
//	GET /healthz  200 "ok" while the process serves HTTP (liveness)
//	GET /readyz   200 "ok" when Config.Ready returns nil, else 503 with
//	              its reason (readiness: send mail here or not)
//
// The server listens on loopback by default (DefaultListen). With a Token,
// every route but /healthz requires "Authorization: Bearer <token>" or,
// for a browser, basic authentication with the token as the password and
// any user name (401 otherwise), so /healthz stays usable by probes that
// cannot send one; a
// listener other hosts can reach is refused without a Token unless
// Config.InsecureOpen accepts that, as the SMTP listeners' open-listener
// check does.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// DefaultListen is the admin listener's default address: loopback only.
const DefaultListen = "127.0.0.1:9025"

// DefaultReadyTimeout bounds one readiness check.
const DefaultReadyTimeout = 2 * time.Second

// Timeouts of the HTTP server: a scrape of a few hundred series takes
// milliseconds, so these only bound misbehaving clients.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	// maxScrapes bounds concurrent /metrics requests (503 beyond).
	maxScrapes = 4
)

// Config configures a Server.
type Config struct {
	// Listen is host:port; default DefaultListen. "127.0.0.1:0" picks a
	// free port (see Server.Addr).
	Listen string
	// TLS, when set, makes the server speak HTTPS only.
	TLS *tls.Config
	// Token, when set, is the bearer token every route but /healthz
	// requires. It is compared in constant time.
	Token string
	// InsecureOpen allows a Listen address other hosts can reach without a
	// Token: anyone who reaches it then reads the metrics and the
	// readiness reason.
	InsecureOpen bool
	// Gatherer is what /metrics serves; nil leaves /metrics out (404).
	Gatherer prometheus.Gatherer
	// Status is what / serves (package status's Page); nil leaves it out.
	Status http.Handler
	// Pprof serves Go's profiles under /debug/pprof/ (net/http/pprof),
	// behind the token like every route but /healthz. Off by default: a
	// CPU profile costs CPU while it runs.
	Pprof bool
	// Ready says whether the relay should be sent mail (relay.Relay.Ready);
	// nil: ready whenever the server serves.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds each Ready call; default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Log receives the server's errors.
	Log zerolog.Logger
}

// Server is the admin HTTP server.
type Server struct {
	cfg   Config
	token [sha256.Size]byte // of cfg.Token, so the comparison's time does not depend on its length
	srv   *http.Server

	mu   sync.Mutex
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
}

// New checks cfg and returns a Server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin: listen address %q: %w", cfg.Listen, err)
	}
	if cfg.Token == "" && !cfg.InsecureOpen && !loopback(host) {
		return nil, fmt.Errorf("admin: listen address %s is reachable from other hosts and no token is set: set a token, listen on loopback, or accept the risk explicitly (insecure_open)", cfg.Listen)
	}
	if strings.ContainsAny(cfg.Token, " \t\r\n") {
		return nil, errors.New("admin: the token contains white space")
	}
	s := &Server{cfg: cfg}
	if cfg.Token != "" {
		s.token = sha256.Sum256([]byte(cfg.Token))
	}
	errorLog := log.New(logWriter{cfg.Log.With().Str("component", "admin").Logger()}, "", 0)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	if cfg.Status != nil {
		mux.Handle("GET /{$}", s.authorized(cfg.Status))
	}
	if cfg.Pprof {
		mux.Handle("GET /debug/pprof/", s.authorized(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/cmdline", s.authorized(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("GET /debug/pprof/profile", s.authorized(http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/symbol", s.authorized(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("GET /debug/pprof/trace", s.authorized(http.HandlerFunc(pprof.Trace)))
	}
	mux.Handle("GET /readyz", s.authorized(http.HandlerFunc(s.readyz)))
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", s.authorized(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog:            errorLog,
			ErrorHandling:       promhttp.ContinueOnError,
			MaxRequestsInFlight: maxScrapes,
			Timeout:             writeTimeout - time.Second,
		})))
	}
	s.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         cfg.TLS,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errorLog,
	}
	return s, nil
}

// loopback reports whether host names a loopback address only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Start binds the listener and serves it in the background.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("admin: already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.cfg.Listen, err)
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.ln, s.done = ln, make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Log.Error().Str("component", "admin").Err(err).Msg("admin listener stopped")
		}
	}()
	s.cfg.Log.Info().Str("component", "admin").Str("listen", ln.Addr().String()).Bool("tls", s.cfg.TLS != nil).
		Bool("token", s.cfg.Token != "").Msg("listening")
	return nil
}

// Addr is the listening address (after Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting, lets requests in progress finish until ctx is
// done, then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	if done != nil {
		<-done
	}
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

// authorized requires the token, when one is set: as a bearer token, or
// as the password of basic authentication (the user name is not checked),
// which a browser asks for.
func (s *Server) authorized(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := ""
		if scheme, t, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Bearer") {
			token = t
		} else if _, password, ok := r.BasicAuth(); ok {
			token = password
		}
		sum := sha256.Sum256([]byte(token))
		if token == "" || subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
			w.Header().Add("WWW-Authenticate", `Bearer realm="recallrelay"`)
			w.Header().Add("WWW-Authenticate", `Basic realm="recallrelay", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// healthz answers while the process serves: liveness, nothing more.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	plain(w, http.StatusOK, "ok")
}

// readyz answers 200 when Ready returns nil within ReadyTimeout, else 503
// with its reason.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadyTimeout)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	plain(w, http.StatusOK, "ok")
}

func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body + "\n"))
}

// logWriter turns net/http's and promhttp's log lines into warnings.
type logWriter struct{ log zerolog.Logger }

func (l logWriter) Write(p []byte) (int, error) {
	l.log.Warn().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
