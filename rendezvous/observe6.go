package rendezvous

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// IPv6 observation. A daemon that registered over IPv4 but has a global
// IPv6 address has the server observe that address too: it opens a TCP
// connection from its shared port to one of the server's IPv6 endpoints
// (Message.Observe6, from registered) and sends observeMagic + the
// observe token of its registration (16 bytes, Message.Observe) + a zero
// byte, 21 bytes like a TCP session probe. The server records the
// connection's source as the peer's IPv6 endpoint, answers "ip:port\n"
// and closes. The token crossed only the peer's TLS control connection,
// so no one else can set a peer's IPv6 address; TCP's handshake proves the
// source. A peer's own interface addresses are only claims: the observed
// one is what makes its IPv6 addresses a punch target (punch.Scope).
const observeMagic = "WRP\x04"

// observeToken binds an IPv6 observation to one registration.
type observeToken [16]byte

func newObserveToken() observeToken {
	var t observeToken
	rand.Read(t[:])
	return t
}

func (t observeToken) String() string { return hex.EncodeToString(t[:]) }

// parseObserveToken reads a token as Message.Observe carries it.
func parseObserveToken(s string) (observeToken, bool) {
	var t observeToken
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(t) {
		return t, false
	}
	copy(t[:], b)
	return t, true
}

// globalUnicast6 is the IPv6 global unicast range (as punch.Scope's).
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// isGlobal6 reports whether a is a global unicast IPv6 address.
func isGlobal6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && globalUnicast6.Contains(a)
}

// serveObserve answers an IPv6 observation: records the source of raw as
// the IPv6 endpoint of the peer whose registration holds tok. An unknown
// token (a registration since gone, a guess) or an IPv4 source records
// nothing and is answered all the same: the answer is only the source.
func (s *Server) serveObserve(raw net.Conn, tok observeToken) {
	from, err := netip.ParseAddrPort(raw.RemoteAddr().String())
	if err != nil {
		return
	}
	from = unmap(from)
	if isGlobal6(from.Addr()) {
		s.mu.Lock()
		p := s.observers[tok]
		s.mu.Unlock()
		if p != nil {
			p.mu.Lock()
			p.observed6 = from
			p.mu.Unlock()
			p.log.WithField("observed6", from).Debug("peer's IPv6 endpoint observed")
		}
	}
	raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(raw, from.String()+"\n")
}

// addr6 is p's IPv6 endpoint as the server observed it: its control
// connection's if that came over IPv6, else its observation's; invalid
// if neither.
func (p *peerConn) addr6() netip.AddrPort {
	if isGlobal6(p.observed.Addr()) {
		return p.observed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.observed6
}

// ipv6Endpoints lists where peers send their IPv6 observation, for a
// control listener bound at a: a itself if it is a global IPv6 address;
// every global IPv6 address of this host's interfaces, at a's port, if it
// is a wildcard that takes IPv6 ("[::]:port", ":port"); else none.
func ipv6Endpoints(a net.Addr) []string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return nil
	}
	if isGlobal6(ap.Addr()) {
		return []string{ap.String()}
	}
	if ap.Addr() != netip.IPv6Unspecified() {
		return nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && isGlobal6(ip) {
				out = append(out, netip.AddrPortFrom(ip, ap.Port()).String())
			}
		}
	}
	return out
}

// ProbeObserve sends an IPv6 observation with token tok over conn (dialled
// from the shared port to one of the server's IPv6 endpoints) and returns
// the endpoint the server saw. It closes conn.
func ProbeObserve(ctx context.Context, conn net.Conn, tok string) (netip.AddrPort, error) {
	defer conn.Close()
	t, ok := parseObserveToken(tok)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%w: malformed observe token", ErrProtocol)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(append(append([]byte(observeMagic), t[:]...), 0)); err != nil {
		return netip.AddrPort{}, fmt.Errorf("ipv6 observation: %w", err)
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 64)).ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("ipv6 observation: %w", err)
	}
	return netip.ParseAddrPort(strings.TrimSpace(line))
}

// observeWait bounds an IPv6 observation: a registration waits for it.
// Long enough for one lost SYN (resent after 1 s), as a network's first
// IPv6 packet often is while neighbour discovery runs.
const observeWait = 3 * time.Second

// observe6 has the server observe this peer's IPv6 endpoint, if the
// server offers it (registered m) and lan, the LAN endpoints just
// reported, hold a global IPv6 address: one endpoint after the other
// until one answers, within observeWait in all. What it saw is kept for
// Observed6; a failure only costs the IPv6 path, and is logged.
func (c *Client) observe6(ctx context.Context, m *Message, lan []string) {
	c.mu.Lock()
	c.observed6 = netip.AddrPort{}
	c.mu.Unlock()
	if c.cfg.DialPlain == nil || m.Observe == "" || !slices.ContainsFunc(lan, func(s string) bool {
		a, err := netip.ParseAddrPort(s)
		return err == nil && isGlobal6(a.Addr())
	}) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, observeWait)
	defer cancel()
	var err error
	for _, ep := range m.Observe6 {
		var conn net.Conn
		if conn, err = c.cfg.DialPlain(ctx, ep); err != nil {
			continue
		}
		var seen netip.AddrPort
		if seen, err = ProbeObserve(ctx, conn, m.Observe); err == nil {
			c.mu.Lock()
			c.observed6 = seen
			c.mu.Unlock()
			c.cfg.Log.WithFields(logrus.Fields{"server": ep, "observed6": seen}).Debug("rendezvous server observed our IPv6 endpoint")
			return
		}
	}
	if err != nil {
		c.cfg.Log.WithError(err).Info("IPv6 not observed by the rendezvous server: peers reach this daemon over IPv4 only")
	}
}

// Observed6 returns this peer's IPv6 endpoint as the server last saw it
// (its control connection's if that is IPv6, else its IPv6 observation's),
// or the zero AddrPort.
func (c *Client) Observed6() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	if isGlobal6(c.observed.Addr()) {
		return c.observed
	}
	return c.observed6
}
