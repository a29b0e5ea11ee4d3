package punch

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// LocalCandidates lists this machine's interface addresses with port, the
// endpoints a peer on the same LAN can reach directly. Loopback is left
// out (a peer's Scope refuses it): two daemons on one host find each other
// at the addresses the rendezvous server observes.
func LocalCandidates(port uint16) ([]netip.AddrPort, error) {
	prefixes, err := InterfacePrefixes()
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, p := range prefixes {
		ip := p.Addr()
		// Link-local addresses need a zone the peer cannot know.
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
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
