package rendezvous

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// These tests attack the relay as a stranger would: from sources of their
// own on loopback (127.0.0.x), with keys registered over raw control
// connections.

// rawPeer is a key registered from a source ip over a raw control
// connection, with the punch sessions the server issued it.
type rawPeer struct {
	c        *tls.Conn
	key      identity.PublicKey
	ip, addr string
	sessions chan punch.SessionID // from punch messages, as they come
}

// newRawPeer registers a fresh key from ip and reports a NAT, so that
// sessions start at once. It is closed when the test ends.
func newRawPeer(t testing.TB, ts testServer, ip string) *rawPeer {
	t.Helper()
	c, key, err := registerRaw(t, ip, ts.addr, ts.srv.PublicKey())
	if err != nil {
		t.Fatalf("registering from %s: %v", ip, err)
	}
	p := &rawPeer{c: c, key: key, ip: ip, addr: ts.addr, sessions: make(chan punch.SessionID, 256)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, err := ReadMessage(c)
			if err != nil {
				return
			}
			if id, err := punch.ParseSessionID(m.Session); m.Type == TypePunch && err == nil {
				select {
				case p.sessions <- id:
				default:
				}
			}
		}
	})
	t.Cleanup(func() { c.Close(); wg.Wait() })
	if err := p.send(&Message{Type: TypeNAT, NAT: &punch.NAT{Behind: true}}); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *rawPeer) send(m *Message) error {
	p.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return WriteMessage(p.c, m)
}

// session asks the server for a punch session with q and returns it. q
// hears of it too (and drops it unless q's test reads it).
func (p *rawPeer) session(t testing.TB, q *rawPeer) punch.SessionID {
	t.Helper()
	if err := p.send(&Message{Type: TypeConnect, Peer: q.key.String()}); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-p.sessions:
		for len(q.sessions) > 0 { // q's copy of it, and of earlier ones
			<-q.sessions
		}
		return id
	case <-time.After(5 * time.Second):
		t.Fatal("no punch session issued")
	}
	return punch.SessionID{}
}

// relayHalf opens one side of session id's relay from p's source and
// sends the header, without waiting to be paired.
func (p *rawPeer) relayHalf(t testing.TB, id punch.SessionID, side int) net.Conn {
	t.Helper()
	c := dialFrom(t, p.ip, p.addr)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(header(relayMagic, id, side)); err != nil {
		t.Fatal(err)
	}
	return c
}

// relay opens side of session id's relay from p's source and waits until
// it is paired, or fails.
func (p *rawPeer) relay(ctx context.Context, id punch.SessionID, side int) (net.Conn, error) {
	c, err := dialerFrom(p.ip)(ctx, p.addr)
	if err != nil {
		return nil, err
	}
	return DialRelay(ctx, c, id, side)
}

// paired reports whether the server answers c with relayPaired within d.
func paired(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	_, err := c.Read(b[:])
	c.SetReadDeadline(time.Time{})
	return err == nil && b[0] == relayPaired
}

// relayPairFrom opens both sides of session id, a's as side 0 and b's as
// side 1, and fails the test unless they pair.
func relayPairFrom(t testing.TB, ctx context.Context, a, b *rawPeer, id punch.SessionID) (net.Conn, net.Conn) {
	t.Helper()
	var conns [2]net.Conn
	var errs [2]error
	var wg sync.WaitGroup
	for side, p := range []*rawPeer{a, b} {
		wg.Go(func() { conns[side], errs[side] = p.relay(ctx, id, side) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("relay side %d: %v", i, err)
		}
	}
	t.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

// waitGoroutines waits up to d for the process's goroutines to fall to at
// most n, and returns how many there are.
func waitGoroutines(n int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		g := runtime.NumGoroutine()
		if g <= n || time.Now().After(deadline) {
			return g
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitingRelays returns how many relay halves wait for their partner.
func waitingRelays(s *Server) int {
	s.relays.mu.Lock()
	defer s.relays.mu.Unlock()
	return len(s.relays.waiting)
}

// TestRelayCapRefusalReleasesEverything: at the relay cap, each refused
// pair gives back everything it held: both connections, their goroutines
// and their sources' slots; and the server shuts down at once. (The
// waiting half of a refused pair used to wait forever for a pair that
// would never end.)
func TestRelayCapRefusalReleasesEverything(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	key, _ := identity.Generate()
	srv, err := NewServer(ServerConfig{Key: key, Log: quietLog(), Relay: true, MaxRelays: 1,
		RelayWait: 300 * time.Millisecond, NATWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	ts := testServer{srv, ln.Addr().String()}
	a, b := newRawPeer(t, ts, "127.0.0.21"), newRawPeer(t, ts, "127.0.0.22")
	relayPairFrom(t, ctx, a, b, a.session(t, b)) // holds the one relay slot

	const refused = 8
	var ids []punch.SessionID
	for range refused {
		ids = append(ids, a.session(t, b))
	}
	time.Sleep(100 * time.Millisecond) // the sessions' goroutines are done
	g0 := runtime.NumGoroutine()
	conns0, _, srcConns0, _ := srv.guard.counts(netip.MustParseAddr(a.ip))
	for _, id := range ids {
		h0 := a.relayHalf(t, id, 0)
		deadline := time.Now().Add(2 * time.Second)
		for waitingRelays(srv) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		h1 := b.relayHalf(t, id, 1)
		if paired(h1, time.Second) {
			t.Fatal("a relay was paired past the cap")
		}
		if !closedWithin(h0, 2*time.Second) || !closedWithin(h1, 2*time.Second) {
			t.Fatal("a refused pair's connection was left open")
		}
		h0.Close()
		h1.Close()
	}
	if g := waitGoroutines(g0+2, 3*time.Second); g > g0+2 {
		t.Errorf("%d goroutines after %d refused pairs, %d before", g, refused, g0)
	}
	waitCounts(t, srv, a.ip, srcConns0, 0)
	if conns, _, _, _ := srv.guard.counts(netip.MustParseAddr(a.ip)); conns != conns0 {
		t.Errorf("the server holds %d connections, %d before the refused pairs", conns, conns0)
	}
	cancel()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5s of its context ending")
	}
}
