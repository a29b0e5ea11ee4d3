package session

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
)

// udpEnd is one side of a real UDP link on loopback.
type udpEnd struct {
	conn *udpConn
	link *link.Link
	addr netip.AddrPort // its socket
}

// udpLinkPair builds a link between the two ends of punch session id
// over a UDP path between two loopback sockets, as a punch leaves it,
// running stream (streamQUIC or streamKCP) below the link.
func udpLinkPair(t *testing.T, ctx context.Context, stream byte, id punch.SessionID) [2]udpEnd {
	t.Helper()
	sa, sb := twoEnds(t, 10*time.Second, [2]punch.NAT{}, [2]netip.AddrPort{})
	sessions := [2]*Session{sa, sb}
	var socks [2]*net.UDPConn
	for i := range socks {
		sessions[i].ID = id
		s, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		socks[i] = s
	}
	var ends [2]udpEnd
	var closing [2]sync.WaitGroup
	errs := make(chan error, 2)
	for i := range ends {
		go func() {
			s := sessions[i]
			u := &UDP{Closing: &closing[i]}
			res := punch.UDPResult{Conn: socks[i], Remote: socks[1-i].LocalAddr().(*net.UDPAddr).AddrPort(), Stream: stream}
			c, err := u.udpStream(ctx, s, res)
			if err != nil {
				errs <- err
				return
			}
			cands := make(chan link.Candidate, 1)
			cands <- link.Candidate{Conn: c, Path: PathUDP}
			close(cands)
			l, err := link.Establish(ctx, cands, s.cfg.Self, s.Peer, nil, s.Log)
			if err != nil {
				errs <- err
				return
			}
			ends[i] = udpEnd{conn: c, link: l, addr: socks[i].LocalAddr().(*net.UDPAddr).AddrPort()}
			errs <- nil
		}()
	}
	for range ends {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, e := range ends {
			e.link.Close()
		}
		for i := range closing {
			closing[i].Wait()
		}
	})
	return ends
}

// echoOnce sends msg over a fresh stream from a to b and reads it back.
func echoOnce(t *testing.T, a, b *link.Link, msg string) {
	t.Helper()
	go func() {
		s, err := b.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		io.Copy(s, s)
	}()
	s, err := a.Open(context.Background())
	if err != nil {
		t.Fatalf("open a stream: %v", err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(s, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, buf, err)
	}
}

// observerForgeries are the roam announcements someone who saw the punch
// session id on the wire (in a probe, a relay header) can make: sealed with
// every key the session yields, with a counter above anything honest.
func observerForgeries(id punch.SessionID) [][]byte {
	var out [][]byte
	for _, label := range []string{"warren udp punch ", "warren udp punch controlling ", "warren udp punch controlled "} {
		key := sha256.Sum256(append([]byte(label), id[:]...))
		for _, seq := range []uint64{uint64(time.Now().Add(time.Hour).UnixNano()), 1, 2, 1<<64 - 1} {
			p := append([]byte(punch.UDPPrefix), 4)
			p = binary.BigEndian.AppendUint64(p, seq)
			m := hmac.New(sha256.New, key[:])
			m.Write(p)
			out = append(out, m.Sum(p)[:len(p)+16])
		}
	}
	return out
}

// TestForgedRoamDoesNotMoveTheLink performs the observer's attack on a real
// UDP link, over QUIC and over KCP: knowing the punch session id, it sends
// forged roam announcements from another address to both ends. Neither end
// moves, and the link keeps carrying data.
func TestForgedRoamDoesNotMoveTheLink(t *testing.T) {
	for _, stream := range []byte{streamQUIC, streamKCP} {
		t.Run(string(stream), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			id := punch.NewSessionID()
			ends := udpLinkPair(t, ctx, stream, id)
			echoOnce(t, ends[0].link, ends[1].link, "before")
			// Let each side hear one honest announcement first, so that
			// roaming is armed on both.
			time.Sleep(roamInterval + 200*time.Millisecond)

			observer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer observer.Close()
			for range 3 {
				for _, p := range observerForgeries(id) {
					for _, e := range ends {
						observer.WriteToUDPAddrPort(p, e.addr)
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			for i, e := range ends {
				e.conn.mu.Lock()
				remote := e.conn.remote
				e.conn.mu.Unlock()
				if remote != ends[1-i].addr {
					t.Fatalf("side %d moved its link to %v (the peer is at %v)", i, remote, ends[1-i].addr)
				}
			}
			echoOnce(t, ends[0].link, ends[1].link, "after")
			echoOnce(t, ends[1].link, ends[0].link, "and back")
		})
	}
}

// TestRoamFollowsAuthenticAnnouncement is the honest move the forgeries
// imitate: the peer's own announcement arriving from a new endpoint (its
// NAT rebound) moves the link there; the same announcement replayed from
// yet another endpoint does not.
func TestRoamFollowsAuthenticAnnouncement(t *testing.T) {
	// Over QUIC the keys come from QUIC's own handshake (no link TLS).
	for _, stream := range []byte{streamKCP, streamQUIC} {
		t.Run(string(stream), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ends := udpLinkPair(t, ctx, stream, punch.NewSessionID())
			roam := ends[1].conn.roam.Load()
			if roam == nil || ends[0].conn.roam.Load() == nil {
				t.Fatal("roaming is not armed once the link is up")
			}
			var moved [2]*net.UDPConn
			for i := range moved {
				s, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				moved[i] = s
			}
			remoteOf := func() netip.AddrPort {
				ends[0].conn.mu.Lock()
				defer ends[0].conn.mu.Unlock()
				return ends[0].conn.remote
			}
			p := roam.Announce()
			moved[0].WriteToUDPAddrPort(p, ends[0].addr)
			want := moved[0].LocalAddr().(*net.UDPAddr).AddrPort()
			for deadline := time.Now().Add(2 * time.Second); remoteOf() != want; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the peer's announcement from %v did not move the link (remote %v)", want, remoteOf())
				}
			}
			moved[1].WriteToUDPAddrPort(p, ends[0].addr)
			time.Sleep(200 * time.Millisecond)
			// (The peer's own next announcement may have moved it back.)
			if got := remoteOf(); got == moved[1].LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Fatalf("a replayed announcement moved the link to %v", got)
			}
		})
	}
}

// TestOldQUICStreamRefusedByName: a peer of the version that ran the
// link's TLS inside QUIC proposes stream 'q'; this end refuses it with an
// error that says so, rather than failing a handshake for no clear reason.
func TestOldQUICStreamRefusedByName(t *testing.T) {
	sa, _ := twoEnds(t, 10*time.Second, [2]punch.NAT{}, [2]netip.AddrPort{})
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	u := &UDP{Closing: &sync.WaitGroup{}}
	res := punch.UDPResult{Conn: sock, Remote: netip.MustParseAddrPort("127.0.0.1:9"), Stream: streamQUICv1}
	c, err := u.udpStream(context.Background(), sa, res)
	if err == nil {
		c.Close()
		t.Fatal("the old QUIC stream was accepted")
	}
	if !strings.Contains(err.Error(), "no longer speaks") {
		t.Fatalf("refused with %q, which does not say why", err)
	}
}
