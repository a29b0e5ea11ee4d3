package punch

import (
	"context"
	"errors"
	"net"
	"net/netip"
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

func TestPunchUDPDirectNominates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, b := udpSock(t), udpSock(t)
	id := NewSessionID()
	type out struct {
		r   UDPResult
		err error
	}
	// Each side prefers its own stream protocol; the controlling side's
	// wins on both.
	run := func(sock *net.UDPConn, controlling bool, stream byte, peer netip.AddrPort, ch chan<- out) {
		r, err := PunchUDP(ctx, nil, UDPSession{ID: id, Controlling: controlling, Role: RoleDirect, PeerEndpoint: peer, Stream: stream}, sock)
		ch <- out{r, err}
	}
	ca, cb := make(chan out, 1), make(chan out, 1)
	go run(a, true, 'q', addrOf(b), ca)
	go run(b, false, 'k', addrOf(a), cb)
	ra, rb := <-ca, <-cb
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	defer ra.r.Conn.Close()
	defer rb.r.Conn.Close()
	if ra.r.Remote != addrOf(b) || rb.r.Remote != addrOf(a) {
		t.Fatalf("remotes %v %v", ra.r.Remote, rb.r.Remote)
	}
	if ra.r.Stream != 'q' || rb.r.Stream != 'q' {
		t.Fatalf("agreed streams %q and %q, want the controlling side's 'q' on both", ra.r.Stream, rb.r.Stream)
	}
	// The sockets are handed back usable.
	if _, err := ra.r.Conn.WriteToUDPAddrPort([]byte("after"), ra.r.Remote); err != nil {
		t.Fatal(err)
	}
	rb.r.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	for {
		n, _, err := rb.r.Conn.ReadFromUDPAddrPort(buf)
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
	other := NewSessionID().udpKey()
	go func() {
		for ctx.Err() == nil {
			for _, typ := range []byte{udpPing, udpPong, udpNominate} {
				attacker.WriteToUDPAddrPort(sealPacket(other, typ, make([]byte, udpNonceLen)), addrOf(victim))
			}
			attacker.WriteToUDPAddrPort([]byte("WRU\x01garbage"), addrOf(victim))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, err := PunchUDP(ctx, nil, UDPSession{ID: NewSessionID(), Role: RoleDirect, PeerEndpoint: addrOf(attacker)}, victim)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("punch completed on stray packets: %v", err)
	}
}

func FuzzOpenPacket(f *testing.F) {
	key := NewSessionID().udpKey()
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

func TestRoamPacket(t *testing.T) {
	id, other := NewSessionID(), NewSessionID()
	p := id.RoamPacket(42)
	if seq, ok := id.ParseRoam(p); !ok || seq != 42 {
		t.Fatalf("ParseRoam = %d, %v", seq, ok)
	}
	if _, ok := other.ParseRoam(p); ok {
		t.Fatal("another session's key accepted the packet")
	}
	if _, ok := id.ParseRoam(sealPacket(id.udpKey(), udpPing, make([]byte, udpNonceLen))); ok {
		t.Fatal("a ping was taken for a roam")
	}
	bad := append([]byte(nil), p...)
	bad[len(udpMagic)+1] ^= 1 // change the sequence number
	if _, ok := id.ParseRoam(bad); ok {
		t.Fatal("a tampered sequence number was accepted")
	}
}

// A sender that stalled catches up at most pacerBurst's worth of packets
// at once, however long it stalled.
func TestPacerCapsCatchUp(t *testing.T) {
	pc := newPacer(2000)
	defer pc.stop()
	pc.start = time.Now().Add(-time.Second) // a one-second stall
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // wait now reports only slots already due
	began := time.Now()
	n := 0
	for pc.wait(ctx) {
		n++
	}
	burst := int(2000 * pacerBurst.Seconds())
	// Slots that came due while this loop ran are fair too.
	extra := int(2000*time.Since(began).Seconds()) + 1
	if n < burst || n > burst+extra {
		t.Fatalf("after a stall the pacer paid out %d packets at once, want %d (+%d)", n, burst, extra)
	}
}
