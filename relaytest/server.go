package relaytest

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/recallrelay/recallrelay/internal/saslogin"
)

// DefaultListen is the address servers bind when none is configured: a
// random port on the IPv4 loopback interface.
const DefaultListen = "127.0.0.1:0"

// DefaultMaxLineLength is the longest line, CRLF included, the servers of
// this package accept in commands and in a message sent with DATA when none
// is configured (message data sent with BDAT is exempt; see
// TenantConfig.MaxLineLength). It is go-smtp's default, twice the 1,000
// octets RFC 5321 guarantees.
const DefaultMaxLineLength = 2000

// ErrClosed is returned by Start when Close was called before: a server of
// this package serves at most once, so that a test never talks to a
// listener it believes stopped.
var ErrClosed = errors.New("relaytest: server closed")

// closeTimeout bounds how long Close waits for connection handlers to return
// once their connections are closed.
const closeTimeout = 10 * time.Second

// smtpServer runs a go-smtp server whose connections it can close and wait
// for: go-smtp's Close does not wait for connection handlers and its
// Shutdown waits for clients to hang up, so the listener tracks connections
// itself.
type smtpServer struct {
	srv    *smtp.Server
	ln     *trackingListener
	served chan struct{}
}

// startServer serves srv in a new goroutine on l or, when l is nil, on a
// listener bound to listen.
func startServer(listen string, l net.Listener, srv *smtp.Server) (*smtpServer, error) {
	if l == nil {
		if listen == "" {
			listen = DefaultListen
		}
		var err error
		if l, err = net.Listen("tcp", listen); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", listen, err)
		}
	}
	s := &smtpServer{
		srv:    srv,
		ln:     &trackingListener{Listener: l, conns: make(map[*trackedConn]struct{})},
		served: make(chan struct{}),
	}
	go func() {
		defer close(s.served)
		_ = srv.Serve(s.ln) // returns once the listener is closed
	}()
	return s, nil
}

func (s *smtpServer) addr() string { return s.ln.Addr().String() }

// close stops accepting, closes every connection and waits for the
// connection handlers to return.
func (s *smtpServer) close() error {
	s.ln.closeAll()
	<-s.served // no Accept, hence no new handler, after this
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	// Shutdown waits for the handlers; it also closes the (already closed)
	// listener, whose error is of no interest.
	if err := s.srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("close SMTP server: connection handlers still running after %v", closeTimeout)
	}
	return nil
}

type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

func (l *trackingListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.Listener.Close()
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		l.Listener.Close()
	}
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}

// discardLogger returns the logger used when none is configured: go-smtp
// reports every broken connection, which tests provoke on purpose.
func discardLogger() smtp.Logger { return log.New(io.Discard, "", 0) }

// serverOptions configures the go-smtp server of a Tenant or a Vendor.
type serverOptions struct {
	domain                    string
	tlsConfig                 *tls.Config
	maxBytes                  int64
	maxLineLength             int // < 0: no limit
	readTimeout, writeTimeout time.Duration
	allowInsecureAuth         bool
	errorLog                  smtp.Logger
}

// newSMTPServer returns a go-smtp server with the extensions Exchange uses:
// PIPELINING, 8BITMIME, SMTPUTF8, SIZE and CHUNKING, STARTTLS with a TLS
// configuration, AUTH when the sessions offer mechanisms.
func newSMTPServer(be smtp.Backend, o serverOptions) *smtp.Server {
	srv := smtp.NewServer(be)
	srv.Domain = o.domain
	srv.TLSConfig = o.tlsConfig
	srv.EnableSMTPUTF8 = true
	srv.MaxMessageBytes = o.maxBytes
	srv.MaxRecipients = 0
	srv.ReadTimeout = o.readTimeout
	srv.WriteTimeout = o.writeTimeout
	srv.AllowInsecureAuth = o.allowInsecureAuth
	srv.ErrorLog = o.errorLog
	srv.MaxLineLength = lineLimit(o.maxLineLength) // 0 is no limit to go-smtp too
	return srv
}

// lineLimit returns the effective line limit of a configured value, 0 for
// none.
func lineLimit(configured int) int {
	switch {
	case configured < 0:
		return 0
	case configured == 0:
		return DefaultMaxLineLength
	}
	return configured
}

// readData reads a message inside DATA or BDAT. Under DATA a line over the
// limit is answered 500 5.5.2 naming the limit (go-smtp then closes the
// connection); under BDAT go-smtp lifts the limit while it reads a chunk, so
// no line of a chunk reaches here as too long. Other errors mean the client
// went away or sent too much and are returned as they are.
func readData(r io.Reader, limit int) ([]byte, error) {
	data, err := io.ReadAll(r)
	if errors.Is(err, smtp.ErrTooLongLine) {
		return nil, &smtp.SMTPError{
			Code:         500,
			EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message:      fmt.Sprintf("Line longer than %d bytes (CRLF included)", limit),
		}
	}
	return data, err
}

// queuedReply is the reply to an accepted message, naming its queue
// identifier (see queueID). go-smtp answers the code and text of an
// *SMTPError returned by Session.Data as they are, which is how a backend
// sets the text of a positive reply.
func queuedReply(id string) error {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: " + queuedMark + id}
}

// Credentials are a user name and a password for SMTP AUTH.
type Credentials struct {
	Username string
	Password string
	// Mechanism is "PLAIN" or "LOGIN"; when empty the client uses PLAIN if
	// the server offers it, else LOGIN.
	Mechanism string
}

// AcceptAnyAuth is an Auth callback for TenantConfig and VendorConfig that
// accepts every user name and password.
func AcceptAnyAuth(username, password string) error { return nil }

// PasswordAuth returns an Auth callback for TenantConfig and VendorConfig
// that accepts exactly one user name and password; anything else is
// answered 535 5.7.8.
func PasswordAuth(username, password string) func(username, password string) error {
	return func(u, p string) error {
		// Both compared, in constant time, so that the time taken tells
		// neither which one was wrong nor how much of it matched.
		uok := subtle.ConstantTimeCompare([]byte(u), []byte(username))
		pok := subtle.ConstantTimeCompare([]byte(p), []byte(password))
		if uok&pok != 1 {
			return smtp.ErrAuthFailed
		}
		return nil
	}
}

var errAuthRequired = &smtp.SMTPError{
	Code:         530,
	EnhancedCode: smtp.EnhancedCode{5, 7, 0},
	Message:      "Authentication required",
}

// authPolicy is how a server handles AUTH.
type authPolicy struct {
	check   func(username, password string) error // nil: no AUTH
	require bool                                  // refuse MAIL FROM before AUTH
}

// sessionAuth gives a session AUTH PLAIN and LOGIN (smtp.AuthSession) and
// remembers who logged in. go-smtp starts a new session after STARTTLS,
// which forgets the login as RFC 4954 requires; Session.Reset, called after
// every transaction, must not touch it.
type sessionAuth struct {
	policy authPolicy
	authed bool
	user   string
}

// AuthMechanisms implements smtp.AuthSession.
func (a *sessionAuth) AuthMechanisms() []string {
	if a.policy.check == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (a *sessionAuth) Auth(mech string) (sasl.Server, error) {
	if a.policy.check == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	switch mech {
	case sasl.Plain:
		return saslogin.NewPlainServer(a.login), nil
	case sasl.Login:
		return saslogin.NewServer(a.login), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login checks a user name and password with the policy; an error that is
// not an *smtp.SMTPError becomes 535 5.7.8.
func (a *sessionAuth) login(username, password string) error {
	if err := a.policy.check(username, password); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		return smtp.ErrAuthFailed
	}
	a.authed, a.user = true, username
	return nil
}

// checkMail refuses MAIL FROM when the policy requires AUTH and the client
// has not logged in.
func (a *sessionAuth) checkMail() error {
	if a.policy.require && !a.authed {
		return errAuthRequired
	}
	return nil
}

// serveState is the Start/Close life cycle shared by Tenant and Vendor:
// never started, serving, closed. A closed server cannot start again.
type serveState struct {
	server *smtpServer
	addr   string // kept after Close, to recognize the server's replies
	closed bool
}

// start binds listen and serves srv unless the server was started or
// closed before.
func (st *serveState) start(listen string, l net.Listener, srv *smtp.Server) error {
	if st.closed {
		return ErrClosed
	}
	if st.server != nil {
		return errors.New("already started")
	}
	s, err := startServer(listen, l, srv)
	if err != nil {
		return err
	}
	st.server, st.addr = s, s.addr()
	return nil
}

// liveAddr is the address while serving, "" otherwise.
func (st *serveState) liveAddr() string {
	if st.server == nil || st.closed {
		return ""
	}
	return st.addr
}

// markClosed records the close and returns the server to stop, nil when
// there is none or it was stopped before.
func (st *serveState) markClosed() *smtpServer {
	if st.closed {
		return nil
	}
	st.closed = true
	return st.server
}
