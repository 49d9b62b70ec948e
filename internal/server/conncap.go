package server

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/httpapi"
)

// capListener caps the connections one client address holds open at once.
// Without it a single address could take every descriptor the process has
// (a slow body or a silent keep-alive each holds one), and /healthz would
// stop answering for everyone. A stream leaves the count once it is handed
// to the event loop (its connection is closed there and a duplicate of the
// socket kept): streams have caps of their own, per user and per process.
// Trusted proxies are exempt, since every client behind them shares their
// address. An IPv6 address counts with the rest of its /64
// (httpapi.LimitPrefix).
type capListener struct {
	net.Listener
	max     int
	exempt  []netip.Prefix
	mu      sync.Mutex
	open    map[netip.Prefix]int
	refused func() // counts a refusal, for a metric
}

func newCapListener(ln net.Listener, max int, exempt []netip.Prefix, refused func()) net.Listener {
	if max <= 0 {
		return ln
	}
	return &capListener{Listener: ln, max: max, exempt: exempt, open: map[netip.Prefix]int{}, refused: refused}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		addr := tc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		if l.isExempt(addr) {
			return c, nil
		}
		key := httpapi.LimitPrefix(addr)
		l.mu.Lock()
		n := l.open[key]
		if n >= l.max {
			l.mu.Unlock()
			if l.refused != nil {
				l.refused()
			}
			go refuseConn(c)
			continue
		}
		l.open[key] = n + 1
		l.mu.Unlock()
		cc := &cappedConn{TCPConn: tc}
		cc.release = func() {
			l.mu.Lock()
			if l.open[key]--; l.open[key] <= 0 {
				delete(l.open, key)
			}
			l.mu.Unlock()
		}
		return cc, nil
	}
}

func (l *capListener) isExempt(a netip.Addr) bool {
	for _, p := range l.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// refuseConn answers 503 in the contract's error shape and closes, within a
// second: the accept loop never waits on a client that does not read.
func refuseConn(c net.Conn) {
	const body = `{"error":{"code":"unavailable","message":"too many connections from this address"}}`
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 5\r\n" +
		"Cache-Control: no-store\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body))
	_ = c.Close()
}

// cappedConn gives its place back when it is closed. It embeds the
// *net.TCPConn so that the event loop can still take its descriptor
// (syscall.Conn).
type cappedConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *cappedConn) Close() error {
	c.once.Do(c.release)
	return c.TCPConn.Close()
}
