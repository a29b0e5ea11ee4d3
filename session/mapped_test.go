package session

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// TestMappedTCP: between two symrand NATs, which leave TCP nothing to do,
// the end whose NAT report carries a port mapping of its shared port
// accepts, and the other connects to the mapping: a direct TCP link. On
// loopback the mapping is the shared port itself, as a router forwards it.
// The connecting end starts late, as a peer told of the session over a
// slow path does.
func TestMappedTCP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var accs [2]*punch.Acceptor
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range accs {
		ln, err := punch.Listen(ctx, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		accs[i] = punch.NewAcceptor(ln, nil)
		wg.Go(func() { accs[i].Serve(ctx) })
	}
	symrand := punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent, Allocation: punch.AllocationRandom,
		PublicIP: netip.MustParseAddr("127.0.0.1")}
	nats := [2]punch.NAT{symrand, symrand}
	nats[0].MappedTCP = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(accs[0].Port()))
	ends := mappedEnds(t, nats, accs)
	if ends[0].Strategy.TCP != punch.TCPAcceptMapped || ends[1].Strategy.TCP != punch.TCPConnectMapped {
		t.Fatalf("tcp roles %s/%s, want accept-mapped/connect-mapped", ends[0].Strategy.TCP, ends[1].Strategy.TCP)
	}
	if relay := (&Relay{}).Plan(ends[1]); relay.Delay != relayDelay {
		t.Errorf("relay plan %+v: a direct path is expected, so the relay waits %v", relay, relayDelay)
	}
	var links [2]*link.Link
	var errs [2]error
	var rw sync.WaitGroup
	for i, s := range ends {
		rw.Go(func() {
			if i == 1 {
				// The connecting end's session starts well after the
				// accepting end's grace: the accepting end still waits.
				time.Sleep(3 * s.cfg.Grace)
			}
			paths := []Path{&Inbound{Acceptor: accs[i]}, &TCP{Acceptor: accs[i], Server: "127.0.0.1:1"}}
			links[i], _, errs[i] = Race(ctx, s, paths)
		})
	}
	rw.Wait()
	for i, l := range links {
		if errs[i] != nil {
			t.Fatalf("end %d: %v", i, errs[i])
		}
		defer l.Close()
		if l.Path() != PathTCP {
			t.Errorf("end %d: path %s, want %s", i, l.Path(), PathTCP)
		}
	}
}

// TestMappedTCPOutOfScope: a mapping at another address than the one the
// server observed is no way to the peer (a lying peer could aim it at
// anyone), so the session neither uses it nor counts on it.
func TestMappedTCPOutOfScope(t *testing.T) {
	symrand := punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent, Allocation: punch.AllocationRandom,
		PublicIP: netip.MustParseAddr("127.0.0.1")}
	nats := [2]punch.NAT{symrand, symrand}
	nats[0].MappedTCP = netip.MustParseAddrPort("192.0.2.1:41000")
	ends := mappedEnds(t, nats, [2]*punch.Acceptor{})
	if s := ends[1]; s.PeerMappedTCP.IsValid() || s.Strategy.TCP != punch.TCPNone {
		t.Errorf("peer's mapping %v, tcp role %s; want none", s.PeerMappedTCP, s.Strategy.TCP)
	}
}

// mappedEnds makes both ends' sessions of one punch session on this host,
// the server seeing each end's shared port (accs; port 1 where nil).
func mappedEnds(t *testing.T, nats [2]punch.NAT, accs [2]*punch.Acceptor) [2]*Session {
	t.Helper()
	id := punch.NewSessionID().String()
	var keys [2]identity.PrivateKey
	for i := range keys {
		var err error
		if keys[i], err = identity.Generate(); err != nil {
			t.Fatal(err)
		}
	}
	var ends [2]*Session
	for i := range ends {
		self, err := link.NewIdentity(keys[i])
		if err != nil {
			t.Fatal(err)
		}
		cfg := &Config{Self: self, Timeout: 3 * time.Second, Grace: 100 * time.Millisecond}
		if err := cfg.Verify(); err != nil {
			t.Fatal(err)
		}
		port := uint16(1)
		if accs[1-i] != nil {
			port = uint16(accs[1-i].Port())
		}
		pu := rendezvous.Punch{Session: id, Side: i, Peer: keys[1-i].Public(), PeerNAT: nats[1-i],
			Public: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}
		if ends[i], err = New(cfg, Local{NAT: nats[i], SameHost: true}, pu, quiet()); err != nil {
			t.Fatal(err)
		}
	}
	return ends
}
