package rendezvous

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// These tests play bad clients against a real server on loopback. Linux
// routes all of 127.0.0.0/8 to lo, so each bad or good client dials from
// an address of its own (127.0.0.x) and so is a source of its own.

// dialerFrom dials TCP from source ip (port chosen by the OS).
func dialerFrom(ip string) func(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

func dialFrom(t testing.TB, ip, addr string) net.Conn {
	t.Helper()
	c, err := dialerFrom(ip)(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports whether the server closes c within d (a read
// returns EOF or a reset rather than timing out), reading and dropping
// whatever it sends meanwhile.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// logServer is startServer with the server's log captured.
func logServer(t *testing.T, ctx context.Context, cfg ServerConfig) (testServer, *test.Hook) {
	t.Helper()
	l, hook := test.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	cfg.Log = l
	return startServer(t, ctx, cfg), hook
}

// summaries returns the refusal summary lines logged for source.
func summaries(hook *test.Hook, source string) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if strings.HasPrefix(e.Message, "refused or failed") && e.Data["source"] == source {
			out = append(out, e)
		}
	}
	return out
}

// registerRaw registers a fresh key over a TLS connection from source ip,
// as a Client would but without its goroutines.
func registerRaw(t testing.TB, ip, addr string, server identity.PublicKey) (*tls.Conn, identity.PublicKey, error) {
	key, _ := identity.Generate()
	cert, err := identity.Certificate(key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dialerFrom(ip)(context.Background(), addr)
	if err != nil {
		return nil, key.Public(), err
	}
	// A reset at the end leaves no TIME_WAIT on the source's ports.
	raw.(*net.TCPConn).SetLinger(0)
	raw.SetDeadline(time.Now().Add(5 * time.Second * raceSlowdown))
	c := tls.Client(raw, identity.TLSConfig(cert, identity.Pinned(server)))
	if err := WriteMessage(c, &Message{Type: TypeRegister, Version: Version}); err != nil {
		raw.Close()
		return nil, key.Public(), err
	}
	m, err := ReadMessage(c)
	if err == nil && m.Type != TypeRegistered {
		err = errors.New("answered " + m.Type + " " + m.Code)
	}
	if err != nil {
		raw.Close()
		return nil, key.Public(), err
	}
	raw.SetDeadline(time.Time{})
	return c, key.Public(), nil
}

// TestFloodDoesNotStopLegitimatePeers: one source floods the server with
// every kind of bad client at once (connections opened and dropped,
// connections held silent, fresh keys registering and asking for punch
// sessions as fast as they can, oversized frames) while two legitimate
// peers from other sources register and coordinate a punch. Their
// coordination completes within 2 s, the flooding source never holds
// more than its share, and the process's goroutines and heap stay
// bounded. It runs with the default limits, and again without a rate of
// new connections, so that the caps alone bound the flood.
func TestFloodDoesNotStopLegitimatePeers(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the server for a few seconds")
	}
	t.Run("defaults", func(t *testing.T) { flood(t, ServerConfig{}) })
	t.Run("caps only", func(t *testing.T) { flood(t, ServerConfig{ConnRate: -1}) })
}

func flood(t *testing.T, cfg ServerConfig) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const attacker = "127.0.0.9"
	cfg.NATWait, cfg.HandshakeTimeout, cfg.RefusalLogInterval = 100*time.Millisecond, 2*time.Second, 500*time.Millisecond
	ts, hook := logServer(t, ctx, cfg)
	cfg = ts.srv.cfg
	runtime.GC()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()

	// The flood, until the test ends.
	fctx, stopFlood := context.WithCancel(ctx)
	var flood sync.WaitGroup
	defer flood.Wait()
	defer stopFlood()
	var dials, registered, connects atomic.Int64
	var victim atomic.Value // the legitimate peer b's key, once known
	// The attacker's connections end with a reset: closing first would
	// leave each one's port in TIME_WAIT, and a few thousand a second
	// would soon use up 127.0.0.9's ports (and test runs after this one
	// would find none).
	dial := func() (net.Conn, error) {
		c, err := dialerFrom(attacker)(fctx, ts.addr)
		if err != nil {
			// Out of ports, say: not the server's doing, and no reason to
			// spin.
			time.Sleep(time.Millisecond)
			return nil, err
		}
		c.(*net.TCPConn).SetLinger(0)
		dials.Add(1)
		return c, nil
	}
	const workers = 8
	for w := range workers {
		flood.Go(func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for fctx.Err() == nil {
				switch w % 4 {
				case 0: // open and drop
					if c, err := dial(); err == nil {
						c.Close()
					}
				case 1: // open and hold silent, and a byte at a time
					if c, err := dial(); err == nil {
						c.Write([]byte{0x16})
						held = append(held, c)
					}
					if len(held) > 64 {
						held[0].Close()
						held = held[1:]
					}
				case 2: // register fresh keys and ask for sessions as fast as possible
					c, _, err := registerRaw(t, attacker, ts.addr, ts.srv.PublicKey())
					if err != nil {
						continue
					}
					registered.Add(1)
					held = append(held, c)
					peer := identity.PublicKey{}.String()
					if v, ok := victim.Load().(identity.PublicKey); ok {
						peer = v.String()
					}
					go io.Copy(io.Discard, c) // the server's answers
					for range 200 {
						c.SetWriteDeadline(time.Now().Add(time.Second))
						if WriteMessage(c, &Message{Type: TypeConnect, Peer: peer}) != nil {
							break
						}
						connects.Add(1)
					}
				case 3: // oversized frames, inside TLS and out
					c, err := dial()
					if err != nil {
						continue
					}
					c.Write([]byte{0x16, 3, 1, 0xff, 0xff})
					c.Write(make([]byte, 1<<10))
					c.Close()
				}
			}
		})
	}
	// Peaks, sampled while the flood runs.
	var maxConns, maxShakes, maxGoroutines atomic.Int64
	var maxHeap atomic.Uint64
	flood.Go(func() {
		for fctx.Err() == nil {
			_, _, sc, sh := ts.srv.guard.counts(netip.MustParseAddr(attacker))
			maxConns.Store(max(maxConns.Load(), int64(sc)))
			maxShakes.Store(max(maxShakes.Load(), int64(sh)))
			maxGoroutines.Store(max(maxGoroutines.Load(), int64(runtime.NumGoroutine())))
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			maxHeap.Store(max(maxHeap.Load(), ms.HeapInuse))
			time.Sleep(50 * time.Millisecond)
		}
	})
	time.Sleep(500 * time.Millisecond) // the flood is in full swing

	// The legitimate pair, from sources of their own. b is the flood's
	// victim: the attackers ask for sessions with it, and b must tell
	// a's punch from theirs.
	start := time.Now()
	var aKey atomic.Value
	aGot, bGot := make(chan struct{}), make(chan struct{})
	var aOnce, bOnce sync.Once
	var bKey identity.PublicKey
	b := startClient(t, ctx, ts, ClientConfig{Dial: dialerFrom("127.0.0.3"), OnPunch: func(p Punch) {
		if k, ok := aKey.Load().(identity.PublicKey); ok && p.Peer == k {
			bOnce.Do(func() { close(bGot) })
		}
	}})
	bKey = b.cfg.Key.Public()
	victim.Store(bKey)
	a := startClient(t, ctx, ts, ClientConfig{Dial: dialerFrom("127.0.0.2"), OnPunch: func(p Punch) {
		if p.Peer == bKey {
			aOnce.Do(func() { close(aGot) })
		}
	}})
	aKey.Store(a.cfg.Key.Public())
	for _, c := range []*Client{a, b} {
		select {
		case <-c.Registered():
		case <-time.After(2 * time.Second):
			t.Fatalf("a legitimate peer did not register within 2s of the flood (%v)", time.Since(start))
		}
	}
	registeredIn := time.Since(start)
	a.SetNAT(punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent})
	b.SetNAT(punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent})
	asked := time.Now()
	if err := a.Connect(bKey); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(2 * time.Second)
	for _, got := range []chan struct{}{aGot, bGot} {
		select {
		case <-got:
		case <-deadline:
			t.Fatal("the legitimate coordination did not complete within 2s of asking")
		}
	}
	t.Logf("legitimate pair: registered %v after starting, both punched %v after asking (flood: %d dials, %d keys registered, %d connects)",
		registeredIn.Round(time.Millisecond), time.Since(asked).Round(time.Millisecond), dials.Load(), registered.Load(), connects.Load())
	if registeredIn+time.Since(asked) > 2*time.Second {
		t.Errorf("register and coordinate took %v", registeredIn+time.Since(asked))
	}
	time.Sleep(600 * time.Millisecond) // one more sample, and a summary logged
	stopFlood()
	flood.Wait()

	t.Logf("attacker peaks: %d connections, %d handshakes; process peaks: %d goroutines (%d before), heap %d MiB (%d before)",
		maxConns.Load(), maxShakes.Load(), maxGoroutines.Load(), g0, maxHeap.Load()>>20, ms0.HeapInuse>>20)
	if maxConns.Load() > int64(cfg.MaxConnsPerSource) || maxShakes.Load() > int64(cfg.MaxHandshakesPerSource) {
		t.Errorf("the attacker held %d connections, %d in handshake; caps %d, %d",
			maxConns.Load(), maxShakes.Load(), cfg.MaxConnsPerSource, cfg.MaxHandshakesPerSource)
	}
	// Per attacker connection: the server's goroutine and the attacker's
	// reader; plus the sessions being started and the flood's workers.
	if limit := int64(g0 + 3*cfg.MaxConnsPerSource + 200); maxGoroutines.Load() > limit {
		t.Errorf("%d goroutines at the peak, want at most %d", maxGoroutines.Load(), limit)
	}
	if grew := int64(maxHeap.Load()) - int64(ms0.HeapInuse); grew > 128<<20 {
		t.Errorf("heap grew by %d MiB", grew>>20)
	}
	if dials.Load() < 100 {
		t.Errorf("the flood opened only %d connections", dials.Load())
	}
	// Refusals were logged, summed up.
	lines := summaries(hook, attacker)
	if len(lines) == 0 {
		t.Error("no refusal summary for the attacker")
	}
	if len(lines) > 10 {
		t.Errorf("%d summary lines for the attacker in a few seconds", len(lines))
	}
}

// TestSlowLoris: connections that send a byte a second, whether as a TLS
// ClientHello, a probe header, or a register frame inside TLS, are closed
// at the handshake timeout, however long they keep trickling.
func TestSlowLoris(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const timeout = 1500 * time.Millisecond
	ts := startServer(t, ctx, ServerConfig{HandshakeTimeout: timeout})
	k, _ := identity.Generate()
	cert, _ := identity.Certificate(k)
	const n = 12
	var wg sync.WaitGroup
	took := make([]time.Duration, n)
	for i := range n {
		wg.Go(func() {
			c := dialFrom(t, "127.0.0.4", ts.addr)
			start := time.Now()
			var w io.Writer = c
			var trickle []byte
			switch i % 3 {
			case 0: // a ClientHello's first bytes
				trickle = []byte{0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3}
			case 1: // a TCP probe's header
				trickle = []byte(tcpProbeMagic + "0123456789abcdef")
			case 2: // a register frame, inside a completed TLS handshake
				tc := tls.Client(c, identity.TLSConfig(cert, identity.Pinned(ts.srv.PublicKey())))
				if err := tc.Handshake(); err != nil {
					t.Error(err)
					return
				}
				w = tc
				var b bytes.Buffer
				WriteMessage(&b, &Message{Type: TypeRegister, Version: Version})
				trickle = b.Bytes()
			}
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				c.SetReadDeadline(time.Now().Add(4 * timeout))
				io.Copy(io.Discard, c)
				took[i] = time.Since(start)
			}()
			for _, b := range trickle {
				if _, err := w.Write([]byte{b}); err != nil {
					break
				}
				select {
				case <-closed:
				case <-time.After(time.Second):
					continue
				}
				break
			}
			<-closed
		})
	}
	wg.Wait()
	for i, d := range took {
		if d < timeout-100*time.Millisecond || d > timeout+time.Second {
			t.Errorf("connection %d (kind %d) closed after %v; handshake timeout %v", i, i%3, d, timeout)
		}
	}
	waitCounts(t, ts.srv, "127.0.0.4", 0, 0)
}

// waitCounts waits until the guard holds conns connections from source
// ip, shakes of them in handshake.
func waitCounts(t *testing.T, srv *Server, ip string, conns, shakes int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, _, c, s := srv.guard.counts(netip.MustParseAddr(ip))
		if c == conns && s == shakes {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("source %s holds %d connections, %d in handshake; want %d, %d", ip, c, s, conns, shakes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPerSourceLimits: past its caps or its rate, a source's new
// connections are closed at once, other sources are served, and the
// refusals are logged as one line per interval.
func TestPerSourceLimits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts, hook := logServer(t, ctx, ServerConfig{MaxHandshakesPerSource: 3, MaxConnsPerSource: 5,
		ConnRate: 1, ConnBurst: 8, RefusalLogInterval: 300 * time.Millisecond})

	// Three silent connections fill the source's handshakes; the fourth
	// is closed at once.
	for range 3 {
		c := dialFrom(t, "127.0.0.10", ts.addr)
		if closedWithin(c, 100*time.Millisecond) {
			t.Fatal("an admitted connection was closed")
		}
	}
	waitCounts(t, ts.srv, "127.0.0.10", 3, 3)
	if !closedWithin(dialFrom(t, "127.0.0.10", ts.addr), time.Second) {
		t.Fatal("a connection past the handshake cap was kept")
	}
	// Another source is not affected.
	c, _, err := registerRaw(t, "127.0.0.11", ts.addr, ts.srv.PublicKey())
	if err != nil {
		t.Fatalf("another source: %v", err)
	}
	c.Close()

	// Registered peers do not count as handshakes, but as connections:
	// with two registered, the source has 5 connections and no room.
	src := "127.0.0.12"
	for range 5 {
		c, _, err := registerRaw(t, src, ts.addr, ts.srv.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	waitCounts(t, ts.srv, src, 5, 0)
	if _, _, err := registerRaw(t, src, ts.addr, ts.srv.PublicKey()); err == nil {
		t.Fatal("a registration past the connection cap was let in")
	}

	// The rate: a burst of 8, then one a second.
	src = "127.0.0.13"
	refused := 0
	for range 20 {
		c := dialFrom(t, src, ts.addr)
		if closedWithin(c, 100*time.Millisecond) {
			refused++
		}
		c.Close()
	}
	if refused < 10 || refused > 12 {
		t.Errorf("%d of 20 connections refused at a burst of 8 and 1/s", refused)
	}

	// Every refusal and failed handshake was counted, and logged once
	// per interval.
	time.Sleep(700 * time.Millisecond)
	for _, src := range []string{"127.0.0.10", "127.0.0.12", "127.0.0.13"} {
		lines := summaries(hook, src)
		if len(lines) == 0 || len(lines) > 3 {
			t.Errorf("%d summary lines for %s", len(lines), src)
		}
	}
	total := 0
	for _, e := range summaries(hook, "127.0.0.13") {
		if n, ok := e.Data[refusedSourceRate].(int); ok {
			total += n
		}
	}
	if total != refused {
		t.Errorf("summaries count %d refusals over the rate, want %d", total, refused)
	}
}

// TestGlobalCaps: past MaxConns, any source's connection is closed at
// once; as connections end, there is room again.
func TestGlobalCaps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{MaxConns: 4, MaxHandshakes: 3})
	var held []net.Conn
	for i := range 3 {
		c := dialFrom(t, "127.0.1."+string(rune('1'+i)), ts.addr)
		held = append(held, c)
	}
	time.Sleep(50 * time.Millisecond)
	if !closedWithin(dialFrom(t, "127.0.1.9", ts.addr), time.Second) {
		t.Fatal("a fourth handshake was let in")
	}
	// A registered peer is a connection, not a handshake.
	held[0].Close()
	waitCounts(t, ts.srv, "127.0.1.1", 0, 0)
	c, _, err := registerRaw(t, "127.0.1.8", ts.addr, ts.srv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held = append(held, dialFrom(t, "127.0.1.7", ts.addr))
	time.Sleep(50 * time.Millisecond)
	if conns, shakes, _, _ := ts.srv.guard.counts(netip.Addr{}); conns != 4 || shakes != 3 {
		t.Fatalf("guard holds %d connections, %d handshakes; want 4, 3", conns, shakes)
	}
	if !closedWithin(dialFrom(t, "127.0.1.9", ts.addr), time.Second) {
		t.Fatal("a fifth connection was let in")
	}
}

// TestOversizedMessage: a frame over MaxMessage, before or after
// registering, is answered with a protocol error and the connection is
// closed; the server does not wait for the body.
func TestOversizedMessage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{})
	key, _ := identity.Generate()
	cert, _ := identity.Certificate(key)
	huge := []byte{0, 1, 0, 1} // 64 KiB + 1
	for _, registered := range []bool{false, true} {
		raw := dialFrom(t, "127.0.0.14", ts.addr)
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		c := tls.Client(raw, identity.TLSConfig(cert, identity.Pinned(ts.srv.PublicKey())))
		if registered {
			WriteMessage(c, &Message{Type: TypeRegister, Version: Version})
			if m, err := ReadMessage(c); err != nil || m.Type != TypeRegistered {
				t.Fatalf("register: %v %v", m, err)
			}
		}
		start := time.Now()
		if _, err := c.Write(huge); err != nil {
			t.Fatal(err)
		}
		m, err := ReadMessage(c)
		if err != nil || m.Type != TypeError || m.Code != CodeProtocol {
			t.Fatalf("registered %v: answered %+v, %v; want a protocol error", registered, m, err)
		}
		if _, err := ReadMessage(c); err == nil {
			t.Fatalf("registered %v: the connection stayed open", registered)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("registered %v: closed after %v", registered, d)
		}
	}
}

// TestReadMessageGrowsWithTheBody: a header announcing a large frame
// costs what has arrived, not what it announced.
func TestReadMessageGrowsWithTheBody(t *testing.T) {
	var b bytes.Buffer
	b.Write([]byte{0, 1, 0, 0}) // 64 KiB announced, 10 bytes sent
	b.WriteString(`{"type":"p`)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	_, err := ReadMessage(bytes.NewReader(b.Bytes()))
	runtime.ReadMemStats(&ms1)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want unexpected EOF", err)
	}
	if got := ms1.TotalAlloc - ms0.TotalAlloc; got > 16<<10 {
		t.Errorf("allocated %d bytes for a 10-byte trickle", got)
	}
}

// recorder is a TCP proxy that records what its client sends.
type recorder struct {
	ln   net.Listener
	mu   sync.Mutex
	sent bytes.Buffer
}

func record(t *testing.T, to string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(c, up); c.Close() }()
			go func() { io.Copy(io.MultiWriter(up, r), c); up.Close() }()
		}
	}()
	return r
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent.Write(b)
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.sent.Bytes())
}

// peerConnOf returns the connection the server has registered for key.
func peerConnOf(s *Server, key identity.PublicKey) *peerConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[key]
}

// TestReplayedRegistration: the bytes of a real client's registration,
// replayed on a new connection, register nothing: TLS 1.3 binds the
// client's proof of its key to the server's fresh handshake. The real
// peer stays registered on its own connection.
func TestReplayedRegistration(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{NATWait: 10 * time.Millisecond})
	rec := record(t, ts.addr)
	punches := make(chan Punch, 4)
	victim := startClient(t, ctx, testServer{ts.srv, rec.ln.Addr().String()}, ClientConfig{
		OnPunch: func(p Punch) { punches <- p }})
	waitRegistered(t, victim)
	key := victim.cfg.Key.Public()
	before := peerConnOf(ts.srv, key)
	time.Sleep(100 * time.Millisecond) // the first pings, recorded too
	captured := rec.bytes()
	if len(captured) < 500 {
		t.Fatalf("captured only %d bytes", len(captured))
	}

	for range 3 {
		c := dialFrom(t, "127.0.0.15", ts.addr)
		c.Write(captured)
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("the server kept a replayed registration open")
		}
	}
	if got := peerConnOf(ts.srv, key); got != before {
		t.Fatal("the replay replaced the peer's connection")
	}
	ts.srv.mu.Lock()
	n := len(ts.srv.peers)
	ts.srv.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d peers registered, want the one real peer", n)
	}
	// The real peer is still reachable.
	other := startClient(t, ctx, ts, ClientConfig{})
	waitRegistered(t, other)
	other.Connect(key)
	select {
	case <-punches:
	case <-time.After(5 * time.Second):
		t.Fatal("the real peer got no punch after the replay")
	}
}

// TestClaimingAnotherKey: a client presenting a certificate for another
// peer's key, without that key's private half, fails its handshake; the
// real peer's registration is not disturbed.
func TestClaimingAnotherKey(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{NATWait: 10 * time.Millisecond})
	punches := make(chan Punch, 4)
	victim := startClient(t, ctx, ts, ClientConfig{OnPunch: func(p Punch) { punches <- p }})
	waitRegistered(t, victim)
	key := victim.cfg.Key.Public()
	before := peerConnOf(ts.srv, key)

	// The impostor's certificate holds the victim's public key, signed
	// by the impostor, and the impostor signs the handshake with its own
	// key.
	_, impostor, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Unix(0, 0),
		NotAfter: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ed25519.PublicKey(key[:]), impostor)
	if err != nil {
		t.Fatal(err)
	}
	forged := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: impostor}
	for range 3 {
		raw := dialFrom(t, "127.0.0.16", ts.addr)
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		c := tls.Client(raw, identity.TLSConfig(forged, identity.Pinned(ts.srv.PublicKey())))
		// TLS 1.3: the client finishes before the server has checked
		// its proof, so the refusal shows on the first read.
		c.Handshake()
		WriteMessage(c, &Message{Type: TypeRegister, Version: Version})
		if m, err := ReadMessage(c); err == nil {
			t.Fatalf("the impostor was answered %+v", m)
		}
	}
	if got := peerConnOf(ts.srv, key); got != before {
		t.Fatal("the impostor replaced the peer's connection")
	}
	select {
	case <-victim.Registered():
	default:
		t.Fatal("the victim lost its registration")
	}
	other := startClient(t, ctx, ts, ClientConfig{})
	waitRegistered(t, other)
	other.Connect(key)
	select {
	case p := <-punches:
		if p.Peer != other.cfg.Key.Public() {
			t.Fatalf("punch from %s", p.Peer.Short())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the real peer got no punch")
	}
}

// TestConnectRate: a peer asking for sessions faster than ConnectRate is
// answered rate_limited past its burst, stays connected, and the peer it
// asks for gets no more punch instructions than the rate allows.
func TestConnectRate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{NATWait: 10 * time.Millisecond, ConnectRate: 2, ConnectBurst: 5})
	var victimPunches atomic.Int32
	victim := startClient(t, ctx, ts, ClientConfig{OnPunch: func(Punch) { victimPunches.Add(1) }})
	waitRegistered(t, victim)
	victim.SetNAT(punch.NAT{Behind: true})
	c, _, err := registerRaw(t, "127.0.0.17", ts.addr, ts.srv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	WriteMessage(c, &Message{Type: TypeNAT, NAT: ReportNAT(punch.NAT{Behind: true})})
	const asks = 50
	start := time.Now()
	for range asks {
		WriteMessage(c, &Message{Type: TypeConnect, Peer: victim.cfg.Key.Public().String()})
	}
	var punches, limited int
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for punches+limited < asks {
		m, err := ReadMessage(c)
		if err != nil {
			t.Fatalf("after %d punches and %d refusals: %v", punches, limited, err)
		}
		switch {
		case m.Type == TypePunch:
			punches++
		case m.Type == TypeError && m.Code == CodeRateLimited:
			limited++
		}
	}
	allowed := 5 + int(2*time.Since(start).Seconds()) + 1
	if punches > allowed || punches < 5 {
		t.Errorf("%d of %d asks got a session; the burst is 5 and the rate 2/s", punches, asks)
	}
	time.Sleep(100 * time.Millisecond)
	if n := int(victimPunches.Load()); n != punches {
		t.Errorf("the victim got %d punch instructions, the asker %d", n, punches)
	}
	// Still connected.
	WriteMessage(c, &Message{Type: TypePing, Seq: 9})
	for {
		m, err := ReadMessage(c)
		if err != nil {
			t.Fatalf("the asker was disconnected: %v", err)
		}
		if m.Type == TypePong {
			break
		}
	}
}

// TestProbeAmplification: no UDP answer is larger than its probe (a bare
// probe as older clients send gets none), and one source's flood of
// probes is answered at its rate while another source is answered.
func TestProbeAmplification(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	serve := func(cfg ServerConfig) net.Addr {
		cfg.Key, _ = identity.Generate()
		cfg.Log = quietLog()
		srv, err := NewServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pc := listenUDP(t, "127.0.0.1:0")
		wg.Go(func() { srv.ServeUDP(ctx, pc) })
		return pc.LocalAddr()
	}
	server := serve(ServerConfig{}.WithoutLimits())

	cl, err := net.ListenPacket("udp4", "127.0.0.18:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var sent, answered int
	// Every length from a bare header to well past a padded probe, both
	// kinds.
	for _, magic := range []string{probeMagic, sessionProbeMagic} {
		for n := 4; n <= 200; n += 4 {
			req := make([]byte, n)
			copy(req, magic)
			rand.Read(req[4:min(n, 20)])
			if magic == sessionProbeMagic && n > 20 {
				req[20] = 0
			}
			if _, err := cl.WriteTo(req, server); err != nil {
				t.Fatal(err)
			}
			sent++
			cl.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			buf := make([]byte, 1500)
			m, _, err := cl.ReadFrom(buf)
			if err != nil {
				continue
			}
			answered++
			if m > n {
				t.Errorf("a %d-byte %q probe was answered with %d bytes", n, magic, m)
			}
		}
	}
	if answered == 0 {
		t.Fatal("no probe answered")
	}
	t.Logf("%d probes of every length, %d answered", sent, answered)

	// A flood from one source: 200 padded probes at once.
	server = serve(ServerConfig{ProbeRate: 10, ProbeBurst: 20})
	flooder, err := net.ListenPacket("udp4", "127.0.0.19:0")
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	start := time.Now()
	for range 200 {
		writeProbe(flooder, plainProbe(), server)
	}
	// Meanwhile another source is answered. The flood may have filled
	// the socket's buffer, which drops datagrams before the server sees
	// them; clients resend (Discover does, three times).
	other, err := net.ListenPacket("udp4", "127.0.0.20:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for try := 1; ; try++ {
		pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		got, err := ProbeUDP(pctx, other, server)
		pcancel()
		if err == nil && got.String() == other.LocalAddr().String() {
			break
		}
		if try == 3 {
			t.Fatalf("another source's probe: %v, %v", got, err)
		}
	}
	replies := 0
	buf := make([]byte, 1500)
	for {
		flooder.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := flooder.ReadFrom(buf); err != nil {
			break
		}
		replies++
	}
	if allowed := 20 + int(10*time.Since(start).Seconds()) + 1; replies > allowed || replies < 20 {
		t.Errorf("%d of 200 flooded probes answered; burst 20, rate 10/s", replies)
	}
}

// TestJanitorSweeps: pair and session records go when they expire,
// without another coordination to sweep them, and the maps a burst grew
// are rebuilt.
func TestJanitorSweeps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{NATWait: 10 * time.Millisecond, PairWindow: 200 * time.Millisecond,
		RelayWindow: 300 * time.Millisecond, UDPWait: 50 * time.Millisecond})
	a, b := startClient(t, ctx, ts, ClientConfig{}), startClient(t, ctx, ts, ClientConfig{})
	waitRegistered(t, a)
	waitRegistered(t, b)
	a.Connect(b.cfg.Key.Public())
	sizes := func() (pairs, issued int) {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.pairs), len(ts.srv.issued)
	}
	deadline := time.Now().Add(2 * time.Second)
	for p, i := sizes(); p == 0 || i == 0; p, i = sizes() {
		if time.Now().After(deadline) {
			t.Fatal("no session was coordinated")
		}
		time.Sleep(10 * time.Millisecond)
	}
	deadline = time.Now().Add(3 * time.Second)
	for p, i := sizes(); p != 0 || i != 0; p, i = sizes() {
		if time.Now().After(deadline) {
			t.Fatalf("%d pairs and %d sessions left after they expired", p, i)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestShrink(t *testing.T) {
	m := make(map[int]int)
	peak := 0
	for i := range 1000 {
		m[i] = i
	}
	if got := shrink(m, &peak); len(got) != 1000 || peak != 1000 {
		t.Fatalf("shrink of a full map: %d entries, peak %d", len(got), peak)
	}
	for i := range 700 {
		delete(m, i)
	}
	m2 := shrink(m, &peak)
	m2[-1] = 0
	if _, ok := m[-1]; !ok || peak != 1000 {
		t.Fatal("a map at 30% of its peak was rebuilt")
	}
	delete(m, -1)
	for i := 700; i < 1000; i++ {
		delete(m, i)
	}
	m3 := shrink(m, &peak)
	m3[-2] = 0
	if _, ok := m[-2]; ok || len(m3) != 1 || peak != 0 {
		t.Fatalf("an emptied map was kept: %d entries, peak %d", len(m3), peak)
	}
}

func TestSourceOf(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::",
		"fe80::1%eth0":         "fe80::",
		"2001:db8:1:3::1":      "2001:db8:1:3::",
	} {
		if got := sourceOf(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("sourceOf(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestNewServerRejectsNaNRates(t *testing.T) {
	k, _ := identity.Generate()
	nan := 0.0
	nan = nan / nan
	if _, err := NewServer(ServerConfig{Key: k, ConnRate: nan}); err == nil {
		t.Fatal("a NaN rate was accepted")
	}
}

// TestMaxSessions: past MaxSessions, the oldest session kept for relays
// is forgotten.
func TestMaxSessions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{NATWait: 10 * time.Millisecond, MaxSessions: 2})
	punches := make(chan Punch, 8)
	a := startClient(t, ctx, ts, ClientConfig{OnPunch: func(p Punch) { punches <- p }})
	b := startClient(t, ctx, ts, ClientConfig{})
	waitRegistered(t, a)
	waitRegistered(t, b)
	var ids []punch.SessionID
	for range 3 {
		// Asking again starts a new session at once.
		a.Connect(b.cfg.Key.Public())
		select {
		case p := <-punches:
			id, _ := punch.ParseSessionID(p.Session)
			ids = append(ids, id)
		case <-time.After(5 * time.Second):
			t.Fatal("no punch")
		}
	}
	ts.srv.mu.Lock()
	defer ts.srv.mu.Unlock()
	_, first := ts.srv.issued[ids[0]]
	_, last := ts.srv.issued[ids[2]]
	if len(ts.srv.issued) != 2 || ts.srv.order.len() != 2 || first || !last {
		t.Fatalf("%d sessions kept (queue %d), the first kept %v, the last %v", len(ts.srv.issued), ts.srv.order.len(), first, last)
	}
}
