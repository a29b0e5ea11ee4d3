package natlab

import (
	"context"
	"fmt"
	"net/netip"
)

// IPv6 addressing of a lab built with Config.IPv6 (documentation prefix
// 2001:db8::/32); see the package documentation.
var (
	internet6 = netip.MustParsePrefix("2001:db8::/64")
	hub6      = netip.MustParseAddr("2001:db8::1")
	server6   = []netip.Addr{netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::3")}
)

// publicAddr6 is the internet-segment address of the router WAN or Open
// host whose IPv4 address is v4: 2001:db8::1:N for 203.0.113.N.
func publicAddr6(v4 netip.Addr) netip.Addr {
	b := internet6.Addr().As16()
	b[13], b[15] = 1, v4.As4()[3]
	return netip.AddrFrom16(b)
}

// sitePrefix6 is site i's routed LAN prefix, 2001:db8:i::/64.
func sitePrefix6(i int) netip.Prefix {
	b := internet6.Addr().As16()
	b[4], b[5] = byte(i>>8), byte(i)
	return netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

// hostAddr6 is the address in prefix p with the IPv4 address v4's last
// octet as interface ID: 2001:db8:i::N for 10.i.0.N.
func hostAddr6(p netip.Prefix, v4 netip.Addr) netip.Addr {
	b := p.Addr().As16()
	b[15] = v4.As4()[3]
	return netip.AddrFrom16(b)
}

// enableIPv6Locked turns IPv6 on for device dev of namespace ns (the lab
// turns it off on every device it makes), gives it addr with no duplicate
// address detection (a lab address is unique, and detection would hold
// the address back for a second), and with gw valid routes everything
// else via gw.
func (l *Lab) enableIPv6Locked(ctx context.Context, ns, dev string, addr netip.Prefix, gw netip.Addr) error {
	err := writeSysctls(ns, []sysctl{
		{key: "net/ipv6/conf/" + dev + "/disable_ipv6", value: "0"},
		{key: "net/ipv6/conf/" + dev + "/accept_dad", value: "0"},
		{key: "net/ipv6/conf/" + dev + "/accept_ra", value: "0"},
	})
	if err != nil {
		return fmt.Errorf("ipv6 on %s: %w", ns, err)
	}
	if err := ipn(ctx, ns, "-6", "addr", "add", addr.String(), "dev", dev, "nodad"); err != nil {
		return err
	}
	if gw.IsValid() {
		return ipn(ctx, ns, "-6", "route", "add", "default", "via", gw.String(), "dev", dev)
	}
	return nil
}

// routeSite6Locked makes site s's router route its LAN's IPv6 prefix,
// with the stateful firewall home routers ship (RFC 6092): whatever the
// LAN opens may answer, nothing from outside may open anything; ICMPv6
// errors of open flows pass (packet too big among them), and no address is
// translated. The internet's namespace learns the route to the prefix.
func (l *Lab) routeSite6Locked(ctx context.Context, s *Site, r *Host, wan4 netip.Addr) error {
	wan6, lan6 := publicAddr6(wan4), sitePrefix6(s.index)
	gw := netip.PrefixFrom(lan6.Addr().Next(), lan6.Bits())
	if err := writeSysctls(r.name, []sysctl{{key: "net/ipv6/conf/all/forwarding", value: "1"}}); err != nil {
		return fmt.Errorf("router %s: %w", r.name, err)
	}
	if err := l.enableIPv6Locked(ctx, r.name, wanDev, netip.PrefixFrom(wan6, internet6.Bits()), hub6); err != nil {
		return err
	}
	if err := l.enableIPv6Locked(ctx, r.name, lanDev, gw, netip.Addr{}); err != nil {
		return err
	}
	if err := nft(ctx, r.name, firewall6Rules); err != nil {
		return fmt.Errorf("router %s: nft: %w", r.name, err)
	}
	if err := ipn(ctx, l.inet, "-6", "route", "add", lan6.String(), "via", wan6.String(), "dev", hubDev); err != nil {
		return err
	}
	r.addAddrs(wan6, gw.Addr())
	return nil
}

// firewall6Rules is a home router's IPv6 firewall: stateful, no NAT66.
const firewall6Rules = `table ip6 natlab6 {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "` + lanDev + `" accept
	}
}
`

// addHost6Locked gives host h of site s its IPv6 address: on the site's
// routed prefix behind its router, or on the internet segment for an Open
// site. Double NATs stay IPv4-only.
func (l *Lab) addHost6Locked(ctx context.Context, s *Site, h *Host) error {
	v4 := h.Addr()
	switch {
	case s.kind == Open:
		a := publicAddr6(v4)
		if err := l.enableIPv6Locked(ctx, h.name, "eth0", netip.PrefixFrom(a, internet6.Bits()), hub6); err != nil {
			return err
		}
		h.addAddrs(a)
	case s.inner == "":
		p := sitePrefix6(s.index)
		a := hostAddr6(p, v4)
		if err := l.enableIPv6Locked(ctx, h.name, "eth0", netip.PrefixFrom(a, p.Bits()), p.Addr().Next()); err != nil {
			return err
		}
		h.addAddrs(a)
	}
	return nil
}

// build6Locked gives the internet segment and the server their IPv6
// addresses; the internet's namespace routes between the sites' prefixes.
func (l *Lab) build6Locked(ctx context.Context, srv *Host) error {
	if err := writeSysctls(l.inet, []sysctl{{key: "net/ipv6/conf/all/forwarding", value: "1"}}); err != nil {
		return fmt.Errorf("internet: %w", err)
	}
	if err := l.enableIPv6Locked(ctx, l.inet, hubDev, netip.PrefixFrom(hub6, internet6.Bits()), netip.Addr{}); err != nil {
		return err
	}
	if err := l.enableIPv6Locked(ctx, srv.name, "eth0", netip.PrefixFrom(server6[0], internet6.Bits()), hub6); err != nil {
		return err
	}
	for _, a := range server6[1:] {
		// Deprecated (preferred_lft 0), as a secondary IPv4 address is
		// not the primary: the kernel picks ::2 as the source of what
		// the server sends unbound, such as the answers of a UDP socket
		// on [::] (else it took the address added last, and the sites'
		// firewalls dropped answers from an address they never sent to).
		if err := ipn(ctx, srv.name, "-6", "addr", "add", netip.PrefixFrom(a, internet6.Bits()).String(), "dev", "eth0", "nodad", "preferred_lft", "0"); err != nil {
			return err
		}
	}
	srv.addAddrs(server6...)
	return nil
}

// Addr6 returns the host's first IPv6 address, or the zero Addr in a lab
// without IPv6 (and on a double NAT's hosts, which have none).
func (h *Host) Addr6() netip.Addr {
	for _, a := range h.Addrs() {
		if a.Is6() {
			return a
		}
	}
	return netip.Addr{}
}

// addAddrs appends addresses to the host's list.
func (h *Host) addAddrs(a ...netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addrs = append(h.addrs, a...)
}

// IPv6Only makes a site (of a lab with Config.IPv6) reach the internet
// over IPv6 alone, as on an access network that gives out no IPv4 (and
// here no NAT64 either): its hosts keep their IPv4 LAN address, so hosts
// of the site reach each other over it, but have no IPv4 route beyond the
// LAN. The site's NAT kind still describes its router, which its hosts
// then never use. Not for Open sites or double NATs.
func IPv6Only() SiteOption { return func(o *siteOptions) { o.v6only = true } }

// IPv6Only reports whether the site was made with IPv6Only.
func (s *Site) IPv6Only() bool { return s.v6only }
