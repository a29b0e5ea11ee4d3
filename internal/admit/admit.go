package admit

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Accept backoff after an error, as net/http's Server waits: from
// minBackoff, doubling, up to maxBackoff. A flood can make accepts fail and
// succeed in turn: runs of errors are logged at most once per warnEvery.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
	warnEvery  = 10 * time.Second
)

// Serve accepts on ln until ctx ends and passes each connection to handle,
// which must not block (it starts the connection's goroutine). An accept
// error other than ln's end makes Serve wait (5 ms, doubling up to 1 s)
// and try again: running out of file descriptors must not close the port
// for good. It logs the first error of a run of them (at most one run per
// 10 s) and, once accepting works again, how many there were. Serve
// closes ln when ctx ends and then returns nil; if ln is closed while ctx
// runs, it returns net.ErrClosed.
func Serve(ctx context.Context, ln net.Listener, log logrus.FieldLogger, handle func(net.Conn)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wait time.Duration
	var lastWarn time.Time
	failures, logged := 0, false
	for {
		c, err := ln.Accept()
		if err == nil {
			if logged {
				log.WithField("failures", failures).Info("accepting connections again")
			}
			wait, failures, logged = 0, 0, false
			handle(c)
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, net.ErrClosed) {
			return err
		}
		if failures == 0 && time.Since(lastWarn) >= warnEvery {
			log.WithError(err).Warn("accept failed; retrying with backoff")
			lastWarn, logged = time.Now(), true
		}
		failures++
		wait = min(max(2*wait, minBackoff), maxBackoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Gate counts connections that have not yet proved anything, by source
// address and in all, and refuses places beyond its caps. IPv6 sources
// count by /64, since one host holds a whole /64. It is safe for
// concurrent use.
type Gate struct {
	perSource, total int

	// mu guards the fields below.
	mu       sync.Mutex
	bySource map[netip.Prefix]int
	n        int
}

// NewGate returns a Gate that admits at most perSource connections from
// one source and total in all (each at least 1).
func NewGate(perSource, total int) *Gate {
	return &Gate{perSource: max(perSource, 1), total: max(total, 1), bySource: make(map[netip.Prefix]int)}
}

// Admit takes a place for a connection from remote. If ok, release gives
// the place back (it may be called more than once); if not, the caller
// should close the connection at once.
func (g *Gate) Admit(remote net.Addr) (release func(), ok bool) {
	src := sourceOf(remote)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n >= g.total || g.bySource[src] >= g.perSource {
		return nil, false
	}
	g.n++
	g.bySource[src]++
	var once sync.Once
	return func() { once.Do(func() { g.release(src) }) }, true
}

func (g *Gate) release(src netip.Prefix) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.bySource[src]--; g.bySource[src] <= 0 {
		delete(g.bySource, src)
	}
}

// Pending returns how many places are taken.
func (g *Gate) Pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// sourceOf is the prefix a connection's source counts under: its IPv4
// address, or its IPv6 /64. Addresses that are not IP (pipes, Unix
// sockets) all count as one source.
func sourceOf(a net.Addr) netip.Prefix {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	case *net.UDPAddr:
		ip = a.AddrPort().Addr()
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		}
	}
	ip = ip.Unmap().WithZone("")
	switch {
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.Prefix{}
}

// Listener applies a Gate to every connection ln accepts, for its whole
// life: a connection over the caps is closed at once and Accept goes on
// to the next. It suits servers that own their accept loop (net/http) and
// whose connections prove nothing; the server's own timeouts are their
// handshake deadline.
type Listener struct {
	net.Listener
	Gate *Gate
}

// Accept returns the next connection the Gate admits.
func (l Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, ok := l.Gate.Admit(c.RemoteAddr())
		if !ok {
			c.Close()
			continue
		}
		return &gatedConn{Conn: c, release: release}, nil
	}
}

// gatedConn gives its place back when closed.
type gatedConn struct {
	net.Conn
	release func()
}

func (c *gatedConn) Close() error {
	c.release()
	return c.Conn.Close()
}
