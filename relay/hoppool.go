package relay

import (
	"crypto/tls"
	"io"
	"sync"
	"time"
)

// HopPool configures the pool of idle next-hop connections: connections
// that ended their last transaction cleanly are kept, greeted (and with
// TLS started), for the next session to the same next hop, so that a
// sender that opens a connection per message does not cost a connect,
// greeting, EHLO and TLS handshake towards the vendor or the tenant each
// time. Zero values take the values of DefaultHopPool.
type HopPool struct {
	// MaxIdle bounds the idle connections kept per next hop; negative
	// turns the pool off (every session dials its own).
	MaxIdle int
	// IdleTimeout is how long an idle connection is kept; it should be
	// well below the next hops' own idle timeouts (Postfix: 300s).
	IdleTimeout time.Duration
}

// DefaultHopPool returns the pool defaults: the one place they are
// written.
func DefaultHopPool() HopPool {
	return HopPool{MaxIdle: 32, IdleTimeout: 30 * time.Second}
}

func (p HopPool) withDefaults() HopPool {
	d := DefaultHopPool()
	if p.MaxIdle == 0 {
		p.MaxIdle = d.MaxIdle
	}
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = d.IdleTimeout
	}
	return p
}

// hopPool keeps idle next-hop connections (see HopPool). A connection goes
// back only when nothing went wrong on it: no error of any kind, no
// transaction open, no data being written, not cut. One taken from the
// pool is checked first: a connection the next hop has closed, or on
// which it sent anything unasked (a 421 before closing), is discarded.
// Safe for concurrent use.
type hopPool struct {
	cfg HopPool
	// sessions resumes TLS sessions with next hops, for the connections
	// the pool could not supply.
	sessions tls.ClientSessionCache

	mu sync.Mutex
	// idle holds the connections by the NextHop they were made for, all
	// of it: one is reused only for the same settings, timeouts included.
	idle   map[NextHop][]*hopConn // oldest first
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

func newHopPool(cfg HopPool) *hopPool {
	return &hopPool{cfg: cfg.withDefaults(), sessions: tls.NewLRUClientSessionCache(64), idle: map[NextHop][]*hopConn{}}
}

// dial returns a connection to h: an idle one from the pool when fresh
// allows it and one is alive, else a new one.
func (p *hopPool) dial(h NextHop, fresh bool) (*hopConn, error) {
	if !fresh {
		if hc := p.take(h); hc != nil {
			return hc, nil
		}
	}
	return dialHop(h, p.sessions)
}

// take pops the newest idle connection for k that is still alive.
func (p *hopPool) take(k NextHop) *hopConn {
	now := time.Now()
	for {
		p.mu.Lock()
		conns := p.idle[k]
		if len(conns) == 0 {
			p.mu.Unlock()
			return nil
		}
		hc := conns[len(conns)-1]
		p.idle[k] = conns[:len(conns)-1]
		p.mu.Unlock()
		if now.Sub(hc.idleSince) < p.cfg.IdleTimeout && hc.alive() {
			hc.reused = true
			return hc
		}
		hc.raw.Close()
	}
}

// put keeps hc for reuse when it is clean and there is room, and closes
// it otherwise.
func (p *hopPool) put(hc *hopConn) {
	if !hc.poolable() || p.cfg.MaxIdle < 0 {
		hc.close()
		return
	}
	k := hc.hop
	p.mu.Lock()
	if p.closed || len(p.idle[k]) >= p.cfg.MaxIdle {
		p.mu.Unlock()
		hc.retire()
		return
	}
	hc.idleSince = time.Now()
	p.idle[k] = append(p.idle[k], hc)
	p.mu.Unlock()
}

// start runs the janitor that closes connections idle for IdleTimeout.
func (p *hopPool) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop != nil || p.closed {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	p.stop, p.done = stop, done
	go func() {
		defer close(done)
		t := time.NewTicker(p.cfg.IdleTimeout / 2)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.expire(time.Now())
			}
		}
	}()
}

// expire closes the connections idle since before now - IdleTimeout.
func (p *hopPool) expire(now time.Time) {
	var old []*hopConn
	p.mu.Lock()
	for k, conns := range p.idle {
		keep := conns[:0]
		for _, hc := range conns {
			if now.Sub(hc.idleSince) >= p.cfg.IdleTimeout {
				old = append(old, hc)
			} else {
				keep = append(keep, hc)
			}
		}
		if len(keep) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = keep
		}
	}
	p.mu.Unlock()
	for _, hc := range old {
		hc.retire()
	}
}

// flush closes every idle connection (after a reload: the next hops'
// settings may have changed).
func (p *hopPool) flush() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[NextHop][]*hopConn{}
	p.mu.Unlock()
	for _, conns := range idle {
		for _, hc := range conns {
			hc.retire()
		}
	}
}

// close stops the janitor, closes every idle connection and makes put
// close what it is given from then on.
func (p *hopPool) close() {
	p.mu.Lock()
	p.closed = true
	stop, done := p.stop, p.done
	p.stop = nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	p.flush()
}

// retire ends a clean connection between transactions without waiting on
// the next hop: it writes QUIT (above TLS when there is TLS) and closes,
// leaving the 221 unread. The next hop answered everything sent on the
// connection, so its send buffer is empty and the write does not wait.
// Closing idle connections on shutdown, reload or expiry thus costs no
// round trips, where close would wait up to CommandTimeout per reply.
func (hc *hopConn) retire() {
	io.WriteString(hc.w, "QUIT\r\n")
	hc.raw.Close()
}

// poolable reports whether hc may serve another session: nothing went
// wrong on it and it is between transactions.
func (hc *hopConn) poolable() bool {
	return !hc.broken && !hc.sawErr && !hc.inTx && !hc.dataOpen && !hc.interrupted.Load()
}

// alive reports whether an idle connection is still open and silent: the
// next hop has neither closed it nor sent anything unasked (a 421 before
// closing, a TLS alert). See peekAlive.
func (hc *hopConn) alive() bool { return peekAlive(hc.raw) }
