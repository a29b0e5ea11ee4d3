package punch

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestStrategiesOverSimulatedNATs runs both sides of a UDP punch, with the
// roles Choose gives them, for every pair of simulated NAT kinds, and
// checks which pairs connect and that both sides agree on the path.
func TestStrategiesOverSimulatedNATs(t *testing.T) {
	kinds := map[string]natKind{"open": simOpen, "cone": simCone, "seq": simSeq, "rand": simRand}
	// Pairs with no direct path to expect (they go to the relay).
	noPath := map[[2]string]bool{{"seq", "rand"}: true, {"rand", "seq"}: true, {"rand", "rand"}: true}
	server := netip.MustParseAddrPort("192.0.2.1:7777")
	for an, ak := range kinds {
		for bn, bk := range kinds {
			t.Run(an+"/"+bn, func(t *testing.T) {
				t.Parallel()
				n := newSimNet()
				mk := func(i int, k natKind) (*simSock, func() (PacketConn, error)) {
					local := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 2}), 40000)
					var nat *simNAT
					if k == simOpen {
						local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)}), 40000)
					} else {
						nat = n.addNAT(k, fmt.Sprintf("198.51.100.%d", 10+i))
					}
					next := local.Port()
					listen := func() (PacketConn, error) {
						next++
						return n.listen(nat, netip.AddrPortFrom(local.Addr(), next)), nil
					}
					return n.listen(nat, local), listen
				}
				sa, la := mk(1, ak)
				sb, lb := mk(2, bk)
				// Each side's session socket is what the server saw.
				n.mu.Lock()
				ma, mb := n.publicOfLocked(sa, server), n.publicOfLocked(sb, server)
				n.mu.Unlock()

				// Generous: the random pairs are probabilistic, and -race on a
				// loaded machine slows the paced sprays well below Rate.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				id := NewSessionID()
				na, nb := natOf(ak), natOf(bk)
				type out struct {
					r   UDPResult
					err error
				}
				run := func(sock PacketConn, self, peer NAT, peerEP netip.AddrPort, controlling bool, listen func() (PacketConn, error), ch chan<- out) {
					r, err := PunchUDP(ctx, &UDPConfig{Rate: 20000, Sockets: 256}, UDPSession{ID: id, Controlling: controlling,
						Role: Choose(self, peer).UDP, Peer: peer, PeerEndpoint: peerEP, Listen: listen,
						Scope: Scope{Public: peerEP.Addr()}}, sock)
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
				n.mu.Lock()
				wantA := n.publicOfLocked(rb.r.Conn.(*simSock), rb.r.Remote)
				wantB := n.publicOfLocked(ra.r.Conn.(*simSock), ra.r.Remote)
				n.mu.Unlock()
				if ra.r.Remote != wantA || rb.r.Remote != wantB {
					t.Fatalf("the sides chose different paths: a→%v (b is %v), b→%v (a is %v)", ra.r.Remote, wantA, rb.r.Remote, wantB)
				}
			})
		}
	}
}
