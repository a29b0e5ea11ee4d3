package daemon

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
	"github.com/warren-p2p/warren/session"
)

func TestDescribePunch(t *testing.T) {
	s := &session.Session{PeerNAT: punch.NAT{}, Strategy: punch.Strategy{Name: "random/random"}}
	for _, tc := range []struct {
		name string
		rep  session.Report
		why  string
	}{
		{"direct", session.Report{Winner: session.PathTCP, Outcomes: []session.Outcome{{Path: session.PathTCP, Started: true, Offered: 1}}}, ""},
		{"relayed", session.Report{Winner: session.PathRelay, Outcomes: []session.Outcome{
			{Path: session.PathTCP, Started: true, Err: errors.New("no answer from the peer's predicted ports")},
			{Path: session.PathUDP, Started: false},
			{Path: session.PathRelay, Started: true, Offered: 1},
		}}, "direct-tcp: no answer from the peer's predicted ports; direct-udp: the race ended before its turn"},
		{"relay expected", session.Report{Winner: session.PathRelay, Outcomes: []session.Outcome{
			{Path: session.PathTCP, Started: true},
			{Path: session.PathRelay, Started: true, Offered: 1},
		}}, "symrand↔symrand: no direct path exists between these NATs; direct-tcp: offered no connection"},
		{"relay only", session.Report{Winner: session.PathRelay, Outcomes: []session.Outcome{{Path: session.PathRelay, Started: true, Offered: 1}}},
			"no direct path allowed here (transports)"},
	} {
		s := *s
		if tc.name == "relay expected" {
			symrand := punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent, Allocation: punch.AllocationRandom,
				PublicIP: netip.MustParseAddr("192.0.2.1")}
			s.SelfNAT, s.PeerNAT = symrand, symrand
			s.Strategy = punch.Choose(symrand, symrand)
			s.Strategy.Name = "random/random"
		}
		info := describePunch(&s, tc.rep)
		if info.why != tc.why || info.strategy != "random/random" || info.peerNAT == "" {
			t.Errorf("%s: %+v, want why %q", tc.name, info, tc.why)
		}
	}
}

// A restricted network, here or at the peer, explains a relay first.
func TestDescribePunchRestricted(t *testing.T) {
	rep := session.Report{Winner: session.PathRelay, Outcomes: []session.Outcome{
		{Path: session.PathUDP, Started: true, Err: errors.New("session probe: i/o timeout")},
		{Path: session.PathRelay, Started: true, Offered: 1},
	}}
	for _, tc := range []struct {
		self, peer, why string
	}{
		{rendezvous.RestrictedTCP443, "", "no UDP here; TCP 443 only; direct-udp: session probe: i/o timeout"},
		{"", rendezvous.RestrictedProxy, "only an HTTP proxy at the peer; direct-udp: session probe: i/o timeout"},
		{rendezvous.RestrictedNoUDP, "something newer", "no UDP here (no probe answered); restricted network at the peer; direct-udp: session probe: i/o timeout"},
	} {
		s := &session.Session{SelfRestricted: tc.self, PeerRestricted: tc.peer}
		if info := describePunch(s, rep); info.why != tc.why {
			t.Errorf("self %q, peer %q: why %q, want %q", tc.self, tc.peer, info.why, tc.why)
		}
	}
}
