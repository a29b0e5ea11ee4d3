package rendezvous

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/benchtest"
	"github.com/warren-p2p/warren/punch"
)

// The server's hot paths, one at a time: what a ping, a coordination and a
// registered peer cost it. e2e's BenchmarkRendezvousScale measures the
// server binary under 10,000 peers; these say where its costs come from.

// benchNAT is a cone NAT report, as most peers send.
var benchNAT = ReportNAT(punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent,
	Allocation: punch.AllocationPreserved, PublicIP: netip.MustParseAddr("203.0.113.7"), LastPort: 41641})

// benchPunch is a punch frame as the server sends one: two LAN endpoints
// and a NAT.
func benchPunch() *Message {
	about := &peerConn{observed: netip.MustParseAddrPort("203.0.113.7:41641"),
		lan: []string{"192.168.1.20:41641", "10.0.0.5:41641"}, nat: benchNAT}
	about.key[0] = 1
	return punchFor(punch.NewSessionID(), 1, about)
}

func benchFrame(b *testing.B, m *Message) []byte {
	b.Helper()
	var buf bytes.Buffer
	if err := WriteMessage(&buf, m); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// discard counts what is written, so the encoder's output is not free to
// drop.
type discard struct{ n int }

func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

func BenchmarkWriteMessage(b *testing.B) {
	for _, tc := range []struct {
		name string
		m    *Message
	}{
		{"pong", &Message{Type: TypePong, Seq: 12345}},
		{"punch", benchPunch()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var d discard
			for b.Loop() {
				if err := WriteMessage(&d, tc.m); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(d.n / b.N))
		})
	}
}

func BenchmarkReadMessage(b *testing.B) {
	peer, _ := identity.Generate()
	for _, tc := range []struct {
		name string
		m    *Message
	}{
		{"ping", &Message{Type: TypePing, Seq: 12345, RTTMs: 0.25}},
		{"connect", &Message{Type: TypeConnect, Peer: peer.Public().String()}},
		{"nat", &Message{Type: TypeNAT, NAT: benchNAT}},
		{"punch", benchPunch()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			frame := benchFrame(b, tc.m)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			r := bytes.NewReader(frame)
			for b.Loop() {
				r.Reset(frame)
				if _, err := ReadMessage(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchServer runs a server with a quiet log, and without the limits on
// connections and requests (its peers all come from 127.0.0.1, as fast
// as they can), on loopback until the benchmark ends.
func benchServer(b *testing.B, cfg ServerConfig) (*Server, string) {
	b.Helper()
	cfg = cfg.WithoutLimits()
	cfg.Key, _ = identity.Generate()
	cfg.Log = quietLog()
	srv, err := NewServer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, ln) })
	b.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return srv, ln.Addr().String()
}

// benchPeer registers a peer with a fresh key, as Client does but without
// its goroutines, and reports a cone NAT. The caller reads the
// connection; cleanup closes it.
func benchPeer(b *testing.B, addr string, server identity.PublicKey) (*tls.Conn, identity.PublicKey) {
	b.Helper()
	key, _ := identity.Generate()
	cert, err := identity.Certificate(key)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { raw.Close() })
	c := tls.Client(raw, identity.TLSConfig(cert, identity.Pinned(server)))
	lan := []string{raw.LocalAddr().String(), "192.168.1.20:41641"}
	if err := WriteMessage(c, &Message{Type: TypeRegister, Version: Version, LAN: lan}); err != nil {
		b.Fatal(err)
	}
	if m, err := ReadMessage(c); err != nil || m.Type != TypeRegistered {
		b.Fatalf("register: %v %v", m, err)
	}
	if err := WriteMessage(c, &Message{Type: TypeNAT, NAT: benchNAT}); err != nil {
		b.Fatal(err)
	}
	return c, key.Public()
}

// BenchmarkServerPing is the keepalive round trip, the server's work for
// a peer at rest: a ping through TLS, its pong back. Allocations are both
// ends'.
func BenchmarkServerPing(b *testing.B) {
	srv, addr := benchServer(b, ServerConfig{})
	c, _ := benchPeer(b, addr, srv.PublicKey())
	b.ReportAllocs()
	for i := uint64(1); b.Loop(); i++ {
		if err := WriteMessage(c, &Message{Type: TypePing, Seq: i, RTTMs: 0.25}); err != nil {
			b.Fatal(err)
		}
		if m, err := ReadMessage(c); err != nil || m.Type != TypePong {
			b.Fatalf("pong: %v %v", m, err)
		}
	}
}

// BenchmarkServerCoordinate is one connect ask answered with a punch to
// both peers, one at a time (a latency, not the server's throughput).
// Allocations are both ends'. The `udp` frames that follow each punch
// after UDPWait are skipped.
func BenchmarkServerCoordinate(b *testing.B) {
	srv, addr := benchServer(b, ServerConfig{})
	a, _ := benchPeer(b, addr, srv.PublicKey())
	c, ckey := benchPeer(b, addr, srv.PublicKey())
	ask := &Message{Type: TypeConnect, Peer: ckey.String()}
	// Let the NAT reports land: a session waits for both.
	time.Sleep(50 * time.Millisecond)
	readPunch := func(conn *tls.Conn) {
		for {
			m, err := readConsenting(conn)
			if err != nil {
				b.Fatal(err)
			}
			if m.Type == TypePunch {
				return
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteMessage(a, ask); err != nil {
			b.Fatal(err)
		}
		// c first: the server asks it to consent before any punch.
		readPunch(c)
		readPunch(a)
	}
}

// readConsenting reads c's next message, consenting to every peer that
// asks for a session meanwhile, as a daemon whose config lists it does.
func readConsenting(c *tls.Conn) (*Message, error) {
	for {
		m, err := ReadMessage(c)
		if err != nil || m.Type != TypeAsk {
			return m, err
		}
		if err := WriteMessage(c, &Message{Type: TypeConsent, Seq: m.Seq}); err != nil {
			return nil, err
		}
	}
}

var peerHeapProfile = flag.String("peerheap", "", "BenchmarkServerPeerMemory writes a heap profile to `FILE` "+
	"while its peers are registered (-memprofile writes one only after they are gone)")

// BenchmarkServerSessionMemory is what a coordination leaves on the
// server's heap once its UDP step is done: b.N connect asks between
// distinct pairs of 64 peers, then the heap the Server's methods hold,
// per coordination (see serverHeap). The server keeps each session a
// minute for relays and each pair's last ask for PairWindow, until its
// janitor sweeps them.
func BenchmarkServerSessionMemory(b *testing.B) {
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = rate }()
	srv, addr := benchServer(b, ServerConfig{UDPWait: 10 * time.Millisecond})
	const peers = 64
	conns := make([]*tls.Conn, peers)
	keys := make([]string, peers)
	for i := range conns {
		c, k := benchPeer(b, addr, srv.PublicKey())
		conns[i], keys[i] = c, k.String()
	}
	// Each peer's reader counts the punches it receives.
	var punches sync.WaitGroup
	for _, c := range conns {
		go func() {
			for {
				m, err := readConsenting(c)
				if err != nil {
					return
				}
				if m.Type == TypePunch {
					punches.Done()
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	heap0 := serverHeap()
	b.ReportAllocs()
	for i := range b.N {
		// Pair i of the sequence (0,1), (0,2), ... (62,63), then again.
		k := i % (peers * (peers - 1) / 2)
		asker := 0
		for k >= peers-1-asker {
			k -= peers - 1 - asker
			asker++
		}
		punches.Add(2)
		if err := WriteMessage(conns[asker], &Message{Type: TypeConnect, Peer: keys[asker+1+k]}); err != nil {
			b.Fatal(err)
		}
		punches.Wait()
	}
	b.StopTimer()
	// Past UDPWait: the sessions' UDP steps are done.
	time.Sleep(100 * time.Millisecond)
	b.ReportMetric(float64(serverHeap()-heap0)/float64(b.N), "server-heap-B/coordination")
}

// BenchmarkServerPeerMemory registers b.N peers and reports what the server
// holds for each registered peer: its heap (from a memory profile of every
// allocation, counting only stacks through the Server's methods, so that
// the peers' own side is left out) and goroutine stack. To see where the
// heap goes:
//
//	go test ./rendezvous -run '^$' -bench ServerPeerMemory -benchtime 2000x -peerheap /tmp/peers.heap
//	go tool pprof -sample_index inuse_space -focus 'rendezvous.\(\*Server\)' -top /tmp/peers.heap
func BenchmarkServerPeerMemory(b *testing.B) {
	if b.N > 4000 {
		b.Skip("more peers than file descriptors allow")
	}
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = rate }()
	srv, addr := benchServer(b, ServerConfig{})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	heap0 := serverHeap()
	b.ReportAllocs()
	registerPeers(b, srv, addr)
	// The NAT reports were the last writes; give them a moment to land.
	time.Sleep(100 * time.Millisecond)
	heap := serverHeap()
	// After serverHeap's collections, which shrink the stacks the TLS
	// handshakes grew.
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(heap-heap0)/float64(b.N), "server-heap-B/peer")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/float64(b.N), "stack-B/peer")
	if *peerHeapProfile != "" {
		f, err := os.Create(*peerHeapProfile)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			b.Fatal(err)
		}
	}
}

// serverHeap returns the bytes in use that a Server method allocated,
// from the memory profile after two collections (the profile lags by up
// to two). It is exact with MemProfileRate 1.
func serverHeap() int64 {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	for {
		n, ok := runtime.MemProfile(recs, false)
		if ok {
			recs = recs[:n]
			break
		}
		recs = make([]runtime.MemProfileRecord, n+100)
	}
	var total int64
	for _, r := range recs {
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if strings.HasPrefix(f.Function, "github.com/warren-p2p/warren/rendezvous.(*Server).") {
				total += r.InUseBytes()
				break
			}
			if !more {
				break
			}
		}
	}
	return total
}

// registerPeers registers b.N peers with srv at addr, stops the timer and
// waits until srv holds them all.
func registerPeers(b *testing.B, srv *Server, addr string) {
	b.Helper()
	for range b.N {
		benchPeer(b, addr, srv.PublicKey())
	}
	b.StopTimer()
	for {
		srv.mu.Lock()
		n := len(srv.peers)
		srv.mu.Unlock()
		if n == b.N {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkRelayCopy is the relay's copy loop, one direction, on loopback
// TCP: the peer's bytes in, the other side's conn out.
func BenchmarkRelayCopy(b *testing.B) {
	srv, _ := benchServer(b, ServerConfig{})
	in1, in2 := benchtest.TCPPair(b)
	out1, out2 := benchtest.TCPPair(b)
	km, refused := srv.meter.acquire(identity.PublicKey{1}, time.Now())
	if km == nil {
		b.Fatal(refused)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.copyIdle(context.Background(), out1, &relayHalf{conn: in2, meter: km})
	}()
	benchtest.Stream(b, in1, out2)
	in1.Close()
	<-done
}
