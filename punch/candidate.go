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
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	var out []Candidate
	for _, a := range addrs {
		p, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(p.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
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

// OnLink returns the endpoints of addrs whose address is inside one of this
// machine's interface prefixes. Only those are worth trying as LAN
// candidates: an address off every local link is reached through a router,
// and through a NAT each attempt takes a port of its own, which spoils the
// port prediction the punch depends on for a sequential NAT.
func OnLink(addrs []netip.AddrPort) []netip.AddrPort {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var prefixes []netip.Prefix
	for _, a := range ifaddrs {
		if p, ok := a.(*net.IPNet); ok {
			ip, _ := netip.AddrFromSlice(p.IP)
			ones, _ := p.Mask.Size()
			prefixes = append(prefixes, netip.PrefixFrom(ip.Unmap(), ones).Masked())
		}
	}
	return onLink(addrs, prefixes)
}

func onLink(addrs []netip.AddrPort, prefixes []netip.Prefix) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range addrs {
		for _, p := range prefixes {
			if p.Contains(a.Addr().Unmap()) {
				out = append(out, a)
				break
			}
		}
	}
	return out
}
