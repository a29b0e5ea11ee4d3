package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func newQUICSocket(t testing.TB) *QUICSocket {
	t.Helper()
	s, err := NewQUICSocket(listenLoopback(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// quicPair connects client socket a to b directly and returns both
// streams.
func quicPair(t testing.TB, a, b *QUICSocket) (*QUICStream, *QUICStream) {
	return quicPairVia(t, a, b, addrOf(b), addrOf(a))
}

// quicPairVia connects client socket a to b, which a reaches at to and
// which sees a at seen.
func quicPairVia(t testing.TB, a, b *QUICSocket, to, seen netip.AddrPort) (*QUICStream, *QUICStream) {
	t.Helper()
	cc, sc := testTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		sb   *QUICStream
		errb error
		wg   sync.WaitGroup
	)
	wg.Go(func() { sb, errb = b.Dial(ctx, seen, false, sc, nil) })
	sa, err := a.Dial(ctx, to, true, cc, nil)
	wg.Wait()
	if err != nil || errb != nil {
		t.Fatalf("dial: %v; accept: %v", err, errb)
	}
	t.Cleanup(func() { sa.Close(); sb.Close() })
	return sa, sb
}

func TestQUICStreamCarriesBothWaysAndCloses(t *testing.T) {
	a, b := newQUICSocket(t), newQUICSocket(t)
	sa, sb := quicPair(t, a, b)
	const n = 4 << 20
	for _, dir := range []struct {
		name string
		w, r net.Conn
	}{{"a to b", sa, sb}, {"b to a", sb, sa}} {
		if intact, err := sendRandom(dir.w, dir.r, n, nil); err != nil || !intact {
			t.Fatalf("%s: %d bytes did not arrive intact (%v)", dir.name, n, err)
		}
	}
	sa.Close()
	if _, err := sa.Write([]byte("x")); err != net.ErrClosed {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	within(t, 3*time.Second, "peer's read to see EOF", func() {
		if _, err := sb.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("peer read after close: %v, want io.EOF", err)
		}
	})
	sb.Close()
	within(t, 3*time.Second, "both connections to be torn down", func() { <-sa.Done(); <-sb.Done() })
}

func TestQUICSocketRejectsUnreservedPrefix(t *testing.T) {
	s := newQUICSocket(t)
	for _, p := range []string{"", "W", "WX\x01", "XR"} {
		if err := s.Handle([]byte(p), func([]byte, netip.AddrPort) {}); err == nil {
			t.Errorf("Handle(%q) accepted a prefix QUIC packets may carry", p)
		}
	}
	if _, err := s.WriteTo([]byte("hello"), addrOf(s)); err == nil {
		t.Error("WriteTo sent a datagram the peer would hand to QUIC")
	}
}

func TestQUICConnIDsNeverLookPrefixed(t *testing.T) {
	for range 2000 {
		id, err := quicConnIDs{}.GenerateConnectionID()
		if err != nil {
			t.Fatal(err)
		}
		if id.Len() != quicConnIDLen || id.Bytes()[0] == quicReserved[1] {
			t.Fatalf("connection ID %x could make a short-header packet start with %q", id.Bytes(), quicReserved)
		}
	}
}

// A peer whose NAT hands it a new endpoint: its prefixed packets reach the
// other side's handler from there, and once that socket is rebound the
// stream carries on both ways, while quic-go never sees the new address.
// QUIC itself would follow only a client that moved.
func TestQUICRebindFollowsAMovedPeer(t *testing.T) {
	for _, serverMoves := range []bool{false, true} {
		name := map[bool]string{false: "client moves", true: "server moves"}[serverMoves]
		t.Run(name, func(t *testing.T) {
			client, server := newQUICSocket(t), newQUICSocket(t)
			mover, stayer := client, server
			if serverMoves {
				mover, stayer = server, client
			}
			nat := newUDPForwarder(t, addrOf(mover), addrOf(stayer))
			// The client reaches the server, and the server sees the
			// client, through the NAT where the mover sits behind it.
			to, seen := nat.front(), nat.back()
			if serverMoves {
				to, seen = nat.back(), nat.front()
			}
			sc, ss := quicPairVia(t, client, server, to, seen)
			roamed := make(chan netip.AddrPort, 4)
			if err := stayer.Handle([]byte("WRU\x01"), func(pkt []byte, from netip.AddrPort) { roamed <- from }); err != nil {
				t.Fatal(err)
			}
			echo(t, sc, ss, "before the move")

			old := nat.back()
			nat.rebind(t)
			if _, err := mover.WriteTo([]byte("WRU\x01roam"), nat.front()); err != nil {
				t.Fatal(err)
			}
			var now netip.AddrPort
			select {
			case now = <-roamed:
			case <-time.After(3 * time.Second):
				t.Fatal("the prefixed packet never reached its handler")
			}
			if now == old || now != nat.back() {
				t.Fatalf("handler saw the packet from %v; the peer moved from %v to %v", now, old, nat.back())
			}
			stayer.Rebind(old, now)
			echo(t, sc, ss, "after the move")
		})
	}
}

// echo sends a message each way and checks it.
func echo(t *testing.T, x, y net.Conn, when string) {
	t.Helper()
	for _, p := range [][2]net.Conn{{x, y}, {y, x}} {
		msg := []byte("ping " + when)
		p[0].SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := p[0].Write(msg); err != nil {
			t.Fatalf("%s: write: %v", when, err)
		}
		got := make([]byte, len(msg))
		p[1].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(p[1], got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: read %q, %v", when, got, err)
		}
	}
}

// udpForwarder is a NAT in user space for one host inside: what inside
// sends to front leaves from a back socket towards outside, and what
// outside sends to the back socket reaches inside from front. rebind swaps
// the back socket, as a NAT that forgot its mapping would.
type udpForwarder struct {
	in              *net.UDPConn
	inside, outside netip.AddrPort
	mu              sync.Mutex
	out             *net.UDPConn
}

func newUDPForwarder(t *testing.T, inside, outside netip.AddrPort) *udpForwarder {
	f := &udpForwarder{inside: inside, outside: outside}
	f.in = listenLoopback(t)
	f.out = listenLoopback(t)
	go f.forward()
	go f.reverse(f.out)
	return f
}

func (f *udpForwarder) front() netip.AddrPort { return addrOf(f.in) }

func (f *udpForwarder) back() netip.AddrPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	return addrOf(f.out)
}

func (f *udpForwarder) rebind(t *testing.T) {
	next := listenLoopback(t)
	f.mu.Lock()
	old := f.out
	f.out = next
	f.mu.Unlock()
	old.Close()
	go f.reverse(next)
}

func (f *udpForwarder) forward() {
	buf := make([]byte, 65536)
	for {
		n, err := f.in.Read(buf)
		if err != nil {
			return
		}
		f.mu.Lock()
		out := f.out
		f.mu.Unlock()
		out.WriteToUDPAddrPort(buf[:n], f.outside)
	}
}

func (f *udpForwarder) reverse(out *net.UDPConn) {
	buf := make([]byte, 65536)
	for {
		n, err := out.Read(buf)
		if err != nil {
			return
		}
		f.in.WriteToUDPAddrPort(buf[:n], f.inside)
	}
}

// A Read blocked on a silent peer must return at Close, not when the
// close's drain gives up: a link torn down after its path died waits for
// its reader.
func TestQUICCloseUnblocksRead(t *testing.T) {
	a, b := newQUICSocket(t), newQUICSocket(t)
	sa, _ := quicPair(t, a, b)
	read := make(chan error, 1)
	go func() {
		_, err := sa.Read(make([]byte, 1))
		read <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the Read block
	sa.Close()
	within(t, time.Second, "a blocked Read to return at Close", func() {
		if err := <-read; err == nil {
			t.Error("blocked Read returned no error after Close")
		}
	})
}

// TestQUICOldVersionFailsClearly: a peer that speaks version 1 of the
// stream (the link's TLS inside QUIC's) fails the handshake, and both
// ends say it is the version (ErrQUICVersion), not garbage or a timeout
// with no reason.
func TestQUICOldVersionFailsClearly(t *testing.T) {
	a, b := newQUICSocket(t), newQUICSocket(t)
	cc, sc := testTLS(t)
	cc.NextProtos = []string{"warren-stream/1"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var (
		accErr error
		wg     sync.WaitGroup
	)
	wg.Go(func() { _, accErr = b.Dial(ctx, addrOf(a), false, sc, &QUICConfig{HandshakeTimeout: time.Second}) })
	conn, err := a.tr.Dial(ctx, net.UDPAddrFromAddrPort(addrOf(b)), cc, &quic.Config{HandshakeIdleTimeout: time.Second})
	wg.Wait()
	if err == nil {
		conn.CloseWithError(0, "")
		t.Fatal("an old client completed the handshake")
	}
	if err := versionError(err); !errors.Is(err, ErrQUICVersion) {
		t.Fatalf("the old client's dial failed with %v, want ErrQUICVersion", err)
	}
	if !errors.Is(accErr, ErrQUICVersion) {
		t.Fatalf("the accepting end failed with %v, want ErrQUICVersion", accErr)
	}
}
