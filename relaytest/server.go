package relaytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// DefaultListen is the address servers bind when none is configured: a
// random port on the IPv4 loopback interface.
const DefaultListen = "127.0.0.1:0"

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

// startServer binds listen and serves srv on it in a new goroutine.
func startServer(listen string, srv *smtp.Server) (*smtpServer, error) {
	if listen == "" {
		listen = DefaultListen
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", listen, err)
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
