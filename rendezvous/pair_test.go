package rendezvous

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/warren-p2p/warren/punch"
)

// TestPairWindow: the other side's ask within PairWindow of a session is
// a duplicate (that session serves both), unless the asker has reported
// another NAT since the session went out: its peer punched with the old
// one, so a new session starts, carrying the new report.
func TestPairWindow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{NATWait: 10 * time.Millisecond, PairWindow: time.Minute})
	punches := func() (chan Punch, ClientConfig) {
		ch := make(chan Punch, 8)
		return ch, ClientConfig{OnPunch: func(p Punch) { p.UDP.Close(); ch <- p }}
	}
	pa, ca := punches()
	pb, cb := punches()
	a, b := startClient(t, ctx, ts, ca), startClient(t, ctx, ts, cb)
	waitRegistered(t, a)
	waitRegistered(t, b)
	symrand := punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent, Allocation: punch.AllocationRandom,
		PublicIP: netip.MustParseAddr("127.0.0.1")}
	for _, c := range []*Client{a, b} {
		if err := c.SetNAT(symrand); err != nil {
			t.Fatal(err)
		}
	}
	session := func(what string, want bool) Punch {
		t.Helper()
		var got [2]Punch
		for i, ch := range []chan Punch{pa, pb} {
			select {
			case got[i] = <-ch:
				if !want {
					t.Fatalf("%s: a punch session started", what)
				}
			case <-time.After(500 * time.Millisecond):
				if want {
					t.Fatalf("%s: no punch session", what)
				}
				return Punch{}
			}
		}
		return got[1] // b's: about a
	}
	if err := b.Connect(a.cfg.Key.Public()); err != nil {
		t.Fatal(err)
	}
	session("b asks", true)
	if err := a.Connect(b.cfg.Key.Public()); err != nil {
		t.Fatal(err)
	}
	session("a asks right after, as it was", false)
	mapped := symrand
	mapped.MappedTCP = netip.MustParseAddrPort("127.0.0.1:41000")
	if err := a.SetNAT(mapped); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(b.cfg.Key.Public()); err != nil {
		t.Fatal(err)
	}
	if got := session("a asks with a port mapping", true); got.PeerNAT.MappedTCP != mapped.MappedTCP {
		t.Errorf("b's punch says a's mapping is %v, want %v", got.PeerNAT.MappedTCP, mapped.MappedTCP)
	}
}
