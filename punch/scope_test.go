package punch

import (
	"errors"
	"net/netip"
	"testing"
)

func TestScopeCheck(t *testing.T) {
	self := []netip.Prefix{
		netip.MustParsePrefix("10.1.0.5/24"),
		netip.MustParsePrefix("127.0.0.1/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("2001:db8:1::5/64"),
		netip.MustParsePrefix("fe80::1/64"),
	}
	lan := []netip.Addr{
		netip.MustParseAddr("10.1.0.7"),      // on our LAN
		netip.MustParseAddr("10.9.0.7"),      // the peer's own LAN, behind its NAT
		netip.MustParseAddr("127.0.0.1"),     // its loopback
		netip.MustParseAddr("10.1.0.5"),      // our own address
		netip.MustParseAddr("10.1.0.255"),    // our LAN's broadcast
		netip.MustParseAddr("2001:db8:7::9"), // global IPv6 far from it
		netip.MustParseAddr("2001:db8:9::9"), // global IPv6 in its observed /64
		netip.MustParseAddr("fe80::2"),
		netip.MustParseAddr("224.0.0.1"),
	}
	remote := Scope{Self: self, Public: netip.MustParseAddr("198.51.100.7"), LAN: lan}
	remote6 := Scope{Self: self, Public: netip.MustParseAddr("2001:db8:9::1"), LAN: lan}
	// Seen over IPv4 at its NAT, and over IPv6 (its observation).
	dual := Scope{Self: self, Public: netip.MustParseAddr("198.51.100.7"), Public6: netip.MustParseAddr("2001:db8:9::1"), LAN: lan}
	local := Scope{Self: self, Public: netip.MustParseAddr("127.0.0.1"), LAN: lan, SameHost: true}
	liar := Scope{Self: self, Public: netip.MustParseAddr("127.0.0.1"), LAN: lan} // a server that says the peer is here
	for _, tc := range []struct {
		name  string
		scope Scope
		to    string
		want  error
	}{
		{"the observed address", remote, "198.51.100.7:4000", nil},
		{"the observed address, any port", remote, "198.51.100.7:65535", nil},
		{"the observed address, IPv4-mapped", remote, "[::ffff:198.51.100.7]:4000", nil},
		{"port zero", remote, "198.51.100.7:0", ErrTargetSpecial},
		{"a LAN address on our link", remote, "10.1.0.7:4000", nil},
		{"a LAN address behind the peer's NAT", remote, "10.9.0.7:4000", ErrTargetForeign},
		{"a LAN address the peer did not report", remote, "10.1.0.8:4000", ErrTargetForeign},
		{"a third party", remote, "203.0.113.1:53", ErrTargetForeign},
		{"loopback claimed as LAN", remote, "127.0.0.1:4000", ErrTargetSpecial},
		{"IPv6 loopback", remote, "[::1]:4000", ErrTargetSpecial},
		{"our own address claimed as LAN", remote, "10.1.0.5:4000", ErrTargetSelf},
		{"our LAN's broadcast", remote, "10.1.0.255:4000", ErrTargetSpecial},
		{"limited broadcast", remote, "255.255.255.255:4000", ErrTargetSpecial},
		{"multicast", remote, "224.0.0.1:4000", ErrTargetSpecial},
		{"link-local", remote, "[fe80::2]:4000", ErrTargetSpecial},
		{"unspecified", remote, "0.0.0.0:4000", ErrTargetSpecial},
		{"global IPv6 far from the observed address", remote6, "[2001:db8:7::9]:4000", ErrTargetForeign},
		{"global IPv6 in the observed /64", remote6, "[2001:db8:9::9]:4000", nil},
		{"global IPv6 LAN of a peer seen over IPv4", remote, "[2001:db8:9::9]:4000", ErrTargetForeign},
		{"a dual-stack peer's observed IPv6 address", dual, "[2001:db8:9::1]:4000", nil},
		{"a dual-stack peer's global IPv6 LAN in its observed /64", dual, "[2001:db8:9::9]:4000", nil},
		{"a dual-stack peer's global IPv6 LAN far from it", dual, "[2001:db8:7::9]:4000", ErrTargetForeign},
		{"a dual-stack peer's IPv4 public address", dual, "198.51.100.7:4000", nil},
		{"our own IPv6 address as the observed one", Scope{Self: self, Public: netip.MustParseAddr("198.51.100.7"), Public6: netip.MustParseAddr("2001:db8:1::5")}, "[2001:db8:1::5]:4000", ErrTargetSelf},
		{"the server and peer on this host", local, "127.0.0.1:4000", nil},
		{"on this host, loopback as LAN only", local, "[::1]:4000", ErrTargetSpecial},
		{"a server that says the peer is on this host", liar, "127.0.0.1:4000", ErrTargetSpecial},
		{"our own address as the observed one", Scope{Self: self, Public: netip.MustParseAddr("10.1.0.5")}, "10.1.0.5:4000", ErrTargetSelf},
		{"the zero scope", Scope{}, "198.51.100.7:4000", ErrTargetForeign},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.scope.Check(netip.MustParseAddrPort(tc.to))
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Check(%s) = %v, want %v", tc.to, err, tc.want)
			}
		})
	}
}

func TestScopeFilter(t *testing.T) {
	s := Scope{Self: []netip.Prefix{netip.MustParsePrefix("10.1.0.5/24")}, Public: netip.MustParseAddr("198.51.100.7"),
		LAN: []netip.Addr{netip.MustParseAddr("10.1.0.7"), netip.MustParseAddr("127.0.0.1")}}
	in := []netip.AddrPort{
		netip.MustParseAddrPort("10.1.0.7:1"), netip.MustParseAddrPort("127.0.0.1:1"),
		netip.MustParseAddrPort("10.1.0.7:1"), netip.MustParseAddrPort("198.51.100.7:2"), {},
	}
	got := s.Filter(in)
	if len(got) != 2 || got[0].String() != "10.1.0.7:1" || got[1].String() != "198.51.100.7:2" {
		t.Fatalf("Filter = %v", got)
	}
}

// FuzzScopeCheck: whatever the claims, an allowed target is the peer's
// observed address or one of its LAN addresses, and never loopback,
// link-local, multicast, broadcast, unspecified or this machine's own
// address, unless the server and so the peer are on this host and the
// target is the observed address.
func FuzzScopeCheck(f *testing.F) {
	f.Add([]byte{198, 51, 100, 7}, []byte{10, 1, 0, 7}, []byte{10, 1, 0, 7}, uint16(4000), false)
	f.Add([]byte{127, 0, 0, 1}, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 1}, uint16(1), true)
	f.Add(netip.MustParseAddr("2001:db8:9::1").AsSlice(), netip.MustParseAddr("2001:db8:9::9").AsSlice(),
		netip.MustParseAddr("2001:db8:9::9").AsSlice(), uint16(53), false)
	f.Add([]byte{10, 1, 0, 5}, []byte{10, 1, 0, 255}, []byte{10, 1, 0, 255}, uint16(9), false)
	self := []netip.Prefix{netip.MustParsePrefix("10.1.0.5/24"), netip.MustParsePrefix("127.0.0.1/8"),
		netip.MustParsePrefix("2001:db8:1::5/64"), netip.MustParsePrefix("fe80::1/64")}
	f.Fuzz(func(t *testing.T, public, lan, target []byte, port uint16, sameHost bool) {
		pub, _ := netip.AddrFromSlice(public)
		l, _ := netip.AddrFromSlice(lan)
		to, ok := netip.AddrFromSlice(target)
		if !ok {
			return
		}
		s := Scope{Self: self, Public: pub, LAN: []netip.Addr{l}, SameHost: sameHost}
		if s.Check(netip.AddrPortFrom(to, port)) != nil {
			return
		}
		ip := to.Unmap()
		if port == 0 || (ip != pub.Unmap() && ip != l.Unmap()) {
			t.Fatalf("%v allowed: neither the observed %v nor the LAN %v", ip, pub, l)
		}
		if sameHost && ip == pub.Unmap() {
			return
		}
		if special(ip) || s.own(ip) || s.directedBroadcast(ip) {
			t.Fatalf("%v allowed (observed %v, LAN %v)", ip, pub, l)
		}
	})
}
