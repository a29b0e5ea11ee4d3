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
	mapped := netip.MustParseAddrPort("203.0.113.10:41000")
	randomPM, conePM := random, cone
	randomPM.MappedTCP, conePM.MappedTCP = mapped, mapped
	randomUDPPM := random
	randomUDPPM.MappedUDP = mapped
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
		// A port mapping opens TCP where the NATs alone leave it nothing
		// to do, and changes nothing where they can punch it.
		{"random+pm/random", randomPM, random, RoleNone, RoleNone, TCPAcceptMapped, TCPConnectMapped},
		{"random+pm/random+pm", randomPM, randomPM, RoleNone, RoleNone, TCPConnectMapped, TCPConnectMapped},
		{"seq/random+pm", seq, randomPM, RoleNone, RoleNone, TCPConnectMapped, TCPAcceptMapped},
		{"cone+pm/random", conePM, random, RoleSprayRandom, RoleManySockets, TCPAcceptMapped, TCPConnectMapped},
		{"cone+pm/cone", conePM, cone, RoleDirect, RoleDirect, TCPSimultaneous, TCPSimultaneous},
		{"random+udp-pm/random", randomUDPPM, random, RoleDirect, RoleDirect, TCPNone, TCPNone},
		{"seq/random+udp-pm", seq, randomUDPPM, RoleDirect, RoleDirect, TCPNone, TCPNone},
		{"cone/random+udp-pm", cone, randomUDPPM, RoleSprayRandom, RoleManySockets, TCPNone, TCPNone},
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
