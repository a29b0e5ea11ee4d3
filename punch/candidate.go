package punch

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// LocalCandidates lists this machine's interface addresses with port, the
// endpoints a peer on the same LAN (or host) can reach directly. Loopback
// is included: it is how two daemons on one host find each other.
func LocalCandidates(port uint16) ([]netip.AddrPort, error) {
	prefixes, err := InterfacePrefixes()
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, p := range prefixes {
		ip := p.Addr()
		// Link-local addresses need a zone the peer cannot know.
		if ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, port))
	}
	return out, nil
}

// Dedup returns addrs without invalid or repeated addresses, keeping the
// first of each.
func Dedup(addrs []netip.AddrPort) []netip.AddrPort {
	seen := make(map[netip.AddrPort]bool, len(addrs))
	out := addrs[:0:0]
	for _, a := range addrs {
		if !a.IsValid() || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
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

// InterfaceAddrs returns this machine's interface addresses (IPv4
// unmapped), sorted and without repeats.
func InterfaceAddrs() ([]netip.Addr, error) {
	prefixes, err := InterfacePrefixes()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, len(prefixes))
	for i, p := range prefixes {
		out[i] = p.Addr()
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
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

// globalUnicast6 is the IPv6 global unicast range.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// isGlobal6 reports whether a is a global unicast IPv6 address.
func isGlobal6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && globalUnicast6.Contains(a)
}
