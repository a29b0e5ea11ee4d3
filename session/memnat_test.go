package session

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/punch/memnat"
)

// simUDP is the UDP path over the in-memory NAT simulator: the real punch
// engine with the session's strategy and roles, its socket made a stream
// (the simulator neither loses nor reorders) instead of QUIC or KCP.
type simUDP struct {
	sock   *memnat.Sock
	listen func() (punch.PacketConn, error)
	peerEP netip.AddrPort // the peer's session socket as the server saw it
}

func (u *simUDP) Name() string         { return PathUDP }
func (u *simUDP) Plan(s *Session) Plan { return (&UDP{}).Plan(s) }
func (u *simUDP) Run(ctx context.Context, s *Session, out *Out) error {
	res, err := punch.PunchUDP(ctx, &punch.UDPConfig{Rate: 20000}, punch.UDPSession{ID: s.ID, Controlling: s.Controlling,
		Role: s.Strategy.UDP, Peer: s.PeerNAT, PeerEndpoint: u.peerEP, Listen: u.listen, Scope: s.Scope}, u.sock)
	if err != nil {
		return err
	}
	return out.Offer(ctx, &dgramConn{sock: res.Conn, remote: res.Remote})
}

// pipeRelay is the relay path with its real plan, reaching the other end
// through a pipe.
type pipeRelay struct {
	Relay
	ch chan net.Conn
	a  bool
}

func (r *pipeRelay) Run(ctx context.Context, s *Session, out *Out) error {
	if r.a {
		x, y := net.Pipe()
		r.ch <- y
		return out.Offer(ctx, x)
	}
	select {
	case y := <-r.ch:
		return out.Offer(ctx, y)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dgramConn is a stream over a lossless, ordered datagram socket.
type dgramConn struct {
	sock   punch.PacketConn
	remote netip.AddrPort
	mu     sync.Mutex // guards buf, one Read at a time
	buf    []byte
}

func (c *dgramConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.buf) == 0 {
		pkt := make([]byte, 65536)
		n, from, err := c.sock.ReadFromUDPAddrPort(pkt)
		if err != nil {
			return 0, err
		}
		if from == c.remote && !strings.HasPrefix(string(pkt[:n]), punch.UDPPrefix) {
			c.buf = pkt[:n]
		}
	}
	n := copy(b, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

func (c *dgramConn) Write(b []byte) (int, error)        { return c.sock.WriteToUDPAddrPort(b, c.remote) }
func (c *dgramConn) Close() error                       { return c.sock.Close() }
func (c *dgramConn) LocalAddr() net.Addr                { return &net.UDPAddr{} }
func (c *dgramConn) RemoteAddr() net.Addr               { return net.UDPAddrFromAddrPort(c.remote) }
func (c *dgramConn) SetDeadline(t time.Time) error      { return c.sock.SetReadDeadline(t) }
func (c *dgramConn) SetReadDeadline(t time.Time) error  { return c.sock.SetReadDeadline(t) }
func (c *dgramConn) SetWriteDeadline(t time.Time) error { return nil }

// TestRaceOverSimulatedNATs races the UDP path, with the strategy each
// session picks from both NATs, against the relay with its real head start
// over every pair of simulated NAT kinds: pairs with a direct path end on
// it before the relay starts; pairs without one are relayed at once.
func TestRaceOverSimulatedNATs(t *testing.T) {
	kinds := map[string]memnat.Kind{"open": memnat.Open, "cone": memnat.Cone, "seq": memnat.Seq, "rand": memnat.Rand}
	noPath := map[[2]string]bool{{"seq", "rand"}: true, {"rand", "seq"}: true, {"rand", "rand"}: true}
	server := netip.MustParseAddrPort("192.0.2.1:7777")
	for an, ak := range kinds {
		for bn, bk := range kinds {
			t.Run(an+"/"+bn, func(t *testing.T) {
				want, within := PathUDP, relayDelay
				if noPath[[2]string{an, bn}] {
					want, within = PathRelay, time.Second
				}
				// A random-port punch is a birthday search: on a loaded
				// machine it may now and then lose to the relay's head
				// start. Three losses in a row are no accident.
				var got [2]string
				for range 3 {
					n := memnat.New()
					socka, lista := n.Host(1, ak)
					sockb, listb := n.Host(2, bk)
					// Each side's session socket is what the server saw.
					pubs := [2]netip.AddrPort{n.PublicOf(socka, server), n.PublicOf(sockb, server)}
					sa, sb := twoEnds(t, 10*time.Second, [2]punch.NAT{ak.NAT(), bk.NAT()}, pubs)
					relay := make(chan net.Conn, 1)
					pa := []Path{&simUDP{sock: socka, listen: lista, peerEP: pubs[1]}, &pipeRelay{ch: relay, a: true}}
					pb := []Path{&simUDP{sock: sockb, listen: listb, peerEP: pubs[0]}, &pipeRelay{ch: relay}}
					if got = raceSim(t, [2]*Session{sa, sb}, [2][]Path{pa, pb}, within); got == [2]string{want, want} {
						return
					}
				}
				t.Fatalf("links over %q, want %q", got, want)
			})
		}
	}
}

// raceSim races both ends and returns the paths their links took ("" for
// none); it fails the test if the race took longer than within.
func raceSim(t *testing.T, ends [2]*Session, paths [2][]Path, within time.Duration) [2]string {
	t.Helper()
	var wg sync.WaitGroup
	var got [2]string
	began := time.Now()
	for i := range ends {
		wg.Go(func() {
			l, _, err := Race(context.Background(), ends[i], paths[i])
			if err != nil {
				t.Logf("end %d: %v", i, err)
				return
			}
			got[i] = l.Path()
			l.Close()
		})
	}
	wg.Wait()
	if d := time.Since(began); d > within+time.Second {
		t.Errorf("took %v, want within %v", d, within)
	}
	return got
}
