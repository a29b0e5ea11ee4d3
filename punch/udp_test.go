package punch

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func udpSock(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// loopbackScope lets a punch reach sockets on 127.0.0.1, as a daemon does
// when the rendezvous server is on this host too.
var loopbackScope = Scope{Public: netip.MustParseAddr("127.0.0.1"), SameHost: true}

// punchBoth runs PunchUDP on both sides at once, ctrl's session on sa and
// other's on sb, and returns both results, failing t if either punch
// fails; the punched sockets close when the test ends.
func punchBoth(t *testing.T, ctx context.Context, ctrl UDPSession, sa PacketConn, other UDPSession, sb PacketConn) (ra, rb UDPResult) {
	t.Helper()
	type out struct {
		r   UDPResult
		err error
	}
	ca, cb := make(chan out, 1), make(chan out, 1)
	go func() {
		r, err := PunchUDP(ctx, nil, ctrl, sa)
		ca <- out{r, err}
	}()
	go func() {
		r, err := PunchUDP(ctx, nil, other, sb)
		cb <- out{r, err}
	}()
	oa, ob := <-ca, <-cb
	if oa.err != nil || ob.err != nil {
		t.Fatal(oa.err, ob.err)
	}
	t.Cleanup(func() { oa.r.Conn.Close(); ob.r.Conn.Close() })
	return oa.r, ob.r
}

func TestPunchUDPDirectNominates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, b := udpSock(t), udpSock(t)
	id := NewSessionID()
	// Each side prefers its own stream protocol; the controlling side's
	// wins on both.
	ra, rb := punchBoth(t, ctx, UDPSession{ID: id, Controlling: true, Role: RoleDirect, PeerEndpoint: addrOf(b), Stream: 'q', Scope: loopbackScope}, a,
		UDPSession{ID: id, Role: RoleDirect, PeerEndpoint: addrOf(a), Stream: 'k', Scope: loopbackScope}, b)
	if ra.Remote != addrOf(b) || rb.Remote != addrOf(a) {
		t.Fatalf("remotes %v %v", ra.Remote, rb.Remote)
	}
	if ra.Stream != 'q' || rb.Stream != 'q' {
		t.Fatalf("agreed streams %q and %q, want the controlling side's 'q' on both", ra.Stream, rb.Stream)
	}
	// The sockets are handed back usable.
	if _, err := ra.Conn.WriteToUDPAddrPort([]byte("after"), ra.Remote); err != nil {
		t.Fatal(err)
	}
	rb.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	for {
		n, _, err := rb.Conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) == "after" {
			break
		}
	}
}

// TestPunchUDPIgnoresStrays: packets keyed for another session, and junk,
// never complete a punch.
func TestPunchUDPIgnoresStrays(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	victim, attacker := udpSock(t), udpSock(t)
	defer attacker.Close()
	other := NewSessionID()
	go func() {
		for ctx.Err() == nil {
			for _, typ := range []byte{udpPing, udpPong, udpNominate} {
				for _, key := range [][]byte{other.udpKey(false), other.udpKey(true)} {
					attacker.WriteToUDPAddrPort(sealPacket(key, typ, make([]byte, udpNonceLen)), addrOf(victim))
				}
			}
			attacker.WriteToUDPAddrPort([]byte("WRU\x01garbage"), addrOf(victim))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, err := PunchUDP(ctx, nil, UDPSession{ID: NewSessionID(), Role: RoleDirect, PeerEndpoint: addrOf(attacker), Scope: loopbackScope}, victim)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("punch completed on stray packets: %v", err)
	}
}

func FuzzOpenPacket(f *testing.F) {
	key := NewSessionID().udpKey(true)
	f.Add(sealPacket(key, udpPing, make([]byte, udpNonceLen)))
	f.Add([]byte("WRU\x01"))
	f.Fuzz(func(t *testing.T, p []byte) {
		typ, ok := openPacket(key, p)
		if !ok {
			return
		}
		// Only what the key holder sealed opens.
		nonce := p[len(udpMagic)+1 : len(udpMagic)+1+udpNonceLen]
		if string(sealPacket(key, typ, nonce)) != string(p) {
			t.Fatalf("accepted a packet the key did not seal: %x", p)
		}
	})
}

// dropPongs drops every nth pong it is asked to send.
type dropPongs struct {
	*net.UDPConn
	n, pongs int
	delay    time.Duration // before each pong that is sent
	wg       sync.WaitGroup
}

func (d *dropPongs) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if len(b) == udpPacketLen && b[len(udpMagic)] == udpPong {
		d.pongs++
		if d.n > 0 && d.pongs%d.n == 0 {
			return len(b), nil
		}
		if d.delay > 0 {
			// A long path: the answers come after the whole train left.
			pkt := bytes.Clone(b)
			d.wg.Go(func() {
				time.Sleep(d.delay)
				d.UDPConn.WriteToUDPAddrPort(pkt, to)
			})
			return len(b), nil
		}
	}
	return d.UDPConn.WriteToUDPAddrPort(b, to)
}

// TestPunchUDPTrain: with Choose, the controlling side measures the path
// with a probe train before it nominates; the stream Choose picks and the
// measurement reach both sides.
func TestPunchUDPTrain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dropNth  int           // of the controlled side's pongs; 0: none
		delay    time.Duration // of the controlled side's pongs
		short    bool          // Short says every path is short
		wantSent [2]int
		wantLost [2]int
	}{
		{"clean", 0, 0, false, [2]int{48, 48}, [2]int{0, 0}},
		// Every 4th pong lost on a path that is not short: the train ends
		// once a loss is certain (later pings answered, and its answer
		// later than the slowest and the answers' spread), before all 48
		// are out, as nothing after it could change the choice.
		{"lossy", 4, 0, false, [2]int{4, 47}, [2]int{1, 16}},
		{"long and lossy", 4, 80 * time.Millisecond, false, [2]int{4, 47}, [2]int{1, 16}},
		// A short path ends the train after ShortTrain pings.
		{"short", 0, 0, true, [2]int{16, 16}, [2]int{0, 0}},
		// On a short path loss does not end it early: a quarter of the
		// pings lost, give or take the first pong (a punch ping's), which
		// the train does not count.
		{"short and lossy", 4, 0, true, [2]int{16, 16}, [2]int{3, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a, b := udpSock(t), udpSock(t)
			var bc PacketConn = b
			if tc.dropNth > 0 || tc.delay > 0 {
				d := &dropPongs{UDPConn: b, n: tc.dropNth, delay: tc.delay}
				defer d.wg.Wait()
				bc = d
			}
			began := time.Now()
			id := NewSessionID()
			var chosenFrom Quality
			ra, rb := punchBoth(t, ctx, UDPSession{ID: id, Controlling: true, Role: RoleDirect, PeerEndpoint: addrOf(b),
				Stream: 'q', Scope: loopbackScope, Choose: func(q Quality) byte { chosenFrom = q; return 'k' },
				Short: func(time.Duration) bool { return tc.short }}, a,
				UDPSession{ID: id, Role: RoleDirect, PeerEndpoint: addrOf(a), Stream: 'q', Scope: loopbackScope}, bc)
			if ra.Stream != 'k' || rb.Stream != 'k' {
				t.Errorf("streams %q and %q, want Choose's 'k' on both", ra.Stream, rb.Stream)
			}
			q := ra.Quality
			if q != chosenFrom {
				t.Errorf("result's quality %+v, Choose was given %+v", q, chosenFrom)
			}
			if q.Sent < tc.wantSent[0] || q.Sent > tc.wantSent[1] || q.Lost < tc.wantLost[0] || q.Lost > tc.wantLost[1] || q.RTT < tc.delay || q.RTT > tc.delay+100*time.Millisecond {
				t.Errorf("measured %+v, want %d-%d sent, %d-%d lost, a round trip of %v and a bit", q, tc.wantSent[0], tc.wantSent[1], tc.wantLost[0], tc.wantLost[1], tc.delay)
			}
			// The punch's first round trip, the train (paced at 2000/s), and
			// a round trip and the answers' spread for the last ones (or
			// less, when a loss ends the train): well below the
			// trainWaitMax a train waits while no answer has come, with
			// room for a loaded machine and the race detector.
			if took, most := time.Since(began), 3*tc.delay+600*time.Millisecond; took > most {
				t.Errorf("the punch took %v, want at most %v", took, most)
			}
			got := rb.Quality
			if got.Sent != q.Sent || got.Lost != q.Lost || got.RTT != q.RTT.Truncate(100*time.Microsecond) {
				t.Errorf("the controlled side learned %+v, the controlling side measured %+v", got, q)
			}
		})
	}
}

func TestNominationBody(t *testing.T) {
	for _, q := range []Quality{{}, {Sent: 48, Lost: 3, RTT: 92300 * time.Microsecond}, {Sent: 255, Lost: 255, RTT: 7 * time.Second}} {
		s, got := parseNomination(nominationBody('k', q))
		want := q
		want.RTT = min(q.RTT, 0xffff*100*time.Microsecond)
		if s != 'k' || got != want {
			t.Errorf("%+v came back as %q %+v", q, s, got)
		}
	}
}

// TestPunchUDPTriggeredCheck: the controlling side's own pings go nowhere
// (towards a peer behind a symmetric NAT, whose observed endpoint is not
// where it pings from), but the peer's pings reach it (through this side's
// port mapping): it pings their source back, gets a pong, and nominates.
func TestPunchUDPTriggeredCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, b, nowhere := udpSock(t), udpSock(t), udpSock(t)
	defer nowhere.Close()
	id := NewSessionID()
	ra, rb := punchBoth(t, ctx, UDPSession{ID: id, Controlling: true, Role: RoleDirect, PeerEndpoint: addrOf(nowhere), Scope: loopbackScope}, a,
		UDPSession{ID: id, Role: RoleDirect, PeerEndpoint: addrOf(a), Scope: loopbackScope}, b)
	if ra.Remote != addrOf(b) || rb.Remote != addrOf(a) {
		t.Fatalf("remotes %v %v, want %v %v", ra.Remote, rb.Remote, addrOf(b), addrOf(a))
	}
}

// TestPunchUDPEstimate: with an Estimate, the controlling side nominates
// at its first pong, with the stream Choose picks for the estimate, and
// sends no probe train (a train would show in the pings the other side
// answered: one punch ping and no more).
func TestPunchUDPEstimate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, b := udpSock(t), udpSock(t)
	d := &dropPongs{UDPConn: b} // counts b's pongs, drops none
	id := NewSessionID()
	est := Quality{RTT: 90 * time.Millisecond}
	var chosenFrom Quality
	ra, rb := punchBoth(t, ctx, UDPSession{ID: id, Controlling: true, Role: RoleDirect, PeerEndpoint: addrOf(b),
		Stream: 'q', Scope: loopbackScope, Choose: func(q Quality) byte { chosenFrom = q; return 'k' },
		Short: func(time.Duration) bool { return false }, Estimate: est}, a,
		UDPSession{ID: id, Role: RoleDirect, PeerEndpoint: addrOf(a), Stream: 'q', Scope: loopbackScope}, d)
	if chosenFrom != est || ra.Quality != est || ra.Stream != 'k' || rb.Stream != 'k' {
		t.Errorf("chose from %+v, result %+v, streams %q/%q; want the estimate %+v and Choose's 'k' on both",
			chosenFrom, ra.Quality, ra.Stream, rb.Stream, est)
	}
	if d.pongs > 4 {
		t.Errorf("the controlled side answered %d pings: a probe train ran", d.pongs)
	}
}
