package session

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// TestPeerIPv6Endpoints: a peer's global IPv6 addresses are punch
// targets only with the IPv6 endpoint the server observed (Punch.Public6),
// and then only in its /64; the observed endpoint itself is one too.
func TestPeerIPv6Endpoints(t *testing.T) {
	key, _ := identity.Generate()
	peer, _ := identity.Generate()
	self, err := link.NewIdentity(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Self: self, Timeout: time.Second}
	if err := cfg.Verify(); err != nil {
		t.Fatal(err)
	}
	near := netip.MustParseAddrPort("[2001:db8:2::2]:4000")
	far := netip.MustParseAddrPort("[2001:db8:7::2]:4000")
	pu := rendezvous.Punch{Session: punch.NewSessionID().String(), Peer: peer.Public(),
		Public: netip.MustParseAddrPort("203.0.113.9:31000"), LAN: []netip.AddrPort{near, far}}
	log := logrus.New()
	without, err := New(cfg, Local{}, pu, log)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(without.PeerLAN, near) {
		t.Fatalf("claimed IPv6 %v a target with no IPv6 observed: %v", near, without.PeerLAN)
	}
	pu.Public6 = netip.MustParseAddrPort("[2001:db8:2::3]:4000") // a temporary address, say
	with, err := New(cfg, Local{}, pu, log)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{near, pu.Public6}
	if !slices.Equal(with.PeerLAN, want) {
		t.Fatalf("peer LAN %v, want %v", with.PeerLAN, want)
	}
}

// TestSameFamily: a peer's session socket seen over the other IP family
// than ours is not a UDP punch target (an IPv6-only end cannot reach an
// IPv4 one, and the roles were chosen for NATs of one family).
func TestSameFamily(t *testing.T) {
	s := &Session{Log: logrus.New()}
	v4, v6 := netip.MustParseAddrPort("203.0.113.9:4000"), netip.MustParseAddrPort("[2001:db8:2::2]:4000")
	mapped4, mapped6 := netip.MustParseAddrPort("198.51.100.1:5000"), netip.MustParseAddrPort("[2001:db8:1::2]:5000")
	for _, tc := range []struct{ peer, mapped, want netip.AddrPort }{
		{v4, mapped4, v4}, {v6, mapped6, v6},
		{v4, mapped6, netip.AddrPort{}}, {v6, mapped4, netip.AddrPort{}},
		{netip.MustParseAddrPort("[::ffff:203.0.113.9]:4000"), mapped4, netip.MustParseAddrPort("[::ffff:203.0.113.9]:4000")},
		{v4, netip.AddrPort{}, v4},
	} {
		if got := sameFamily(s, tc.peer, tc.mapped); got != tc.want {
			t.Errorf("sameFamily(%v, %v) = %v, want %v", tc.peer, tc.mapped, got, tc.want)
		}
	}
}
