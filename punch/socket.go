package punch

import (
	"context"
	"net"
	"strconv"
	"time"
)

// keepAlive makes the kernel probe an idle punched connection every 2 s.
// The probes keep NAT mappings from expiring and, after a NAT forgets
// them (rebinding), are what reopens the side that has nothing to send:
// its peer's packets are dropped at its NAT until it sends something, so
// the idle time is how long new streams can stall after a rebinding. Five
// unanswered probes (10 s) end the connection, before the link's own
// keepalive would notice. A probe is an empty segment; two seconds cost
// nothing worth saving.
func keepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: 2 * time.Second, Count: 5}
}

// SafeMSS is the largest TCP segment payload warren's TCP connections
// send or accept: what fits a 1280-byte packet (the IPv6 minimum MTU,
// which QUIC's and warren's UDP links fit too) with an IPv6 header. A
// path whose MTU is smaller than the hosts' links (PPPoE, tunnels, mobile
// carriers) is meant to say so with ICMP "fragmentation needed"; where
// that is dropped (a PMTU black hole, RFC 2923) full-sized segments
// vanish and a connection stalls at its first large write, the TLS
// handshake's (Go's ClientHello with a post-quantum key share is over
// 1,200 bytes). Linux finds such holes only with net.ipv4.tcp_mtu_probing,
// a system setting that is off by default, so warren announces a small
// MSS itself, as Tailscale runs its tunnel at 1280 bytes. On a clean
// 1500-byte path it costs about 1% of goodput (headers on a fifth more
// packets) and little CPU: the kernel's segmentation offloads move 64 KiB
// at a time either way.
const SafeMSS = 1220

// Listen opens a TCP listener on addr whose port other sockets from this
// package may share. Use port 0 to pick a free port, then share it.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: reuseControl, KeepAliveConfig: keepAlive()}
	return lc.Listen(ctx, "tcp", addr)
}

// Dialer returns a dialer whose connections leave from localPort, shared
// with Listen and other dialers.
func Dialer(localPort int) *net.Dialer {
	return &net.Dialer{
		LocalAddr:       &net.TCPAddr{Port: localPort},
		Control:         reuseControl,
		KeepAliveConfig: keepAlive(),
	}
}

// DialFrom connects to addr from localPort.
func DialFrom(ctx context.Context, localPort int, addr string) (net.Conn, error) {
	return Dialer(localPort).DialContext(ctx, "tcp", addr)
}

// PortOf returns the port of a TCP address.
func PortOf(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}
