package session

import (
	"net/netip"
	"testing"
	"time"

	"github.com/warren-p2p/warren/punch"
)

// TestPlans: each real path's plan, the policy Race follows for it.
func TestPlans(t *testing.T) {
	lan := []netip.AddrPort{netip.MustParseAddrPort("192.168.1.7:4000")}
	loop := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:4000")}
	v6 := []netip.AddrPort{netip.MustParseAddrPort("203.0.113.9:4000"), netip.MustParseAddrPort("[2001:db8:2::2]:4000")}
	none := punch.Strategy{TCP: punch.TCPNone, UDP: punch.RoleNone}
	for _, tc := range []struct {
		name string
		path Path
		s    Session
		want Plan
	}{
		{"relay waits for direct paths", &Relay{}, Session{Strategy: punch.Strategy{TCP: punch.TCPSimultaneous, UDP: punch.RoleDirect}}, Plan{Delay: relayDelay}},
		{"relay waits even with only UDP to try", &Relay{}, Session{Strategy: punch.Strategy{TCP: punch.TCPNone, UDP: punch.RoleDirect}}, Plan{Delay: relayDelay}},
		{"relay at once when nothing direct is expected", &Relay{}, Session{Strategy: none}, Plan{}},
		{"relay after a head start for a peer on our LAN", &Relay{}, Session{Strategy: none, PeerLAN: lan}, Plan{Delay: lanHeadStart}},
		{"direct paths go alone to a peer's global IPv6 endpoint, whatever the NATs", &Relay{}, Session{Strategy: none, PeerLAN: v6}, Plan{Delay: relayDelay}},
		{"a loopback LAN endpoint gets no head start", &Relay{}, Session{Strategy: none, PeerLAN: loop}, Plan{}},
		{"relay at once from a restricted network", &Relay{}, Session{Strategy: punch.Strategy{TCP: punch.TCPSimultaneous, UDP: punch.RoleDirect},
			PeerLAN: lan, SelfRestricted: "tcp443"}, Plan{}},
		{"relay first where it won last time", &Relay{}, Session{Strategy: punch.Strategy{TCP: punch.TCPSimultaneous, UDP: punch.RoleDirect}, RelayFirst: true}, Plan{}},
		{"relay at once to a restricted network", &Relay{}, Session{Strategy: punch.Strategy{UDP: punch.RoleDirect}, PeerRestricted: "proxy"}, Plan{}},
		{"connect-fixed TCP reaches TCPProbed", &TCP{}, Session{Strategy: punch.Strategy{TCP: punch.TCPConnectFixed}}, Plan{Reaches: TCPProbed}},
		{"other TCP roles reach no stage", &TCP{}, Session{Strategy: punch.Strategy{TCP: punch.TCPSprayWindow}}, Plan{}},
		{"UDP probes after TCP, held back at most a second", &UDP{}, Session{}, Plan{After: TCPProbed, AtMost: time.Second}},
		{"inbound TCP is passive", &Inbound{}, Session{}, Plan{Passive: true}},
		// The server's round trip estimate stretches the waits for what
		// takes round trips, and nothing on a path of no delay.
		{"relay waits 10 round trips longer on a long path", &Relay{}, Session{RTT: 90 * time.Millisecond,
			Strategy: punch.Strategy{TCP: punch.TCPSimultaneous, UDP: punch.RoleDirect}}, Plan{Delay: relayDelay + 900*time.Millisecond}},
		{"relay's LAN head start does not scale", &Relay{}, Session{RTT: time.Second, Strategy: none, PeerLAN: lan}, Plan{Delay: lanHeadStart}},
		{"UDP waits for TCPProbed 2 round trips longer", &UDP{}, Session{RTT: 90 * time.Millisecond}, Plan{After: TCPProbed, AtMost: 1180 * time.Millisecond}},
		{"a broken estimate is capped", &Relay{}, Session{RTT: time.Hour,
			Strategy: punch.Strategy{TCP: punch.TCPSimultaneous}}, Plan{Delay: relayDelay + 10*maxTimerRTT}},
	} {
		if got := tc.path.Plan(&tc.s); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
