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

// loopbackScope lets a punch reach sockets on 127.0.0.1, as a daemon does
// when the rendezvous server is on this host too.
var loopbackScope = Scope{Public: netip.MustParseAddr("127.0.0.1"), SameHost: true}

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
		r, err := PunchUDP(ctx, nil, UDPSession{ID: id, Controlling: controlling, Role: RoleDirect, PeerEndpoint: peer, Stream: stream,
			Scope: loopbackScope}, sock)
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
	type out struct {
		r   UDPResult
		err error
	}
	run := func(sock *net.UDPConn, controlling bool, peer netip.AddrPort, ch chan<- out) {
		r, err := PunchUDP(ctx, nil, UDPSession{ID: id, Controlling: controlling, Role: RoleDirect, PeerEndpoint: peer,
			Scope: loopbackScope}, sock)
		ch <- out{r, err}
	}
	ca, cb := make(chan out, 1), make(chan out, 1)
	go run(a, true, addrOf(nowhere), ca)
	go run(b, false, addrOf(a), cb)
	ra, rb := <-ca, <-cb
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	defer ra.r.Conn.Close()
	defer rb.r.Conn.Close()
	if ra.r.Remote != addrOf(b) || rb.r.Remote != addrOf(a) {
		t.Fatalf("remotes %v %v, want %v %v", ra.r.Remote, rb.r.Remote, addrOf(b), addrOf(a))
	}
}
