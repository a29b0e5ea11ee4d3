package punch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Scope is where a punch towards one peer may send: what the rendezvous
// server observed of the peer and what the peer reported of itself, checked
// against this machine's own addresses. The peer and the server are
// trusted to say where the peer is, not to aim this daemon's packets
// anywhere else: a lying peer or server must not be able to make the
// daemon spray its own loopback, its LAN's neighbours, or a third party.
//
// The zero Scope allows nothing.
type Scope struct {
	// Self are this machine's interface addresses with their prefix
	// lengths (InterfacePrefixes).
	Self []netip.Prefix
	// Public is the peer's address as the rendezvous server observed it on
	// the peer's control connection: a TCP connection, so neither the
	// peer nor anyone on the path could have forged its source.
	Public netip.Addr
	// Public6 is the peer's IPv6 address as the server observed it on a
	// TCP connection of the peer's (its IPv6 observation, see
	// rendezvous/observe6.go) when Public is IPv4: a target like Public,
	// and the /64 its global IPv6 LAN addresses must be in. Zero: none.
	Public6 netip.Addr
	// LAN are the peer's interface addresses as it reported them. One is
	// a target only if it is on one of this machine's own links (or, for
	// global IPv6, in Public's or Public6's /64): anything else is reached through a
	// router, which is what Public is for.
	LAN []netip.Addr
	// SameHost is true when this daemon reaches the rendezvous server
	// over loopback: every peer is then on this host too, and the server
	// observes the peer at one of this machine's own addresses, which are
	// a target only then and only as Public.
	SameHost bool
}

// Errors Scope.Check returns; wrapped with the address.
var (
	ErrTargetSpecial = errors.New("loopback, link-local, multicast, broadcast or unspecified")
	ErrTargetSelf    = errors.New("one of this machine's own addresses")
	ErrTargetForeign = errors.New("neither the peer's observed address nor one of its LAN addresses on this machine's links")
)

// NewScope returns the Scope for a peer observed at public with LAN
// addresses lan, reading this machine's interfaces.
func NewScope(public netip.Addr, lan []netip.Addr, sameHost bool) (Scope, error) {
	self, err := InterfacePrefixes()
	if err != nil {
		return Scope{}, err
	}
	return Scope{Self: self, Public: public.Unmap(), LAN: lan, SameHost: sameHost}, nil
}

// Check returns nil if a punch may send to a, or why not.
func (s Scope) Check(a netip.AddrPort) error {
	ip, pub := a.Addr().Unmap(), s.Public.Unmap()
	switch {
	case !a.IsValid() || a.Port() == 0:
		return fmt.Errorf("punch target %v: %w", a, ErrTargetSpecial)
	case ip == pub && s.SameHost && (ip.IsLoopback() || s.own(ip)):
		// The server saw the peer on this host, and it is on this host.
		return nil
	case special(ip) || s.directedBroadcast(ip):
		return fmt.Errorf("punch target %v: %w", a, ErrTargetSpecial)
	case s.own(ip):
		return fmt.Errorf("punch target %v: %w", a, ErrTargetSelf)
	case ip == pub || (s.Public6.IsValid() && ip == s.Public6.Unmap()):
		return nil
	case slices.ContainsFunc(s.LAN, func(l netip.Addr) bool { return l.Unmap() == ip }) && s.reachable(ip):
		return nil
	}
	return fmt.Errorf("punch target %v: %w", a, ErrTargetForeign)
}

// Filter returns the endpoints of addrs that Check allows, without repeats.
func (s Scope) Filter(addrs []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range Dedup(addrs) {
		if s.Check(a) == nil {
			out = append(out, a)
		}
	}
	return out
}

// broadcast4 is the limited broadcast address.
var broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// special reports addresses no punch ever sends to, whoever names them.
func special(ip netip.Addr) bool {
	return ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() ||
		ip.IsInterfaceLocalMulticast() || ip == broadcast4
}

// directedBroadcast reports whether ip is the broadcast address of one of
// this machine's IPv4 subnets.
func (s Scope) directedBroadcast(ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	for _, p := range s.Self {
		if !p.Addr().Is4() || p.Bits() > 30 || !p.Masked().Contains(ip) {
			continue
		}
		b := p.Masked().Addr().As4()
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])|(1<<(32-p.Bits())-1))
		if ip == netip.AddrFrom4(b) {
			return true
		}
	}
	return false
}

func (s Scope) own(ip netip.Addr) bool {
	return slices.ContainsFunc(s.Self, func(p netip.Prefix) bool { return p.Addr().Unmap() == ip })
}

// reachable reports whether a LAN address of the peer is worth trying
// directly: inside one of this machine's (non-loopback) subnets, or a
// global IPv6 address in a /64 the server saw the peer at. Any other
// address is reached through a router, and through a NAT each attempt
// takes a port of its own, which spoils the port prediction the punch
// depends on for a sequential NAT.
func (s Scope) reachable(ip netip.Addr) bool {
	for _, p := range s.Self {
		if !p.Addr().IsLoopback() && p.Masked().Contains(ip) {
			return true
		}
	}
	for _, pub := range []netip.Addr{s.Public.Unmap(), s.Public6.Unmap()} {
		if isGlobal6(ip) && isGlobal6(pub) && netip.PrefixFrom(pub, 64).Masked().Contains(ip) {
			return true
		}
	}
	return false
}

// globalUnicast6 is the IPv6 global unicast range.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// isGlobal6 reports whether a is a global unicast IPv6 address.
func isGlobal6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && globalUnicast6.Contains(a)
}
