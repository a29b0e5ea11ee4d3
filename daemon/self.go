package daemon

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/warren-p2p/warren/punch"
)

// selfGuard is the exit's forward.Self: it keeps every peer, whatever its
// grant, away from this daemon's own listeners and from the broadcast
// addresses of this machine's networks.
type selfGuard struct {
	d *Daemon

	// mu guards the fields below: the interface prefixes, listed at most
	// once per addrPollInterval, as each stream and each new datagram
	// destination asks.
	mu       sync.Mutex
	prefixes []netip.Prefix
	listed   time.Time
}

// Reserved implements forward.Self.
func (g *selfGuard) Reserved(network string, a netip.AddrPort) bool {
	return reservedTarget(network, a, g.d.ownListeners(), g.localPrefixes())
}

func (g *selfGuard) localPrefixes() []netip.Prefix {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.listed) >= addrPollInterval {
		// On failure the last list stays: better slightly old than none.
		if p, err := punch.InterfacePrefixes(); err == nil {
			g.prefixes, g.listed = p, time.Now()
		}
	}
	return g.prefixes
}

// ownListener is one socket the daemon accepts on.
type ownListener struct {
	network string // "tcp" or "udp"
	addr    netip.AddrPort
}

// ownListeners lists the daemon's sockets that take connections from
// anyone who reaches them: the punch port, the admin API (status and
// metrics), and the SOCKS5 and forward listeners as bound right now.
func (d *Daemon) ownListeners() []ownListener {
	var out []ownListener
	add := func(a net.Addr) {
		switch a := a.(type) {
		case *net.TCPAddr:
			out = append(out, ownListener{"tcp", a.AddrPort()})
		case *net.UDPAddr:
			out = append(out, ownListener{"udp", a.AddrPort()})
		}
	}
	if d.acceptor != nil {
		out = append(out, ownListener{"tcp", netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(d.acceptor.Port()))})
	}
	if a := d.AdminAddr(); a != nil {
		add(a)
	}
	for _, a := range d.listeners.SocksAddrs() {
		add(a)
	}
	for _, a := range d.listeners.ForwardAddrs() {
		add(a)
	}
	return out
}

// reservedTarget reports whether sending over network to a reaches one of
// listeners or a whole network of prefixes (this machine's interface
// prefixes). A listener is reached on its port through any loopback
// address, any of this machine's addresses or its own bound address: the
// kernel delivers to a wildcard-bound socket whichever local address is
// dialled. The broadcast address of each IPv4 prefix (of /30 and wider)
// reaches every host on it.
func reservedTarget(network string, a netip.AddrPort, listeners []ownListener, prefixes []netip.Prefix) bool {
	ip := a.Addr().Unmap()
	local := ip.IsLoopback()
	for _, p := range prefixes {
		if p.Addr() == ip {
			local = true
		}
		if ip.Is4() && p.Addr().Is4() && p.Bits() <= 30 && lastAddr(p) == ip {
			return true
		}
	}
	for _, l := range listeners {
		if l.network == network && l.addr.Port() == a.Port() && (local || l.addr.Addr().Unmap() == ip) {
			return true
		}
	}
	return false
}

// lastAddr returns the highest address of IPv4 prefix p: its broadcast.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}
