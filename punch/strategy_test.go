package punch

import (
	"net/netip"
	"testing"
)

func TestChooseIsConsistent(t *testing.T) {
	open := NAT{Behind: false}
	cone := NAT{Behind: true, Mapping: MappingEndpointIndependent, Allocation: AllocationPreserved}
	seq := NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 1}
	random := NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationRandom}
	unknown := NAT{}
	for _, tc := range []struct {
		name             string
		self, peer       NAT
		wantUDP, peerUDP UDPRole
		wantTCP, peerTCP TCPRole
	}{
		{"open/open", open, open, RoleDirect, RoleDirect, TCPSimultaneous, TCPSimultaneous},
		{"cone/cone", cone, cone, RoleDirect, RoleDirect, TCPSimultaneous, TCPSimultaneous},
		{"open/seq", open, seq, RoleSprayWindow, RoleDirect, TCPSimultaneous, TCPSimultaneous},
		{"cone/seq", cone, seq, RoleSprayWindow, RoleDirect, TCPSprayWindow, TCPConnectFixed},
		{"cone/random", cone, random, RoleSprayRandom, RoleManySockets, TCPNone, TCPNone},
		{"open/random", open, random, RoleSprayRandom, RoleManySockets, TCPSimultaneous, TCPSimultaneous},
		{"seq/seq", seq, seq, RoleSprayWindow, RoleSprayWindow, TCPNone, TCPNone},
		{"seq/random", seq, random, RoleNone, RoleNone, TCPNone, TCPNone},
		{"random/random", random, random, RoleNone, RoleNone, TCPNone, TCPNone},
		{"unknown/cone", unknown, cone, RoleDirect, RoleDirect, TCPSimultaneous, TCPSimultaneous},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := Choose(tc.self, tc.peer), Choose(tc.peer, tc.self)
			if a.UDP != tc.wantUDP || b.UDP != tc.peerUDP {
				t.Errorf("roles %s/%s, want %s/%s", a.UDP, b.UDP, tc.wantUDP, tc.peerUDP)
			}
			if a.TCP != tc.wantTCP || b.TCP != tc.peerTCP {
				t.Errorf("tcp roles %s/%s, want %s/%s", a.TCP, b.TCP, tc.wantTCP, tc.peerTCP)
			}
		})
	}
}

func TestOnLink(t *testing.T) {
	prefixes := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	in := []netip.AddrPort{
		netip.MustParseAddrPort("10.1.0.3:1"),    // same LAN
		netip.MustParseAddrPort("10.2.0.2:1"),    // another site's LAN: through the NAT
		netip.MustParseAddrPort("127.0.0.1:1"),   // this host
		netip.MustParseAddrPort("[::1]:1"),       // this host
		netip.MustParseAddrPort("[fd00::2]:1"),   // not ours
		netip.MustParseAddrPort("203.0.113.9:1"), // public
	}
	got := onLink(in, prefixes)
	want := []string{"10.1.0.3:1", "127.0.0.1:1", "[::1]:1"}
	if len(onLink([]netip.AddrPort{netip.MustParseAddrPort("[2001:db8::9]:1")}, prefixes)) != 0 {
		t.Fatal("global IPv6 candidate kept though this host has no global IPv6")
	}
	withV6 := append(prefixes, netip.MustParsePrefix("2001:db8:1::/64"))
	if len(onLink([]netip.AddrPort{netip.MustParseAddrPort("[2001:db8:2::9]:1")}, withV6)) != 1 {
		t.Fatal("global IPv6 candidate dropped though this host has global IPv6")
	}
	if len(got) != len(want) {
		t.Fatalf("onLink = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("onLink = %v, want %v", got, want)
		}
	}
}
