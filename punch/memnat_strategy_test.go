package punch_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/punch/memnat"
)

// TestStrategiesOverSimulatedNATs runs both sides of a UDP punch, with the
// roles Choose gives them, for every pair of simulated NAT kinds, and
// checks which pairs connect and that both sides agree on the path.
func TestStrategiesOverSimulatedNATs(t *testing.T) {
	kinds := map[string]memnat.Kind{"open": memnat.Open, "cone": memnat.Cone, "seq": memnat.Seq, "rand": memnat.Rand}
	// Pairs with no direct path to expect (they go to the relay).
	noPath := map[[2]string]bool{{"seq", "rand"}: true, {"rand", "seq"}: true, {"rand", "rand"}: true}
	server := netip.MustParseAddrPort("192.0.2.1:7777")
	for an, ak := range kinds {
		for bn, bk := range kinds {
			t.Run(an+"/"+bn, func(t *testing.T) {
				t.Parallel()
				n := memnat.New()
				sa, la := n.Host(1, ak)
				sb, lb := n.Host(2, bk)
				// Each side's session socket is what the server saw.
				ma, mb := n.PublicOf(sa, server), n.PublicOf(sb, server)

				// Generous: the random pairs are probabilistic, and -race on a
				// loaded machine slows the paced sprays well below Rate.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				id := punch.NewSessionID()
				na, nb := ak.NAT(), bk.NAT()
				type out struct {
					r   punch.UDPResult
					err error
				}
				run := func(sock punch.PacketConn, self, peer punch.NAT, peerEP netip.AddrPort, controlling bool, listen func() (punch.PacketConn, error), ch chan<- out) {
					r, err := punch.PunchUDP(ctx, &punch.UDPConfig{Rate: 20000, Sockets: 256}, punch.UDPSession{ID: id, Controlling: controlling,
						Role: punch.Choose(self, peer).UDP, Peer: peer, PeerEndpoint: peerEP, Listen: listen,
						Scope: punch.Scope{Public: peerEP.Addr()}}, sock)
					ch <- out{r, err}
				}
				ca, cb := make(chan out, 1), make(chan out, 1)
				go run(sa, na, nb, mb, true, la, ca)
				go run(sb, nb, na, ma, false, lb, cb)
				ra, rb := <-ca, <-cb
				if noPath[[2]string{an, bn}] {
					if ra.err == nil || rb.err == nil {
						t.Fatalf("expected no direct path, got %v / %v", ra.r.Remote, rb.r.Remote)
					}
					return
				}
				if ra.err != nil || rb.err != nil {
					t.Fatalf("punch failed: %v / %v", ra.err, rb.err)
				}
				// Each side's remote must be the other's socket as its NAT
				// shows it to this side: the two ends of one path.
				wantA := n.PublicOf(rb.r.Conn.(*memnat.Sock), rb.r.Remote)
				wantB := n.PublicOf(ra.r.Conn.(*memnat.Sock), ra.r.Remote)
				if ra.r.Remote != wantA || rb.r.Remote != wantB {
					t.Fatalf("the sides chose different paths: a→%v (b is %v), b→%v (a is %v)", ra.r.Remote, wantA, rb.r.Remote, wantB)
				}
			})
		}
	}
}
