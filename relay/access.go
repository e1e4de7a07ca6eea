package relay

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// admission decides at connect time who may talk to a listener.
type admission struct {
	allow    []netip.Prefix // empty: everyone
	maxTotal int
	maxPerIP int

	mu    sync.Mutex
	total int
	perIP map[netip.Addr]int
}

func newAdmission(lc ListenerConfig) *admission {
	return &admission{allow: lc.AllowNets, maxTotal: lc.MaxConnections, maxPerIP: lc.MaxConnectionsPerClient, perIP: map[netip.Addr]int{}}
}

// admit returns "" and counts the connection, or the reply that refuses it.
func (a *admission) admit(ip netip.Addr) string {
	if len(a.allow) > 0 {
		ok := false
		for _, p := range a.allow {
			if p.Contains(ip) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Sprintf("554 5.7.1 %s is not allowed to use this listener", ip)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.maxTotal > 0 && a.total >= a.maxTotal {
		return fmt.Sprintf("421 4.7.0 Too many connections (%d); try again later", a.total)
	}
	if a.maxPerIP > 0 && a.perIP[ip] >= a.maxPerIP {
		return fmt.Sprintf("421 4.7.0 Too many connections from %s (%d); try again later", ip, a.perIP[ip])
	}
	a.total++
	a.perIP[ip]++
	return ""
}

func (a *admission) release(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.perIP[ip]--; a.perIP[ip] <= 0 {
		delete(a.perIP, ip)
	}
}

// guardedListener admits connections and wraps each in a guardedConn.
type guardedListener struct {
	net.Listener
	adm     *admission
	leg     string
	obs     Observer
	maxCmds int
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteAddr(c)
		if reply := l.adm.admit(ip); reply != "" {
			l.obs.ConnectionRefused(ConnectionRefused{Leg: l.leg, Client: ip.String(), Reply: reply})
			go refuse(c, reply)
			continue
		}
		gc := &guardedConn{Conn: c, maxCmds: l.maxCmds}
		gc.onClose = func() { l.adm.release(ip) }
		gc.limit = func(reason, reply string) {
			l.obs.LimitHit(LimitHit{Leg: l.leg, Client: ip.String(), Limit: reason, Reply: reply})
		}
		return gc, nil
	}
}

// refuse answers a connection the listener does not admit, then closes it.
func refuse(c net.Conn, reply string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(reply + "\r\n"))
	c.Close()
}

func remoteAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}
