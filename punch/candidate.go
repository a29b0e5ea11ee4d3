package punch

import (
	"fmt"
	"net"
	"net/netip"
)

// Kind says where a candidate endpoint came from.
type Kind string

const (
	// KindLAN is an address of one of the peer's own interfaces.
	KindLAN Kind = "lan"
	// KindPublic is the peer's endpoint as the rendezvous server saw it.
	KindPublic Kind = "public"
	// KindPredicted is an endpoint a sequential NAT is expected to give
	// the peer's next connection.
	KindPredicted Kind = "predicted"
)

// Candidate is an endpoint at which the peer may be reachable.
type Candidate struct {
	Addr netip.AddrPort
	Kind Kind
}

func (c Candidate) String() string { return fmt.Sprintf("%s/%s", c.Addr, c.Kind) }

// LocalCandidates lists this machine's interface addresses with port, the
// candidates a peer on the same LAN (or host) can reach directly. Loopback
// is included: it is how two daemons on one host find each other.
func LocalCandidates(port uint16) ([]Candidate, error) {
	prefixes, err := InterfacePrefixes()
	if err != nil {
		return nil, err
	}
	var out []Candidate
	for _, p := range prefixes {
		ip := p.Addr()
		// Link-local addresses need a zone the peer cannot know.
		if ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		out = append(out, Candidate{Addr: netip.AddrPortFrom(ip, port), Kind: KindLAN})
	}
	return out, nil
}

// Dedup returns cands without repeated addresses, keeping the first.
func Dedup(cands []Candidate) []Candidate {
	seen := make(map[netip.AddrPort]bool, len(cands))
	out := cands[:0:0]
	for _, c := range cands {
		if !c.Addr.IsValid() || seen[c.Addr] {
			continue
		}
		seen[c.Addr] = true
		out = append(out, c)
	}
	return out
}

// OnLink returns the endpoints of addrs worth trying as direct candidates:
// those inside one of this machine's interface prefixes, and global IPv6
// addresses (which need no NAT) when this machine has global IPv6 itself.
// Other addresses are reached through a router, and through a NAT each
// attempt takes a port of its own, which spoils the port prediction the
// punch depends on for a sequential NAT.
func OnLink(addrs []netip.AddrPort) []netip.AddrPort {
	prefixes, err := InterfacePrefixes()
	if err != nil {
		return nil
	}
	return onLink(addrs, prefixes)
}

// InterfacePrefixes returns this machine's interface addresses with their
// prefix lengths (IPv4 unmapped).
func InterfacePrefixes() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		p, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(p.IP)
		if !ok {
			continue
		}
		ones, _ := p.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

func onLink(addrs []netip.AddrPort, prefixes []netip.Prefix) []netip.AddrPort {
	global6 := false
	for _, p := range prefixes {
		global6 = global6 || isGlobal6(p.Addr())
	}
	var out []netip.AddrPort
	for _, a := range addrs {
		if global6 && isGlobal6(a.Addr()) {
			out = append(out, a)
			continue
		}
		for _, p := range prefixes {
			if p.Masked().Contains(a.Addr().Unmap()) {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// isGlobal6 reports whether a is a global unicast IPv6 address (2000::/3).
func isGlobal6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && netip.MustParsePrefix("2000::/3").Contains(a)
}
