package rendezvous

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/bufcopy"
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
	asked    chan punch.SessionID // sessions it asked for (side 0), as they come
	refuse   atomic.Bool          // refuse every ask (by default it consents to all)
	others   chan timedMessage    // what else it was sent, but asks and pongs

	// tmu guards tokens: its relay token for each session it was in.
	tmu    sync.Mutex
	tokens map[punch.SessionID]RelayToken
}

// token returns p's relay token for session id (zero if it has none).
func (p *rawPeer) token(id punch.SessionID) RelayToken {
	p.tmu.Lock()
	defer p.tmu.Unlock()
	return p.tokens[id]
}

// newRawPeer registers a fresh key from ip and reports a NAT, so that
// sessions start at once. It is closed when the test ends.
func newRawPeer(t testing.TB, ts testServer, ip string) *rawPeer {
	t.Helper()
	c, key, err := registerRaw(t, ip, ts.addr, ts.srv.PublicKey())
	if err != nil {
		t.Fatalf("registering from %s: %v", ip, err)
	}
	p := &rawPeer{c: c, key: key, ip: ip, addr: ts.addr, asked: make(chan punch.SessionID, 256), others: make(chan timedMessage, 256),
		tokens: make(map[punch.SessionID]RelayToken)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, err := ReadMessage(c)
			if err != nil {
				return
			}
			switch {
			case m.Type == TypeAsk && !p.refuse.Load():
				p.send(&Message{Type: TypeConsent, Seq: m.Seq})
			case m.Type != TypeAsk && m.Type != TypePong:
				select {
				case p.others <- timedMessage{m, time.Now()}:
				default:
				}
			}
			id, err := punch.ParseSessionID(m.Session)
			if m.Type == TypePunch && err == nil {
				tok, _ := parseRelayToken(m.RelayToken)
				p.tmu.Lock()
				p.tokens[id] = tok
				p.tmu.Unlock()
			}
			// The asker is side 0: the sessions others ask for are
			// theirs to relay.
			if m.Type == TypePunch && m.Side == 0 && err == nil {
				select {
				case p.asked <- id:
				default:
				}
			}
		}
	})
	t.Cleanup(func() { c.Close(); wg.Wait() })
	if err := p.send(natMessage(punch.NAT{Behind: true})); err != nil {
		t.Fatal(err)
	}
	return p
}

// natMessage is a peer's NAT report of nat.
func natMessage(nat punch.NAT) *Message { return &Message{Type: TypeNAT, NAT: ReportNAT(nat)} }

func (p *rawPeer) send(m *Message) error {
	p.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return WriteMessage(p.c, m)
}

// session asks the server for a punch session with q and returns it.
func (p *rawPeer) session(t testing.TB, q *rawPeer) punch.SessionID {
	t.Helper()
	if err := p.send(&Message{Type: TypeConnect, Peer: q.key.String()}); err != nil {
		t.Fatal(err)
	}
	var id punch.SessionID
	select {
	case id = <-p.asked:
	case <-time.After(5 * time.Second):
		t.Fatal("no punch session issued")
	}
	// q's punch, with its token, may come a moment after p's.
	for end := time.Now().Add(5 * time.Second); q.token(id) == (RelayToken{}); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("no punch instruction for the other side")
		}
	}
	return id
}

// relayHalf opens one side of session id's relay from p's source, with
// p's token for the session, and sends the header, without waiting to be
// paired.
func (p *rawPeer) relayHalf(t testing.TB, id punch.SessionID, side int) net.Conn {
	t.Helper()
	return relayHalfFrom(t, p.ip, p.addr, id, side, p.token(id))
}

// relayHalfFrom opens one side of session id's relay from ip with tok.
func relayHalfFrom(t testing.TB, ip, addr string, id punch.SessionID, side int, tok RelayToken) net.Conn {
	t.Helper()
	c := dialFrom(t, ip, addr)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(relayHeader(id, side, tok)); err != nil {
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
	return DialRelay(ctx, c, id, side, p.token(id))
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
	_, _, bConns0, _ := srv.guard.counts(netip.MustParseAddr(b.ip))
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
	g := waitGoroutines(g0+2, 3*time.Second)
	_, _, srcConns, _ := srv.guard.counts(netip.MustParseAddr(a.ip))
	t.Logf("%d pairs refused at the cap: goroutines %d before, %d after; %s's connection slots %d before, %d after",
		refused, g0, g, a.ip, srcConns0, srcConns)
	if g > g0+2 {
		t.Errorf("%d goroutines after %d refused pairs, %d before", g, refused, g0)
	}
	waitCounts(t, srv, a.ip, srcConns0, 0)
	waitCounts(t, srv, b.ip, bConns0, 0)
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

// relayServer starts a relaying server with cfg and fast sessions.
func relayServer(t *testing.T, ctx context.Context, cfg ServerConfig) testServer {
	t.Helper()
	// PairWindow: each ask starts a session of its own.
	cfg.Relay, cfg.NATWait, cfg.PairWindow = true, 10*time.Millisecond, time.Nanosecond
	return startServer(t, ctx, cfg)
}

// used returns the bytes the meter billed to key today.
func used(s *Server, key identity.PublicKey) int64 {
	s.meter.mu.Lock()
	defer s.meter.mu.Unlock()
	if km := s.meter.keys[key]; km != nil {
		return km.used
	}
	return 0
}

// TestStrangerCannotRelayAsAPeer: a stranger that learnt an honest pair's
// session ID (it crosses the wire in clear in UDP probes) opens both
// sides of its relay, from its own source and from the pair's, with no
// token, a token of its own and the other side's token, hoping to relay
// on the pair's rate and budget. Nothing pairs and nothing is billed.
// Then a peer the victim consents to opens the victim's side of their own
// session with its own token: refused too. The pair's own relay still
// pairs, its second side from another source than its key registered
// from (a carrier-grade NAT's other address), and bytes are billed to
// whoever sent them.
func TestStrangerCannotRelayAsAPeer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := relayServer(t, ctx, ServerConfig{})
	victim, friend := newRawPeer(t, ts, "127.0.0.31"), newRawPeer(t, ts, "127.0.0.32")
	const stranger = "127.0.0.30"
	id := friend.session(t, victim)
	var forged RelayToken
	forged[0] = 1
	for _, try := range []struct {
		ip  string
		tok [2]RelayToken
	}{
		{stranger, [2]RelayToken{}},
		{stranger, [2]RelayToken{forged, forged}},
		{stranger, [2]RelayToken{victim.token(id), friend.token(id)}}, // each side's token on the other side
		{"127.0.0.31", [2]RelayToken{}},
		{"127.0.0.32", [2]RelayToken{friend.token(id), forged}},
	} {
		h0 := relayHalfFrom(t, try.ip, ts.addr, id, 0, try.tok[0])
		h1 := relayHalfFrom(t, try.ip, ts.addr, id, 1, try.tok[1])
		for _, c := range []net.Conn{h0, h1} {
			c.Write(make([]byte, 64<<10))
		}
		if paired(h0, 300*time.Millisecond) || paired(h1, 10*time.Millisecond) {
			t.Fatalf("a relay with tokens %v from %s paired", try.tok, try.ip)
		}
		h0.Close()
		h1.Close()
	}
	if n, m := used(ts.srv, friend.key), used(ts.srv, victim.key); n != 0 || m != 0 {
		t.Fatalf("%d and %d bytes billed to the pair", n, m)
	}
	// The friend takes the victim's side with its own token.
	mine, theirs := friend.relayHalf(t, id, 0), friend.relayHalf(t, id, 1)
	if paired(mine, time.Second) || paired(theirs, 10*time.Millisecond) {
		t.Fatal("a peer relayed on the victim's side")
	}
	mine.Close()
	theirs.Close()

	// The pair itself, the victim's side from another source.
	id = friend.session(t, victim)
	s := relayHalfFrom(t, friend.ip, ts.addr, id, 0, friend.token(id))
	v := relayHalfFrom(t, "127.0.0.35", ts.addr, id, 1, victim.token(id))
	if !paired(s, 5*time.Second) || !paired(v, time.Second) {
		t.Fatal("the pair's relay did not pair from another source of the victim")
	}
	s.Write(make([]byte, 100<<10))
	if _, err := io.ReadFull(v, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	if n, m := used(ts.srv, friend.key), used(ts.srv, victim.key); n != 100<<10 || m != 0 {
		t.Fatalf("billed %d bytes to the sender and %d to the receiver; want 100 KiB and 0", n, m)
	}
}

// TestSessionServesOnePair: once a session's relay has paired, the
// session ID opens no other relay, during that relay or after it.
func TestSessionServesOnePair(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := relayServer(t, ctx, ServerConfig{RelayWait: 500 * time.Millisecond})
	a, b := newRawPeer(t, ts, "127.0.0.33"), newRawPeer(t, ts, "127.0.0.34")
	id := a.session(t, b)
	x, y := relayPairFrom(t, ctx, a, b, id)
	for round := range 2 {
		h0, h1 := a.relayHalf(t, id, 0), b.relayHalf(t, id, 1)
		if paired(h0, time.Second) || paired(h1, 10*time.Millisecond) {
			t.Fatalf("round %d: a second pair was relayed for one session", round)
		}
		h0.Close()
		h1.Close()
		x.Close()
		y.Close()
	}
}

// TestRelaysPerKey: a key holds at most MaxRelaysPerKey relays at once;
// the next is refused, and freed slots are usable again.
func TestRelaysPerKey(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := relayServer(t, ctx, ServerConfig{MaxRelaysPerKey: 2})
	a, b := newRawPeer(t, ts, "127.0.0.35"), newRawPeer(t, ts, "127.0.0.36")
	x, y := relayPairFrom(t, ctx, a, b, a.session(t, b))
	relayPairFrom(t, ctx, a, b, a.session(t, b))
	id := a.session(t, b)
	h := a.relayHalf(t, id, 0)
	if !closedWithin(h, 2*time.Second) {
		t.Fatal("a key's third relay was not refused")
	}
	x.Close() // ends that relay, and frees one of a's slots
	y.Close()
	deadline := time.Now().Add(3 * time.Second)
	for waitingRelays(ts.srv) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a freed relay slot was not usable again")
		}
		h := a.relayHalf(t, id, 0)
		time.Sleep(50 * time.Millisecond)
		if waitingRelays(ts.srv) == 0 {
			h.Close()
		}
	}
}

// TestRelayDailyBudget: a key that has sent its day's budget through
// relays has its relay ended and new ones refused; its partner, which
// sent nothing, keeps its budget.
func TestRelayDailyBudget(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const budget = 256 << 10
	ts := relayServer(t, ctx, ServerConfig{RelayDailyBytes: budget})
	a, b := newRawPeer(t, ts, "127.0.0.37"), newRawPeer(t, ts, "127.0.0.38")
	x, y := relayPairFrom(t, ctx, a, b, a.session(t, b))
	go func() {
		x.SetWriteDeadline(time.Now().Add(5 * time.Second))
		x.Write(make([]byte, 4*budget))
	}()
	y.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, y)
	if err != nil {
		t.Fatalf("after %d bytes: %v (want the relay closed)", n, err)
	}
	if n > budget+bufcopy.MaxWrite {
		t.Fatalf("%d bytes relayed on a budget of %d", n, budget)
	}
	if h := a.relayHalf(t, a.session(t, b), 0); !closedWithin(h, 2*time.Second) {
		t.Fatal("a key past its budget opened a relay")
	}
	if h := b.relayHalf(t, b.session(t, a), 0); closedWithin(h, 200*time.Millisecond) {
		t.Fatal("the partner that sent nothing was refused")
	}
}

// TestRelayCapIsShared: at the relay cap, a source holding every relay
// loses its oldest to a pair from sources that hold none, and a source
// cannot take relays from one no busier than itself.
func TestRelayCapIsShared(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := relayServer(t, ctx, ServerConfig{MaxRelays: 4})
	h1, h2 := newRawPeer(t, ts, "127.0.0.39"), newRawPeer(t, ts, "127.0.0.39")
	var held []net.Conn
	for range 4 {
		x, _ := relayPairFrom(t, ctx, h1, h2, h1.session(t, h2))
		held = append(held, x)
	}
	// The hog's next pair takes nothing from itself.
	id := h1.session(t, h2)
	w := h1.relayHalf(t, id, 0)
	for deadline := time.Now().Add(2 * time.Second); waitingRelays(ts.srv) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the hog's relay half is not waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := h2.relayHalf(t, id, 1); paired(r, time.Second) {
		t.Fatal("a pair past the cap was relayed")
	}
	w.Close()
	a, b := newRawPeer(t, ts, "127.0.0.40"), newRawPeer(t, ts, "127.0.0.41")
	relayPairFrom(t, ctx, a, b, a.session(t, b))
	if !closedWithin(held[0], 2*time.Second) {
		t.Fatal("the hog's oldest relay was not the one taken")
	}
	for _, c := range held[1:] {
		if closedWithin(c, 10*time.Millisecond) {
			t.Fatal("more than one of the hog's relays was taken")
		}
	}
}

// TestLeavingEndsStartingSessions: a peer asks for sessions with a peer
// that never reports its NAT (so each would wait NATWait, 10 s) and
// leaves: the goroutines starting them end with its connection, not 10 s
// later, and its source's slot is given back.
func TestLeavingEndsStartingSessions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{NATWait: 10 * time.Second})
	silent, peer, err := registerRaw(t, "127.0.0.44", ts.addr, ts.srv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(100 * time.Millisecond)
	g0 := runtime.NumGoroutine()
	a := newRawPeer(t, ts, "127.0.0.43")
	for range maxStarting {
		if err := a.send(&Message{Type: TypeConnect, Peer: peer.String()}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if g := runtime.NumGoroutine(); g < g0+maxStarting {
		t.Fatalf("%d goroutines, %d before: the sessions are not starting", g, g0)
	}
	a.c.Close()
	if g := waitGoroutines(g0+1, 2*time.Second); g > g0+1 {
		t.Errorf("%d goroutines 2s after the peer left, %d before it came", g, g0)
	}
	waitCounts(t, ts.srv, a.ip, 0, 0)
}

// TestRelayFillAtTheCap: 10 sources, with 8 keys each, fill all of the
// default 1000 relay slots; a pair from two other sources still relays,
// at once, and the relay it takes is one hog's oldest. (10 such sources
// used to hold every slot, and a real pair was refused.) New connections
// are not rate-limited here, so that the fill takes seconds.
func TestRelayFillAtTheCap(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := relayServer(t, ctx, ServerConfig{ConnRate: -1})
	var oldest []net.Conn // each hog's first relay
	for s := range 10 {
		ip := fmt.Sprintf("127.0.0.%d", 60+s)
		var keys []*rawPeer
		for range 8 {
			keys = append(keys, newRawPeer(t, ts, ip))
		}
		for i := range 100 {
			a, b := keys[2*(i%4)], keys[2*(i%4)+1]
			x, _ := relayPairFrom(t, ctx, a, b, a.session(t, b))
			if i == 0 {
				oldest = append(oldest, x)
			}
		}
	}
	ts.srv.relays.mu.Lock()
	held := len(ts.srv.relays.pairs)
	ts.srv.relays.mu.Unlock()
	if held != ts.srv.cfg.MaxRelays {
		t.Fatalf("the hogs hold %d relays, want the cap of %d", held, ts.srv.cfg.MaxRelays)
	}
	a, b := newRawPeer(t, ts, "127.0.0.70"), newRawPeer(t, ts, "127.0.0.71")
	start := time.Now()
	x, y := relayPairFrom(t, ctx, a, b, a.session(t, b))
	x.Write([]byte("hi"))
	if _, err := io.ReadFull(y, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	t.Logf("with %d relays held by 10 sources, a new pair relayed in %v", held, time.Since(start).Round(time.Millisecond))
	taken := 0
	for _, c := range oldest {
		if closedWithin(c, 200*time.Millisecond) {
			taken++
		}
	}
	if taken != 1 {
		t.Errorf("%d hogs lost their oldest relay, want 1", taken)
	}
}

// TestRelayDefaultRate: with the default settings, a fresh key relays at
// the default rate (8 MiB/s, after a burst of 8 MiB), not at the speed
// of the machine: 32 MiB take at least 3 s. (They took well under a
// second: 760-880 MiB/s were measured.)
func TestRelayDefaultRate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := relayServer(t, ctx, ServerConfig{})
	a, b := newRawPeer(t, ts, "127.0.0.72"), newRawPeer(t, ts, "127.0.0.73")
	x, y := relayPairFrom(t, ctx, a, b, a.session(t, b))
	const size = 32 << 20
	start := time.Now()
	go func() {
		x.Write(make([]byte, size))
		x.(*net.TCPConn).CloseWrite()
	}()
	n, err := io.Copy(io.Discard, y)
	took := time.Since(start)
	t.Logf("%d MiB relayed in %v: %.1f MiB/s", n>>20, took.Round(time.Millisecond), float64(n)/(1<<20)/took.Seconds())
	if err != nil || n != size {
		t.Fatalf("relayed %d bytes, %v", n, err)
	}
	if took < 2900*time.Millisecond {
		t.Errorf("32 MiB at the default 8 MiB/s took %v", took)
	}
}
